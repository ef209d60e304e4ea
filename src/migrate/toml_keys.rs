//! Setting one `key = value` in a section of config.toml as text, so that the operator's
//! comments and layout survive (the `toml` crate would rewrite the whole file).

/// `text` with `key = value` (value already TOML) in `[section]`: an existing assignment is
/// replaced in place, else the line goes right after the section header, else a new section
/// is appended. Returns `None` when the key already has exactly this value.
pub fn set_key(text: &str, section: &str, key: &str, value: &str) -> Option<String> {
    let header = format!("[{section}]");
    let lines: Vec<&str> = text.lines().collect();
    let is_header = |l: &str| l.trim_start().starts_with('[');
    let start = lines.iter().position(|l| l.trim() == header);
    let line = format!("{key} = {value}");
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    match start {
        Some(start) => {
            let end = (start + 1..lines.len())
                .find(|&i| is_header(lines[i]))
                .unwrap_or(lines.len());
            let existing = (start + 1..end).find(|&i| {
                let l = lines[i].trim_start();
                l.strip_prefix(key)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            });
            match existing {
                Some(i) if lines[i].trim() == line => return None,
                Some(i) => out[i] = line,
                None => out.insert(start + 1, line),
            }
        }
        None => {
            if out.last().is_some_and(|l| !l.trim().is_empty()) {
                out.push(String::new());
            }
            out.push(header);
            out.push(line);
        }
    }
    let mut text = out.join("\n");
    text.push('\n');
    Some(text)
}

/// A TOML basic string.
pub fn quoted(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_replaced_inserted_or_appended_and_comments_stay() {
        let text = "# mine\n[node]\n# the repo\nkubo_repo = \"/old\"\n\n[dragon.ports]\nssh = 22\n";
        let out = set_key(text, "node", "kubo_repo", &quoted("/home/pi/.ipfs")).unwrap();
        assert_eq!(out, text.replace("\"/old\"", "\"/home/pi/.ipfs\""));
        assert_eq!(
            set_key(&out, "node", "kubo_repo", &quoted("/home/pi/.ipfs")),
            None
        );
        let out = set_key(&out, "dragon", "manage_ssh_keys", "true").unwrap();
        assert!(
            out.ends_with("ssh = 22\n\n[dragon]\nmanage_ssh_keys = true\n"),
            "{out}"
        );
        let out = set_key(&out, "dragon.ports", "strfry", "7777").unwrap();
        assert!(
            out.contains("[dragon.ports]\nstrfry = 7777\nssh = 22\n"),
            "{out}"
        );
        let parsed: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(parsed["dragon"]["manage_ssh_keys"].as_bool(), Some(true));
        // A key that only starts like ours is another key.
        let out = set_key("[node]\nkubo_repo_x = 1\n", "node", "kubo_repo", "2").unwrap();
        assert_eq!(out, "[node]\nkubo_repo = 2\nkubo_repo_x = 1\n");
    }
}
