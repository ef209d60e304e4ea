//! `x_<slug>.sh`: the client script other stations run to reach a published service, as
//! `DRAGON_p2p_ssh.sh` wrote it (same variables, `off`/`stop`), using `constellation` when it runs.

use super::port::PRIVILEGED_BELOW;
use super::slug::Slug;

/// What a client script needs to know about one published service.
#[derive(Debug, Clone)]
pub struct ScriptParams<'a> {
    pub node_id: &'a str,
    pub slug: &'a Slug,
    pub label: &'a str,
    /// The port consumers prefer (the service's own, 9999 for strfry).
    pub native_port: u16,
    pub alt_port: u16,
    /// The account to suggest in the `ssh -p` line.
    pub ssh_user: Option<&'a str>,
}

/// `'text'` for bash, with `'` escaped and control characters dropped.
pub fn shell_quote(text: &str) -> String {
    let clean: String = text.chars().filter(|c| !c.is_control()).collect();
    format!("'{}'", clean.replace('\'', r"'\''"))
}

/// The line that marks a script as ours (only such stale scripts are ever removed).
pub const MARKER: &str = "# Written by constellation DRAGON.";

/// The file name of a service's client script.
pub fn file_name(slug: &Slug) -> String {
    format!("x_{slug}.sh")
}

/// The text of `x_<slug>.sh`. Port rule (BRIEF §1): an existing tunnel for the protocol, else
/// the native port if free and not privileged, else the alternative port.
pub fn client_script(p: &ScriptParams<'_>) -> String {
    let label = shell_quote(p.label);
    let ssh = if p.slug.as_str() == "ssh" {
        // Inside double quotes: only a plain account name is printed.
        let user = p
            .ssh_user
            .filter(|u| {
                !u.is_empty()
                    && u.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            })
            .map(|u| format!("{u}@"));
        format!(
            "echo \"SSH : ssh -p ${{LPORT}} {}127.0.0.1\"\n",
            user.unwrap_or_default()
        )
    } else {
        String::new()
    };
    format!(
        r#"#!/bin/bash
# x_{slug}.sh: reach {label} of station {node} through the swarm.
{marker} Usage: x_{slug}.sh [off|stop]
NODE_ID="{node}"
SLUG="{slug}"
LABEL={label}
PROTO="/x/${{SLUG}}-${{NODE_ID}}"
NATIVE_PORT="{native}"
ALT_PORT="{alt}"

# constellation when its daemon answers, else Kubo.
if command -v constellation >/dev/null 2>&1 && constellation p2p ls >/dev/null 2>&1; then
    P2P=(constellation p2p)
else
    P2P=(ipfs p2p)
fi

if [[ "${{1,,}}" == "off" || "${{1,,}}" == "stop" ]]; then
    "${{P2P[@]}}" close -p "${{PROTO}}"
    exit $?
fi

port_busy() {{
    if command -v ss >/dev/null 2>&1; then
        ss -tln 2>/dev/null | awk '{{print $4}}' | grep -qE ":$1\$"
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}}

EXISTING=$("${{P2P[@]}}" ls 2>/dev/null | awk -v p="${{PROTO}}" '$1 == p && $2 ~ /\/tcp\// {{print $2; exit}}')
if [[ -n "${{EXISTING}}" ]]; then
    LPORT="${{EXISTING##*/}}"
    echo "${{LABEL}} : tunnel already open on 127.0.0.1:${{LPORT}}"
else
    if [[ "${{NATIVE_PORT}}" -ge {privileged} ]] && ! port_busy "${{NATIVE_PORT}}"; then
        LPORT="${{NATIVE_PORT}}"
    else
        LPORT="${{ALT_PORT}}"
    fi
    if port_busy "${{LPORT}}"; then
        echo "ERROR : local port ${{LPORT}} is taken (native ${{NATIVE_PORT}}, alt ${{ALT_PORT}})." >&2
        exit 1
    fi
    if [[ "${{P2P[0]}}" == "ipfs" ]] && ! ipfs --timeout=5s ping -n 2 "/p2p/${{NODE_ID}}" >/dev/null 2>&1; then
        echo "ERROR : station ${{NODE_ID}} is unreachable." >&2
        exit 1
    fi
    "${{P2P[@]}}" forward "${{PROTO}}" "/ip4/127.0.0.1/tcp/${{LPORT}}" "/p2p/${{NODE_ID}}" || exit 1
    DOCKER_IP=$(ip -4 addr show docker0 2>/dev/null | grep -oP '(?<=inet\s)\d+(\.\d+){{3}}')
    if [[ -n "${{DOCKER_IP}}" ]]; then
        "${{P2P[@]}}" forward "${{PROTO}}" "/ip4/${{DOCKER_IP}}/tcp/${{LPORT}}" "/p2p/${{NODE_ID}}" >/dev/null 2>&1
    fi
    echo "${{LABEL}} : 127.0.0.1:${{LPORT}} (native ${{NATIVE_PORT}} | alt ${{ALT_PORT}})"
fi
export LPORT
{ssh}"#,
        slug = p.slug,
        node = p.node_id,
        label = label,
        native = p.native_port,
        alt = p.alt_port,
        privileged = PRIVILEGED_BELOW,
        marker = MARKER,
        ssh = ssh,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_names_the_protocol_ports_and_quotes_the_label() {
        let slug = Slug::parse("ssh").unwrap();
        let text = client_script(&ScriptParams {
            node_id: "12D3KooWabc",
            slug: &slug,
            label: "it's $(rm -rf /)\nx",
            native_port: 22,
            alt_port: 21300,
            ssh_user: Some("pi"),
        });
        assert!(text.starts_with("#!/bin/bash\n"));
        assert!(text.contains("NATIVE_PORT=\"22\"\nALT_PORT=\"21300\"\n"));
        assert!(text.contains("LABEL='it'\\''s $(rm -rf /)x'\n"), "{text}");
        assert!(text.contains("ssh -p ${LPORT} pi@127.0.0.1"));
        let odd = client_script(&ScriptParams {
            ssh_user: Some("a\"b"),
            node_id: "12D3KooWabc",
            slug: &slug,
            label: "x",
            native_port: 22,
            alt_port: 21300,
        });
        assert!(odd.contains("ssh -p ${LPORT} 127.0.0.1"));
    }

    #[test]
    fn script_is_valid_bash() {
        let slug = Slug::parse("strfry").unwrap();
        let text = client_script(&ScriptParams {
            node_id: "12D3KooWabc",
            slug: &slug,
            label: "Nostr Relay",
            native_port: 9999,
            alt_port: 21300,
            ssh_user: None,
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x_strfry.sh");
        std::fs::write(&path, text).unwrap();
        let status = std::process::Command::new("bash")
            .arg("-n")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
    }
}
