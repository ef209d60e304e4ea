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

/// A plain account name (it is baked into the script, inside double quotes).
fn plain_account(user: Option<&str>) -> Option<&str> {
    user.filter(|u| {
        !u.is_empty()
            && u.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    })
}

/// The text of `x_<slug>.sh`. Port rule (BRIEF §1): an existing tunnel for the protocol, else
/// the native port if free and not privileged, else the alternative port. As the original: the
/// peer is pinged first, `LPORT` is exported, the forward binds 127.0.0.1, the docker bridge and
/// the LAN addresses, and x_ssh.sh names the publisher's account in `REMOTE_USER` (tunnel.sh).
pub fn client_script(p: &ScriptParams<'_>) -> String {
    let label = shell_quote(p.label);
    let is_ssh = p.slug.as_str() == "ssh";
    let user = plain_account(p.ssh_user).filter(|_| is_ssh);
    let remote_user = user.map_or_else(String::new, |u| format!("REMOTE_USER=\"{u}\"\n"));
    let ssh = match (is_ssh, user) {
        (true, Some(u)) => format!("echo \"ssh -X {u}@localhost -p ${{LPORT}}\"\n"),
        (true, None) => "echo \"ssh -X localhost -p ${LPORT}\"\n".to_owned(),
        (false, _) => String::new(),
    };
    format!(
        r#"#!/bin/bash
# x_{slug}.sh: reach {label} of station {node} through the swarm.
{marker} Usage: x_{slug}.sh [off|stop]
NODE_ID="{node}"
SLUG="{slug}"
LABEL={label}
PROTO="/x/${{SLUG}}-${{NODE_ID}}"
{remote_user}NATIVE_PORT="{native}"
ALT_PORT="{alt}"

# constellation when its daemon answers, else Kubo.
if command -v constellation >/dev/null 2>&1 && constellation p2p ls >/dev/null 2>&1; then
    P2P=(constellation p2p)
    PING=(constellation ping -n 2)
else
    P2P=(ipfs p2p)
    PING=(ipfs --timeout=5s ping -n 2)
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
elif [[ "${{NATIVE_PORT}}" -ge {privileged} ]] && ! port_busy "${{NATIVE_PORT}}"; then
    LPORT="${{NATIVE_PORT}}"
else
    LPORT="${{ALT_PORT}}"
fi
# For tunnel.sh, which runs this script and reads the port it chose.
export LPORT

if ! "${{PING[@]}}" "/p2p/${{NODE_ID}}" >/dev/null 2>&1; then
    echo "ERROR : station ${{NODE_ID}} is unreachable." >&2
    exit 1
fi
if [[ -n "${{EXISTING}}" ]]; then
    echo "${{LABEL}} : tunnel already open on 127.0.0.1:${{LPORT}}"
else
    if port_busy "${{LPORT}}"; then
        echo "ERROR : local port ${{LPORT}} is taken (native ${{NATIVE_PORT}}, alt ${{ALT_PORT}})." >&2
        exit 1
    fi
    "${{P2P[@]}}" forward "${{PROTO}}" "/ip4/127.0.0.1/tcp/${{LPORT}}" "/p2p/${{NODE_ID}}" || exit 1
    echo "${{LABEL}} : 127.0.0.1:${{LPORT}} (native ${{NATIVE_PORT}} | alt ${{ALT_PORT}})"
fi

# Also the docker bridge (containers reach the service) and the LAN addresses (other boxes,
# the station's proxy), as DRAGON_p2p_ssh.sh does; one already open or not bindable is skipped.
DOCKER_IP=$(docker network inspect bridge --format '{{{{(index .IPAM.Config 0).Gateway}}}}' 2>/dev/null)
[[ -z "${{DOCKER_IP}}" ]] && DOCKER_IP=$(ip -4 addr show docker0 2>/dev/null | grep -oP '(?<=inet\s)\d+(\.\d+){{3}}' | head -n 1)
[[ -z "${{DOCKER_IP}}" ]] && DOCKER_IP="172.17.0.1"
BIND_IPS=("${{DOCKER_IP}}")
for IP in $(hostname -I 2>/dev/null); do
    [[ "${{IP}}" == *:* || "${{IP}}" == 127.* || " ${{BIND_IPS[*]}} " == *" ${{IP}} "* ]] && continue
    BIND_IPS+=("${{IP}}")
done
for IP in "${{BIND_IPS[@]}}"; do
    "${{P2P[@]}}" forward "${{PROTO}}" "/ip4/${{IP}}/tcp/${{LPORT}}" "/p2p/${{NODE_ID}}" >/dev/null 2>&1 || true
done
{ssh}exit 0
"#,
        slug = p.slug,
        node = p.node_id,
        label = label,
        native = p.native_port,
        alt = p.alt_port,
        privileged = PRIVILEGED_BELOW,
        marker = MARKER,
        remote_user = remote_user,
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
        assert!(text.contains("REMOTE_USER=\"pi\"\nNATIVE_PORT=\"22\"\nALT_PORT=\"21300\"\n"));
        assert!(text.contains("LABEL='it'\\''s $(rm -rf /)x'\n"), "{text}");
        assert!(text.contains("ssh -X pi@localhost -p ${LPORT}"));
        let odd = client_script(&ScriptParams {
            ssh_user: Some("a\"b"),
            node_id: "12D3KooWabc",
            slug: &slug,
            label: "x",
            native_port: 22,
            alt_port: 21300,
        });
        assert!(odd.contains("ssh -X localhost -p ${LPORT}"));
        assert!(!odd.contains("REMOTE_USER"));
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
