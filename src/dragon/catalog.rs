//! The services DRAGON may publish: the built-in catalog, `IA/modules.list` lines, the SSH port
//! of `sshd_config`, and the private list (`DRAGON_PRIVATE_SERVICES`). Pure parsing, no sockets.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::slug::Slug;
use crate::identity::shorten;

/// Port of sshd when `sshd_config` has no `Port` line (or cannot be read).
pub const DEFAULT_SSH_PORT: u16 = 22;
/// Longest check argument accepted from modules.list (a process, container, image or unit name).
const MAX_CHECK_ARG: usize = 128;
/// Longest modules.list file read; a real one is a few KiB.
const MAX_MODULES_LIST_BYTES: u64 = 1024 * 1024;

/// How to tell that a service runs, besides a native listener on its port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub enum Check {
    /// The listener on the port is the only check.
    Auto,
    /// `pgrep NAME` finds a process.
    Pgrep(String),
    /// A running docker container's name contains NAME.
    Docker(String),
    /// A running docker container's image contains IMAGE.
    DockerImg(String),
    /// `systemctl is-active UNIT`.
    Systemctl(String),
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Check::Auto => write!(f, "auto"),
            Check::Pgrep(n) => write!(f, "pgrep:{n}"),
            Check::Docker(n) => write!(f, "docker:{n}"),
            Check::DockerImg(n) => write!(f, "dockerimg:{n}"),
            Check::Systemctl(n) => write!(f, "systemctl:{n}"),
        }
    }
}

impl Check {
    /// `auto`, `pgrep:NAME`, `docker:NAME`, `dockerimg:IMAGE`, `systemctl:UNIT` (empty = auto).
    pub fn parse(text: &str) -> Result<Check, String> {
        let text = text.trim();
        if text.is_empty() || text == "auto" {
            return Ok(Check::Auto);
        }
        let Some((kind, arg)) = text.split_once(':') else {
            return Err(format!("unknown check {:?}", shorten(text)));
        };
        let arg = arg.trim();
        let bad = arg.is_empty()
            || arg.len() > MAX_CHECK_ARG
            || arg.starts_with('-')
            || arg.chars().any(|c| c.is_whitespace() || c.is_control());
        if bad {
            return Err(format!("check {:?} has no usable name", shorten(text)));
        }
        let arg = arg.to_owned();
        match kind {
            "pgrep" => Ok(Check::Pgrep(arg)),
            "docker" => Ok(Check::Docker(arg)),
            "dockerimg" => Ok(Check::DockerImg(arg)),
            "systemctl" => Ok(Check::Systemctl(arg)),
            _ => Err(format!("unknown check {:?}", shorten(text))),
        }
    }
}

/// Where a service entry came from (shown by `constellation services`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// ssh, strfry, or a `[dragon.ports]` entry.
    Catalog,
    /// The built-in list of a station without modules.list.
    Fallback,
    ModulesList,
}

/// One service the station may publish as `/x/<slug>-<peer id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub slug: Slug,
    /// The station's port; `None` for a modules.list entry with port `-` (nothing to tunnel).
    pub port: Option<u16>,
    /// The port consumers prefer (strfry: 9999, so that it never meets a local relay on 7777).
    pub consumer_port: Option<u16>,
    pub check: Check,
    pub label: String,
    pub origin: Origin,
}

/// The services published outside modules.list, as `DRAGON_p2p_ssh.sh` does: ssh (port from
/// sshd_config) and strfry (consumers prefer 9999, so that it never meets their own relay on
/// 7777). `(slug, port, consumer port, label)`.
const CORE: &[(&str, u16, u16, &str)] = &[
    (
        "ssh",
        DEFAULT_SSH_PORT,
        DEFAULT_SSH_PORT,
        "SSH Remote Access",
    ),
    (STRFRY, 7777, 9999, "Nostr Relay"),
];

/// The slug of the station's relay: frozen (the sync looks for `x_strfry.sh`), and never private,
/// since a private strfry silently takes the station out of the constellation sync.
pub const STRFRY: &str = "strfry";

/// The fallback list of `DRAGON_p2p_ssh.sh` (2026-08), used only when `IA/modules.list` is missing:
/// `(slug, port, check, label)`. 3001 is webtop-https there; perplexica became vane on 3002.
const FALLBACK: &[(&str, u16, &str, &str)] = &[
    ("icecast", 8111, "auto", "Icecast Live Broadcasting"),
    ("dify", 8010, "auto", "Dify AI Workflow"),
    ("mirofish", 5050, "auto", "MiroFish Simulation Engine"),
    ("open-webui", 8000, "auto", "Open WebUI Interface IA"),
    ("nextcloud-app", 8001, "auto", "NextCloud Apache App"),
    ("qdrant", 6333, "auto", "Qdrant VectorDB"),
    ("npm", 81, "auto", "Nginx Proxy Manager Admin"),
    ("nextcloud-aio", 8443, "auto", "NextCloud AIO Admin Setup"),
    ("ollama", 11434, "pgrep:ollama", "Ollama LLM API"),
    (
        "webtop-http",
        3000,
        "dockerimg:linuxserver/webtop",
        "Webtop KasmVNC HTTP",
    ),
    (
        "webtop-https",
        3001,
        "dockerimg:linuxserver/webtop",
        "Webtop KasmVNC HTTPS",
    ),
    (
        "comfyui",
        8188,
        "systemctl:comfyui.service",
        "ComfyUI Image Generation",
    ),
    ("orpheus", 5005, "docker:orpheus", "Orpheus TTS"),
    // The original accepts a container named vane or perplexica; the newer name is checked.
    ("vane", 3002, "docker:vane", "Vane Search Engine"),
];

/// ssh (with sshd's port) and strfry: published whatever modules.list says.
pub fn core(ssh_port: u16) -> Vec<Service> {
    CORE.iter()
        .filter_map(|&(slug, port, consumer, label)| {
            let (port, consumer) = if slug == "ssh" {
                (ssh_port, ssh_port)
            } else {
                (port, consumer)
            };
            Some(Service {
                slug: Slug::parse(slug).ok()?,
                port: Some(port),
                consumer_port: Some(consumer),
                check: Check::Auto,
                label: label.to_owned(),
                origin: Origin::Catalog,
            })
        })
        .collect()
}

/// The built-in list for a station without `IA/modules.list`.
pub fn fallback() -> Vec<Service> {
    FALLBACK
        .iter()
        .filter_map(|&(slug, port, check, label)| {
            Some(Service {
                slug: Slug::parse(slug).ok()?,
                port: Some(port),
                consumer_port: Some(port),
                check: Check::parse(check).ok()?,
                label: label.to_owned(),
                origin: Origin::Fallback,
            })
        })
        .collect()
}

/// The consumer's preferred port of a built-in slug (`strfry` → 9999), if it is one.
pub fn builtin_consumer_port(slug: &str) -> Option<u16> {
    CORE.iter()
        .find(|(s, ..)| *s == slug)
        .map(|&(_, _, consumer, _)| consumer)
        .or_else(|| {
            FALLBACK
                .iter()
                .find(|(s, ..)| *s == slug)
                .map(|&(_, port, ..)| port)
        })
}

/// Where the services beside ssh and strfry come from: modules.list when the file exists (even
/// empty, even with bad lines: the operator's list), else the built-in fallback.
pub fn listed_services(modules_list: &Path, configured: bool) -> (Vec<Service>, Vec<String>) {
    if modules_list.exists() {
        return read_modules_list(modules_list);
    }
    let warnings = if configured {
        vec![format!(
            "{} does not exist; using the built-in service list",
            modules_list.display()
        )]
    } else {
        Vec::new()
    };
    (fallback(), warnings)
}

/// Parse `IA/modules.list`: `name|port|check|group|label` per line, `#` comments, port `-` for
/// "no port". A malformed line is skipped with a warning naming `source:line`.
pub fn parse_modules_list(source: &str, text: &str) -> (Vec<Service>, Vec<String>) {
    let mut services = Vec::new();
    let mut warnings = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_module_line(line) {
            Ok(service) => services.push(service),
            Err(why) => warnings.push(format!(
                "{source}:{}: skipping {:?}: {why}",
                index + 1,
                shorten(line)
            )),
        }
    }
    (services, warnings)
}

fn parse_module_line(line: &str) -> Result<Service, String> {
    // At most one field past the five, so that a line of `|`s costs no more than its text.
    let fields: Vec<&str> = line.splitn(6, '|').map(str::trim).collect();
    if fields.len() < 3 || fields.len() > 5 {
        let count = if fields.len() > 5 {
            "more than 5"
        } else {
            "fewer than 3"
        };
        return Err(format!(
            "expected name|port|check|group|label, got {count} fields"
        ));
    }
    let slug = Slug::parse(fields[0]).map_err(|e| e.to_string())?;
    let port = match fields[1] {
        "-" => None,
        p => match p.parse::<u16>() {
            Ok(0) | Err(_) => {
                return Err(format!("port {:?} is not a TCP port or -", shorten(p)));
            }
            Ok(port) => Some(port),
        },
    };
    let check = Check::parse(fields[2])?;
    let label = fields
        .get(4)
        .filter(|l| !l.is_empty())
        .map_or_else(|| slug.to_string(), |l| (*l).to_owned());
    Ok(Service {
        slug,
        port,
        consumer_port: port,
        check,
        label,
        origin: Origin::ModulesList,
    })
}

/// Read a modules.list file (bounded); a missing or unreadable file is one warning.
pub fn read_modules_list(path: &Path) -> (Vec<Service>, Vec<String>) {
    use std::io::Read as _;
    let mut text = String::new();
    let read = std::fs::File::open(path)
        .and_then(|f| f.take(MAX_MODULES_LIST_BYTES).read_to_string(&mut text));
    match read {
        Ok(_) => parse_modules_list(&path.display().to_string(), &text),
        Err(e) => (
            Vec::new(),
            vec![format!("cannot read {}: {e}", path.display())],
        ),
    }
}

/// The first `Port N` of an sshd_config text; `None` when there is none.
pub fn sshd_port_in(text: &str) -> Result<Option<u16>, String> {
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let mut words = line.splitn(2, |c: char| c.is_whitespace() || c == '=');
        let (Some(key), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        if key.eq_ignore_ascii_case("port") {
            let value = value.trim_start_matches(|c: char| c.is_whitespace() || c == '=');
            let value = value.split_whitespace().next().unwrap_or_default();
            return match value.parse::<u16>() {
                Ok(0) | Err(_) => Err(format!("Port {:?} is not a TCP port", shorten(value))),
                Ok(port) => Ok(Some(port)),
            };
        }
    }
    Ok(None)
}

/// sshd's port from `path`; an unreadable file or a bad `Port` falls back to 22 with a warning.
pub fn sshd_port(path: &Path) -> (u16, Option<String>) {
    match std::fs::read_to_string(path) {
        Ok(text) => match sshd_port_in(&text) {
            Ok(port) => (port.unwrap_or(DEFAULT_SSH_PORT), None),
            Err(e) => (
                DEFAULT_SSH_PORT,
                Some(format!(
                    "{}: {e}; using port {DEFAULT_SSH_PORT}",
                    path.display()
                )),
            ),
        },
        Err(e) => (
            DEFAULT_SSH_PORT,
            Some(format!(
                "cannot read {}: {e}; using port {DEFAULT_SSH_PORT} for ssh",
                path.display()
            )),
        ),
    }
}

/// The value of `DRAGON_PRIVATE_SERVICES=…` in a `.env` text (last assignment wins), unquoted.
pub fn private_in_env_file(text: &str) -> Option<String> {
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        if let Some(value) = line.strip_prefix("DRAGON_PRIVATE_SERVICES=") {
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            found = Some(value.to_owned());
        }
    }
    found
}

/// The private slugs: `DRAGON_PRIVATE_SERVICES` from the environment when set, else from the
/// station's `.env`; plus the config's own list.
pub fn private_slugs(
    from_env: Option<String>,
    env_file_text: Option<&str>,
    configured: &[String],
) -> BTreeSet<String> {
    let list = from_env.or_else(|| env_file_text.and_then(private_in_env_file));
    list.iter()
        .flat_map(|l| l.split_whitespace())
        .map(str::to_owned)
        .chain(configured.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_list_lines_parse_and_bad_ones_are_named() {
        let text = "# comment\n\
            open-webui|8000|docker:open-webui|ai|Open WebUI\n\
            qdrant|6333|auto\n\
            \n\
            nothing|-|pgrep:foo|x|No port\n\
            Bad Slug|80|auto\n\
            web|http|auto\n\
            web2|8080|frobnicate:x\n\
            short|80\n\
            tts|5005|systemctl:orpheus.service|ai|Orpheus\n";
        let (services, warnings) = parse_modules_list("IA/modules.list", text);
        let slugs: Vec<&str> = services.iter().map(|s| s.slug.as_str()).collect();
        assert_eq!(slugs, ["open-webui", "qdrant", "nothing", "tts"]);
        assert_eq!(services[0].check, Check::Docker("open-webui".into()));
        assert_eq!(services[0].label, "Open WebUI");
        assert_eq!(services[1].port, Some(6333));
        assert_eq!(services[2].port, None);
        assert_eq!(
            services[3].check,
            Check::Systemctl("orpheus.service".into())
        );
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        assert!(
            warnings[0].starts_with("IA/modules.list:6:"),
            "{warnings:?}"
        );
        assert!(warnings[1].contains(":7:") && warnings[1].contains("http"));
        assert!(warnings[2].contains(":8:") && warnings[2].contains("frobnicate"));
        assert!(warnings[3].contains(":9:"));
    }

    #[test]
    fn the_fallback_list_is_only_for_a_station_without_modules_list() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("modules.list");
        let (services, warnings) = listed_services(&list, false);
        assert!(warnings.is_empty());
        let port_of = |slug: &str| {
            services
                .iter()
                .find(|s| s.slug.as_str() == slug)
                .and_then(|s| s.port)
        };
        assert_eq!(port_of("vane"), Some(3002));
        assert_eq!(port_of("webtop-https"), Some(3001));
        assert_eq!(port_of("perplexica"), None);
        assert_eq!(services.len(), FALLBACK.len(), "every built-in line parses");
        assert!(services.iter().all(|s| s.origin == Origin::Fallback));
        let (_, warnings) = listed_services(&list, true);
        assert!(warnings[0].contains("does not exist"), "{warnings:?}");

        std::fs::write(&list, "# nothing published but ssh and strfry\n").unwrap();
        let (services, warnings) = listed_services(&list, false);
        assert!(services.is_empty() && warnings.is_empty(), "{services:?}");
        std::fs::write(&list, "vane|3002|docker:vane|ai-company|Vane\n").unwrap();
        let (services, _) = listed_services(&list, false);
        assert_eq!(services.len(), 1);
        assert_eq!(services[0].origin, Origin::ModulesList);
    }

    #[test]
    fn ssh_and_strfry_are_always_there_and_strfry_keeps_its_consumer_port() {
        let core = core(2222);
        let slugs: Vec<_> = core.iter().map(|s| (s.slug.as_str(), s.port)).collect();
        assert_eq!(slugs, [("ssh", Some(2222)), (STRFRY, Some(7777))]);
        assert_eq!(builtin_consumer_port(STRFRY), Some(9999));
        assert_eq!(builtin_consumer_port("vane"), Some(3002));
        assert_eq!(builtin_consumer_port("perplexica"), None);
    }

    #[test]
    fn checks_refuse_option_like_and_empty_names() {
        assert!(Check::parse("pgrep:-f").is_err());
        assert!(Check::parse("docker:").is_err());
        assert!(Check::parse("pgrep:a b").is_err());
        assert_eq!(Check::parse("").unwrap(), Check::Auto);
        assert_eq!(
            Check::parse("dockerimg:linuxserver/webtop")
                .unwrap()
                .to_string(),
            "dockerimg:linuxserver/webtop"
        );
    }

    #[test]
    fn sshd_port_is_the_first_uncommented_port_line() {
        assert_eq!(
            sshd_port_in("#Port 2222\nPort 2022\nPort 22\n"),
            Ok(Some(2022))
        );
        assert_eq!(sshd_port_in("port=2200\n"), Ok(Some(2200)));
        assert_eq!(sshd_port_in("PermitRootLogin no\n"), Ok(None));
        assert!(sshd_port_in("Port abc\n").is_err());
    }

    #[test]
    fn unreadable_sshd_config_falls_back_to_22_with_a_warning() {
        let (port, warning) = sshd_port(Path::new("/nonexistent/sshd_config"));
        assert_eq!(port, 22);
        assert!(warning.unwrap().contains("/nonexistent/sshd_config"));
    }

    #[test]
    fn private_list_comes_from_env_before_env_file() {
        let file = "FOO=1\nexport DRAGON_PRIVATE_SERVICES=\"qdrant nextcloud-app\"\n";
        let from_file = private_slugs(None, Some(file), &["x".into()]);
        assert_eq!(
            from_file.into_iter().collect::<Vec<_>>(),
            ["nextcloud-app", "qdrant", "x"]
        );
        let from_env = private_slugs(Some("ollama".into()), Some(file), &[]);
        assert_eq!(from_env.into_iter().collect::<Vec<_>>(), ["ollama"]);
        assert_eq!(
            private_in_env_file("DRAGON_PRIVATE_SERVICES='a'\n").as_deref(),
            Some("a")
        );
    }
}
