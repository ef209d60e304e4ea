//! Issue 6, DRAGON: a daemon publishes the services that really run (a real sshd, HTTP, echo),
//! skips private / stopped / tunnelled ones, writes x_<slug>.sh, and another daemon reaches them.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::net::{self, free_port, payload, sha256, tcp_addr};
use crate::common::{self, Daemon, wait_until};

/// How long a test waits for something the daemon does in one 1-second cycle.
const CYCLE_WAIT: Duration = Duration::from_secs(4);
/// How long sshd may take to accept connections.
const SSHD_START: Duration = Duration::from_secs(10);

/// A station directory: home, scripts, swarm mirror, `.env`, modules.list.
struct Station {
    dir: tempfile::TempDir,
}

impl Station {
    fn new() -> Station {
        Station {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn home(&self) -> PathBuf {
        self.path("home")
    }
    /// Write config.toml with a `[dragon]` section pointing every path into this station
    /// (sshd_config: a file that does not exist).
    fn configure(&self, extra: &str) {
        self.configure_with_sshd(&self.path("no-sshd_config"), extra);
    }
    /// modules.list is the station's own (an empty one unless the test wrote it), so that the
    /// built-in fallback list only appears where a test removes the file.
    fn configure_with_sshd(&self, sshd_config: &Path, extra: &str) {
        let modules = self.path("modules.list");
        if !modules.exists() {
            std::fs::write(&modules, "# only ssh, strfry and [dragon.ports]\n").unwrap();
        }
        let config = format!(
            "[dragon]\nscripts_dir = {:?}\nswarm_dir = {:?}\nenv_file = {:?}\nsshd_config = {:?}\nmodules_list = {modules:?}\n{extra}",
            self.path("scripts"),
            self.path("swarm"),
            self.path("env"),
            sshd_config,
        );
        crate::common::home_with(&self.home(), &config);
    }
    /// Start the daemon with DRAGON on.
    fn start(&self, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_with_env(&self.home(), &["--dragon"], env)
    }
}

/// A daemon that only consumes (DRAGON off), with its own swarm mirror folder.
fn consumer(station: &Station) -> Daemon {
    station.configure("enabled = false\n");
    Daemon::start_in(&station.home(), &[])
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn services(d: &Daemon) -> Value {
    json(&d.cli_ok(&["services", "--refresh", "--json"]))
}

fn published<'a>(report: &'a Value, slug: &str) -> Option<&'a Value> {
    report["published"]
        .as_array()?
        .iter()
        .find(|p| p["slug"] == slug)
}

fn skipped<'a>(report: &'a Value, slug: &str) -> Option<&'a Value> {
    report["skipped"]
        .as_array()?
        .iter()
        .find(|p| p["slug"] == slug)
}

/// POSIX `cksum` of `text` computed by the system's command.
fn system_cksum(text: &str) -> u32 {
    let out = Command::new("sh")
        .args(["-c", "printf %s \"$1\" | cksum", "sh", text])
        .output()
        .expect("run cksum");
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout.split_whitespace().next().unwrap().parse().unwrap()
}

/// The BRIEF's alternative port, computed with the system's `cksum`.
fn system_alt_port(node: &str, slug: &str) -> u16 {
    (21220 + system_cksum(node) % 500 + system_cksum(slug) % 100) as u16
}

fn tunnels(d: &Daemon) -> String {
    d.cli_ok(&["p2p", "ls"])
}

/// An HTTP/1.0 server answering every request with `page`.
fn http_server(page: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let page = page.clone();
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                    page.len()
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&page);
            });
        }
    });
    port
}

/// GET / on 127.0.0.1:port; returns the body.
fn http_get(port: u16) -> Vec<u8> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    conn.write_all(b"GET / HTTP/1.0\r\nHost: dragon\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).expect("read answer");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP head");
    assert!(answer.starts_with(b"HTTP/1.0 200"), "bad answer");
    answer[split + 4..].to_vec()
}

/// A real OpenSSH server on 127.0.0.1 with a temporary host key and authorized key.
struct Sshd {
    child: Child,
    port: u16,
    config: PathBuf,
    client_key: PathBuf,
    log: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
}

/// Start sshd (panics when it is not installed: `./test` installs it).
fn start_sshd(dir: &Path) -> Option<Sshd> {
    let sshd = Path::new("/usr/sbin/sshd");
    if !sshd.exists() || Command::new("ssh").arg("-V").output().is_err() {
        // ./test installs them; a machine without them must not pass this test silently.
        panic!(
            "/usr/sbin/sshd or ssh is not installed (apt-get install openssh-server openssh-client)"
        );
    }
    // sshd refuses to start as root without its privilege separation directory.
    let _ = std::fs::create_dir_all("/run/sshd");
    let host_key = dir.join("host_key");
    let client_key = dir.join("client_key");
    keygen(&host_key);
    keygen(&client_key);
    let authorized = dir.join("authorized_keys");
    std::fs::copy(client_key.with_extension("pub"), &authorized).unwrap();
    let port = free_port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "# test sshd\nPort {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
             PidFile {}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n",
            host_key.display(),
            authorized.display(),
            dir.join("sshd.pid").display(),
        ),
    )
    .unwrap();
    let log = dir.join("sshd.log");
    let child = Command::new(sshd)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn sshd");
    let sshd = Sshd {
        child,
        port,
        config,
        client_key,
        log,
    };
    let up = wait_until(SSHD_START, || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(
        up,
        "sshd did not start: {}",
        std::fs::read_to_string(&sshd.log).unwrap_or_default()
    );
    Some(sshd)
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `ssh -p PORT user@127.0.0.1 echo ok` with the test key; returns (success, stdout).
fn ssh_echo(sshd: &Sshd, port: u16) -> (bool, String) {
    let out = Command::new("ssh")
        .arg("-i")
        .arg(&sshd.client_key)
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=15",
            "-o",
            "LogLevel=ERROR",
            "-p",
            &port.to_string(),
            &format!("{}@127.0.0.1", whoami()),
            "echo",
            "ok",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run ssh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}

/// Stand-ins for the commands a client script asks about the box, each recording its argv in
/// `$STUB_LOG`: `docker` answers `$STUB_DOCKER_GW` (fails without it), `ip` fails, `hostname -I`
/// prints `$STUB_LAN`, `ss -tln` lists `$STUB_BUSY` ports; with `recorder`, also a `constellation`
/// whose `ping` exits `$STUB_PING_RC` and whose `p2p ls` prints `$STUB_LS`.
fn script_stubs(dir: &Path, recorder: bool) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let bin = dir.join("stub-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let stub = r#"#!/bin/bash
name=$(basename "$0")
[[ -n "$STUB_LOG" ]] && printf '%s\n' "$name $*" >> "$STUB_LOG"
case "$name" in
  docker) [[ -n "$STUB_DOCKER_GW" ]] && echo "$STUB_DOCKER_GW" && exit 0; exit 1 ;;
  ip) exit 1 ;;
  hostname) echo "$STUB_LAN" ;;
  ss) echo "State Recv-Q Send-Q Local Peer"
      for p in $STUB_BUSY; do echo "LISTEN 0 128 127.0.0.1:$p 0.0.0.0:*"; done ;;
  constellation)
      case "$1 $2" in
        "p2p ls") printf '%s' "$STUB_LS" ;;
        ping*) exit "${STUB_PING_RC:-0}" ;;
      esac ;;
esac
exit 0
"#;
    let names: &[&str] = if recorder {
        &["docker", "ip", "hostname", "ss", "constellation"]
    } else {
        &["docker", "ip", "hostname"]
    };
    for name in names {
        let path = bin.join(name);
        std::fs::write(&path, stub).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

/// Run a client script with bash, with our binary first on PATH (after the box's stand-ins:
/// the docker bridge is 127.0.0.2, no LAN address, so nothing leaves loopback) and
/// `consumer`'s home; returns (success, stdout, stderr).
fn run_script(script: &Path, consumer: &Daemon, arg: Option<&str>) -> (bool, String, String) {
    let bin_dir = Path::new(&common::bin()).parent().unwrap().to_owned();
    let stubs = script_stubs(&consumer.home, false);
    let path = format!(
        "{}:{}:{}",
        stubs.display(),
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg(script)
        .args(arg)
        .env("PATH", &path)
        .env("CONSTELLATION_HOME", &consumer.home)
        .env("STUB_DOCKER_GW", "127.0.0.2")
        .env("STUB_LAN", "")
        .output()
        .expect("run bash");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn real_sshd_is_published_and_reached_with_connect_only_by_allowed_peers() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(sshd) = start_sshd(tmp.path()) else {
        return;
    };
    let b_station = Station::new();
    let b = consumer(&b_station);
    let a_station = Station::new();
    a_station.configure_with_sshd(
        &sshd.config,
        &format!("[dragon.allow_peers]\nssh = [{:?}]\n", b.peer_id),
    );
    let a = a_station.start(&[]);

    // A publishes ssh on sshd's port (read from the same sshd_config sshd uses), for B only.
    let report = services(&a);
    let ssh = published(&report, "ssh").unwrap_or_else(|| panic!("ssh not published: {report}"));
    assert_eq!(ssh["port"], sshd.port);
    assert_eq!(ssh["protocol"], format!("/x/ssh-{}", a.peer_id));
    assert_eq!(ssh["target"], tcp_addr(sshd.port));
    assert_eq!(ssh["allow_peers"], serde_json::json!([b.peer_id]));
    let script = std::fs::read_to_string(a_station.path("scripts").join("x_ssh.sh")).unwrap();
    assert!(script.contains(&format!("NATIVE_PORT=\"{}\"", sshd.port)));

    // B runs A's x_ssh.sh: sshd's own port is taken here → the alternative port, and the
    // script prints the ssh line.
    common::connect(&a, &b);
    let alt = system_alt_port(&a.peer_id, "ssh");
    let (ok, stdout, stderr) = run_script(&a_station.path("scripts").join("x_ssh.sh"), &b, None);
    assert!(ok, "x_ssh.sh failed: {stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("ssh -X {}@localhost -p {alt}", whoami())),
        "{stdout}"
    );
    // `connect` finds the script's tunnel and reuses it.
    let c = json(&b.cli_ok(&["connect", "ssh", &a.peer_id, "--json"]));
    let port = c["port"].as_u64().unwrap() as u16;
    assert_eq!(port, alt);
    assert_eq!(c["reused"], true);
    assert_eq!(c["address"], format!("127.0.0.1:{port}"));
    let (ok, stdout) = ssh_echo(&sshd, port);
    assert!(
        ok && stdout == "ok",
        "ssh through the tunnel failed (stdout {stdout:?}); sshd log:\n{}\nA log:\n{}",
        std::fs::read_to_string(&sshd.log).unwrap_or_default(),
        a.log()
    );
    // The text output prints where the service is and the ssh line.
    let again = b.cli_ok(&["connect", "ssh", &a.peer_id]);
    assert!(again.contains(&format!("127.0.0.1:{port}")), "{again}");
    assert!(again.contains("already open"), "{again}");
    assert!(again.contains(&format!("ssh -p {port}")), "{again}");
    let listing = json(&b.cli_ok(&["services", "--json"]));
    assert_eq!(listing["publishing"], false);
    assert_eq!(listing["remote"][0]["slug"], "ssh");
    assert_eq!(listing["remote"][0]["peer"], a.peer_id);

    // C is not in the allow-list: its tunnel opens locally but A resets the stream. (B holds
    // the alternative port on this one machine, so C names its own.)
    let c_station = Station::new();
    let c_daemon = consumer(&c_station);
    let c_port = free_port();
    // C names A by its full address: connect dials it.
    c_daemon.cli_ok(&["connect", "ssh", &a.addr(), "--port", &c_port.to_string()]);
    let (ok, stdout) = ssh_echo(&sshd, c_port);
    assert!(!ok && stdout.is_empty(), "C reached ssh: {stdout}");
    assert!(a.wait_log("not in the allow-list", CYCLE_WAIT));

    // disconnect closes B's forward.
    let closed = b.cli_ok(&["disconnect", "ssh", &a.peer_id]);
    assert!(
        closed.contains(&format!("/x/ssh-{}", a.peer_id)),
        "{closed}"
    );
    assert!(!tunnels(&b).contains("/x/ssh-"));
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    let again = b.cli(&["disconnect", "ssh", &a.peer_id]);
    assert!(!again.status.success());
}

#[test]
fn http_service_from_modules_list_returns_its_page_and_bad_input_is_reported() {
    let page = payload(200_000, 42);
    let web = http_server(page.clone());
    let hidden = http_server(b"secret".to_vec());
    let a_station = Station::new();
    std::fs::write(
        a_station.path("modules.list"),
        format!(
            "# name|port|check|group|label\n\
             web|{web}|auto|test|Test page\n\
             hidden|{hidden}|auto|test|Private page\n\
             gone|{hidden}|pgrep:no-such-process-dragon|test|Never runs\n\
             nodock|{hidden}|docker:no-such-container|test|No docker here\n\
             noport|-|auto|test|No port\n\
             alive|{web}|pgrep:constellation|test|pgrep finds the daemon\n\
             Bad Slug|80|auto\n\
             web2|notaport|auto\n"
        ),
    )
    .unwrap();
    std::fs::write(
        a_station.path("env"),
        "OTHER=1\nDRAGON_PRIVATE_SERVICES=\"hidden qdrant\"\n",
    )
    .unwrap();
    a_station.configure("");
    // Left by an earlier run: our stale script goes, a script we did not write stays.
    let scripts = a_station.path("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(
        scripts.join("x_old.sh"),
        "#!/bin/bash\n# x_old.sh: …\n# Written by constellation DRAGON. Usage: x_old.sh [off|stop]\n",
    )
    .unwrap();
    std::fs::write(
        scripts.join("x_kubo.sh"),
        "#!/bin/bash\nipfs p2p forward …\n",
    )
    .unwrap();
    let a = a_station.start(&[]);
    let report = services(&a);

    let w = published(&report, "web").unwrap_or_else(|| panic!("web not published: {report}"));
    assert_eq!(w["target"], tcp_addr(web));
    assert_eq!(skipped(&report, "hidden").unwrap()["reason"], "private");
    let gone = skipped(&report, "gone").unwrap();
    assert_eq!(gone["reason"], "not_running");
    assert!(gone["detail"].as_str().unwrap().contains("pgrep"));
    assert_eq!(skipped(&report, "nodock").unwrap()["reason"], "not_running");
    assert_eq!(skipped(&report, "noport").unwrap()["reason"], "no_port");
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("modules.list:8:"), "{warnings}");
    assert!(warnings.contains("Bad Slug"), "{warnings}");
    assert!(warnings.contains("modules.list:9:"), "{warnings}");
    let alive = published(&report, "alive").unwrap_or_else(|| panic!("{report}"));
    assert_eq!(alive["target"], tcp_addr(web));
    // The sshd_config of this station does not exist: port 22, with a warning naming it.
    assert!(warnings.contains("no-sshd_config"), "{warnings}");
    assert_eq!(
        report["published"]
            .as_array()
            .unwrap()
            .iter()
            .chain(report["skipped"].as_array().unwrap())
            .find(|s| s["slug"] == "ssh")
            .unwrap()["port"],
        22
    );
    let text = a.cli_ok(&["services"]);
    assert!(text.contains("skipped    hidden"), "{text}");
    assert!(text.contains("private"), "{text}");
    assert!(
        text.contains("warning    ") && text.contains("Bad Slug"),
        "{text}"
    );
    assert!(a_station.path("scripts").join("x_web.sh").exists());
    assert!(!a_station.path("scripts").join("x_hidden.sh").exists());
    assert!(!scripts.join("x_old.sh").exists());
    assert!(scripts.join("x_kubo.sh").exists());
    assert!(!tunnels(&a).contains("/x/hidden-"));

    // B has A's folder mirrored: the native port is web's own (taken here) → alternative port.
    let b_station = Station::new();
    let b = consumer(&b_station);
    let mirror = b_station.path("swarm").join(&a.peer_id);
    std::fs::create_dir_all(&mirror).unwrap();
    std::fs::copy(
        a_station.path("scripts").join("x_web.sh"),
        mirror.join("x_web.sh"),
    )
    .unwrap();
    common::connect(&a, &b);
    let c = json(&b.cli_ok(&["connect", "web", &a.peer_id, "--json"]));
    assert_eq!(c["native_port"], web);
    let port = c["port"].as_u64().unwrap() as u16;
    assert_eq!(port, system_alt_port(&a.peer_id, "web"));
    assert!(c["notes"].to_string().contains("taken"), "{c}");
    let body = http_get(port);
    assert_eq!(sha256(&body), sha256(&page));

    // An explicit port that is taken is a clear error; a bad slug is refused.
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port().to_string();
    let out = b.cli(&["connect", "web", &a.peer_id, "--port", &busy_port]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&busy_port) && err.contains("taken"), "{err}");
    let out = b.cli(&["connect", "Bad$lug", &a.peer_id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused"));
}

/// A process named `ipfs` (python3 under that name) listening on a port, as Kubo's
/// `ipfs p2p forward` does on a station; killed on drop.
struct FakeIpfs {
    child: Child,
    port: u16,
}

impl Drop for FakeIpfs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fake_ipfs(dir: &Path) -> FakeIpfs {
    let link = dir.join("ipfs");
    std::os::unix::fs::symlink("/usr/bin/python3", &link).expect("symlink python3 as ipfs");
    let port = free_port();
    let child = Command::new(&link)
        .args([
            "-c",
            "import socket, sys, time\n\
             s = socket.socket()\n\
             s.bind(('127.0.0.1', int(sys.argv[1])))\n\
             s.listen()\n\
             time.sleep(600)\n",
            &port.to_string(),
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn the fake ipfs");
    let fake = FakeIpfs { child, port };
    assert!(wait_until(CYCLE_WAIT, || TcpStream::connect((
        "127.0.0.1",
        port
    ))
    .is_ok()));
    fake
}

#[test]
fn private_stopped_and_tunnel_held_ports_are_not_published() {
    let b_station = Station::new();
    let b = consumer(&b_station);
    let private = TcpListener::bind("127.0.0.1:0").unwrap();
    let orpheus_port = free_port();
    let mut orpheus = Some(TcpListener::bind(("127.0.0.1", orpheus_port)).unwrap());
    let (b_forward, a_forward) = (free_port(), free_port());
    let ipfs_dir = tempfile::tempdir().unwrap();
    let ipfs = fake_ipfs(ipfs_dir.path());
    // B holds a forward on comfyui's port: another constellation process's tunnel.
    b.cli_ok(&[
        "p2p",
        "forward",
        "/x/elsewhere",
        &tcp_addr(b_forward),
        &format!("/p2p/{}", b.peer_id),
    ]);
    let a_station = Station::new();
    a_station.configure(&format!(
        "interval_secs = 1\n[dragon.ports]\nollama = {}\norpheus = {orpheus_port}\ncomfyui = {b_forward}\nperplexica = {a_forward}\nstrfry = {}\n",
        private.local_addr().unwrap().port(),
        ipfs.port,
    ));
    let a = a_station.start(&[("DRAGON_PRIVATE_SERVICES", "ollama")]);
    // A holds a forward on perplexica's port: its own tunnel.
    a.cli_ok(&[
        "p2p",
        "forward",
        "/x/elsewhere",
        &tcp_addr(a_forward),
        &format!("/p2p/{}", b.peer_id),
    ]);

    let report = services(&a);
    assert!(published(&report, "orpheus").is_some(), "{report}");
    assert_eq!(skipped(&report, "ollama").unwrap()["reason"], "private");
    let comfy = skipped(&report, "comfyui").unwrap();
    assert_eq!(comfy["reason"], "tunnel", "{report}");
    assert!(comfy["detail"].as_str().unwrap().contains("constellation"));
    let perplexica = skipped(&report, "perplexica").unwrap();
    assert_eq!(perplexica["reason"], "tunnel", "{report}");
    assert!(
        perplexica["detail"]
            .as_str()
            .unwrap()
            .contains("this daemon")
    );
    let strfry = skipped(&report, "strfry").unwrap();
    assert_eq!(strfry["reason"], "tunnel", "{report}");
    assert!(strfry["detail"].as_str().unwrap().contains("ipfs (pid"));
    let listing = tunnels(&a);
    assert!(listing.contains(&format!("/x/orpheus-{}", a.peer_id)));
    for slug in ["ollama", "comfyui", "perplexica", "strfry"] {
        assert!(!listing.contains(&format!("/x/{slug}-")), "{listing}");
    }
    let script = a_station.path("scripts").join("x_orpheus.sh");
    assert!(script.exists());

    // orpheus stops: within one 1-second cycle its tunnel and script are gone.
    drop(orpheus.take());
    let stopped = Instant::now();
    let proto = format!("/x/orpheus-{}", a.peer_id);
    assert!(
        wait_until(CYCLE_WAIT, || !tunnels(&a).contains(&proto)),
        "orpheus still published:\n{}",
        a.log()
    );
    let took = stopped.elapsed();
    // One 1-second cycle, plus slack for a loaded machine.
    assert!(took < Duration::from_secs(3), "unpublished after {took:?}");
    assert!(!script.exists());
    let report = json(&a.cli_ok(&["services", "--json"]));
    assert_eq!(
        skipped(&report, "orpheus").unwrap()["reason"],
        "not_running"
    );

    // It comes back: republished.
    let _orpheus = TcpListener::bind(("127.0.0.1", orpheus_port)).unwrap();
    assert!(wait_until(CYCLE_WAIT, || tunnels(&a).contains(&proto)));
    assert!(wait_until(CYCLE_WAIT, || script.exists()));
}

#[test]
fn sighup_runs_a_publishing_cycle() {
    let port = free_port();
    let a_station = Station::new();
    a_station.configure(&format!(
        "interval_secs = 3600\n[dragon.ports]\nollama = {port}\n"
    ));
    let a = a_station.start(&[]);
    let report = services(&a);
    assert_eq!(skipped(&report, "ollama").unwrap()["reason"], "not_running");
    let _ollama = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let proto = format!("/x/ollama-{}", a.peer_id);
    assert!(!tunnels(&a).contains(&proto));
    Command::new("kill")
        .args(["-HUP", &a.pid().to_string()])
        .status()
        .unwrap();
    assert!(
        wait_until(CYCLE_WAIT, || tunnels(&a).contains(&proto)),
        "SIGHUP did not publish:\n{}",
        a.log()
    );
    let report = json(&a.cli_ok(&["services", "--json"]));
    assert!(report["cycles"].as_u64().unwrap() >= 2);
}

#[test]
fn alternative_port_agrees_with_the_system_cksum() {
    let pairs = [
        (
            "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
            "ssh",
        ),
        (
            "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
            "strfry",
        ),
        ("QmPChd2hVbrJ6bfo3WBcTW4iZnpHm8TEzWkLHmLpXhF68A", "ollama"),
        (
            "12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK",
            "webtop-http",
        ),
        (
            "12D3KooWPjceQrSwdWXPyLLeABRXmuqt69Rg3sBYbU1Nft9HyQ6X",
            "open-webui",
        ),
        (
            "12D3KooWHa8k1GxzPbqZ7B2T5bVvJ9fJ6mX2Uz3RkD5hYtLqW1nE",
            "comfyui",
        ),
        ("", "x"),
    ];
    for (node, slug) in pairs {
        assert_eq!(
            constellation::dragon::port::alt_port(node, slug),
            system_alt_port(node, slug),
            "({node}, {slug})"
        );
    }
}

#[test]
fn generated_x_strfry_script_opens_the_tunnel_and_stop_closes_it() {
    let echo = net::echo_server();
    let a_station = Station::new();
    a_station.configure(&format!("[dragon.ports]\nstrfry = {}\n", echo.port()));
    let a = a_station.start(&[]);
    assert!(published(&services(&a), "strfry").is_some());
    let script = a_station.path("scripts").join("x_strfry.sh");
    let text = std::fs::read_to_string(&script).unwrap();
    let alt = system_alt_port(&a.peer_id, "strfry");
    assert!(text.contains("NATIVE_PORT=\"9999\""), "{text}");
    assert!(text.contains(&format!("ALT_PORT=\"{alt}\"")), "{text}");

    let b_station = Station::new();
    let b = consumer(&b_station);
    common::connect(&a, &b);
    let run = |arg: Option<&str>| run_script(&script, &b, arg);
    let (ok, stdout, stderr) = run(None);
    assert!(ok, "script failed: {stdout}\n{stderr}");
    let proto = format!("/x/strfry-{}", a.peer_id);
    let listing = tunnels(&b);
    let line = listing
        .lines()
        .find(|l| l.starts_with(&proto))
        .unwrap_or_else(|| panic!("no forward on B: {listing}"));
    let port: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|l| l.rsplit('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    assert!(port == 9999 || port == alt, "port {port}");
    assert!(stdout.contains(&format!("127.0.0.1:{port}")), "{stdout}");
    let data = payload(300_000, 6);
    assert_eq!(sha256(&net::request(port, &data).unwrap()), sha256(&data));
    // Run again: the existing tunnel is reused.
    // Bound on the docker bridge too (127.0.0.2 here), the same port.
    let bridge = format!("{proto} /ip4/127.0.0.2/tcp/{port} ");
    assert!(tunnels(&b).contains(&bridge), "{}", tunnels(&b));
    assert_eq!(
        sha256(&net::request_to("127.0.0.2", port, &data).unwrap()),
        sha256(&data)
    );
    let (ok, stdout, _) = run(None);
    assert!(ok && stdout.contains("already open"), "{stdout}");
    assert_eq!(tunnels(&b).matches(&proto).count(), 2);

    let (ok, stdout, stderr) = run(Some("stop"));
    assert!(ok, "stop failed: {stdout}\n{stderr}");
    assert!(!tunnels(&b).contains(&proto));
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());

    // A stops gracefully: its scripts go with its tunnels.
    let mut a = a;
    assert!(a.stop().is_some_and(|s| s.success()));
    assert!(!script.exists());
}

#[test]
fn the_daemons_own_embedded_relay_is_published_as_strfry() {
    let relay_port = free_port();
    let a_station = Station::new();
    a_station.configure(&format!("[dragon.ports]\nstrfry = {relay_port}\n"));
    let relay = format!("127.0.0.1:{relay_port}");
    let a = Daemon::start_in(&a_station.home(), &["--dragon", "--relay-listen", &relay]);
    assert_eq!(a.ready["relay_mode"], "embedded");
    let report = services(&a);
    let strfry = published(&report, "strfry").unwrap_or_else(|| panic!("{report}"));
    assert_eq!(strfry["target"], tcp_addr(relay_port));
    assert!(a_station.path("scripts").join("x_strfry.sh").exists());
}

#[test]
fn a_listener_made_by_hand_is_reported_and_left_alone() {
    let service = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = service.local_addr().unwrap().port();
    let elsewhere = free_port();
    let a_station = Station::new();
    let init = common::cli(&a_station.home(), &["init"]);
    let peer = String::from_utf8(init.stdout).unwrap().trim().to_owned();
    a_station.configure(&format!(
        "[dragon.ports]\nollama = {port}\n\n[[tunnels]]\nkind = \"listen\"\nprotocol = \"/x/ollama-{peer}\"\ntarget = {:?}\n",
        tcp_addr(elsewhere)
    ));
    let a = a_station.start(&[]);
    assert_eq!(a.peer_id, peer);
    let report = services(&a);
    let ollama = published(&report, "ollama").unwrap_or_else(|| panic!("{report}"));
    assert_eq!(ollama["managed"], false);
    assert_eq!(ollama["target"], tcp_addr(elsewhere));
    let listing = tunnels(&a);
    assert_eq!(
        listing.matches(&format!("/x/ollama-{peer}")).count(),
        1,
        "{listing}"
    );
    assert!(listing.contains(&tcp_addr(elsewhere)));
    assert!(a.cli_ok(&["services"]).contains("(manual)"));
}

#[test]
fn builtin_list_only_without_modules_list_and_strfry_is_never_private() {
    let relay = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_port = relay.local_addr().unwrap().port();
    let web = TcpListener::bind("127.0.0.1:0").unwrap();
    let web_port = web.local_addr().unwrap().port();
    let a_station = Station::new();
    std::fs::write(
        a_station.path("modules.list"),
        format!("web|{web_port}|auto|test|Web\n"),
    )
    .unwrap();
    a_station.configure(&format!(
        "interval_secs = 1\nprivate = [\"strfry\"]\n[dragon.ports]\nstrfry = {relay_port}\n"
    ));
    let a = a_station.start(&[("DRAGON_PRIVATE_SERVICES", "ssh strfry")]);
    let report = services(&a);
    // modules.list is there: its services, ssh and strfry, nothing of the built-in list.
    let considered = |report: &Value| -> Vec<String> {
        ["published", "skipped"]
            .iter()
            .flat_map(|k| report[k].as_array().cloned().unwrap_or_default())
            .map(|s| s["slug"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let mut slugs = considered(&report);
    slugs.sort();
    assert_eq!(slugs, ["ssh", "strfry", "web"], "{report}");
    let strfry = published(&report, "strfry").unwrap_or_else(|| panic!("{report}"));
    assert_eq!(strfry["target"], tcp_addr(relay_port));
    assert_eq!(skipped(&report, "ssh").unwrap()["reason"], "private");
    assert!(published(&report, "web").is_some(), "{report}");
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains("strfry is always published"),
        "{warnings}"
    );

    // Without modules.list: the built-in list of today's DRAGON (vane on 3002, 3001 is webtop).
    std::fs::remove_file(a_station.path("modules.list")).unwrap();
    let report = services(&a);
    let slugs = considered(&report);
    for slug in [
        "vane",
        "webtop-https",
        "icecast",
        "dify",
        "ollama",
        "strfry",
    ] {
        assert!(slugs.iter().any(|s| s == slug), "{slug} missing: {report}");
    }
    assert!(
        !slugs.iter().any(|s| s == "perplexica" || s == "web"),
        "{report}"
    );
    let port = |slug: &str| {
        report["skipped"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["slug"] == slug))
            .map(|s| s["port"].clone())
    };
    assert_eq!(port("vane"), Some(Value::from(3002)), "{report}");
    assert_eq!(port("webtop-https"), Some(Value::from(3001)), "{report}");
    assert!(published(&report, "strfry").is_some(), "{report}");
    assert!(report["warnings"].to_string().contains("does not exist"));
}

/// The variables a client script left, as bash itself prints them (`declare -p`), by name:
/// (exported, value).
fn script_variables(text: &str) -> std::collections::BTreeMap<String, (bool, String)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("declare ")?;
            let (flags, assignment) = rest.split_once(' ')?;
            let (name, value) = assignment.split_once('=')?;
            let value = value.trim_matches('"').to_owned();
            Some((name.to_owned(), (flags.contains('x'), value)))
        })
        .collect()
}

/// One run of a client script among stand-ins: (exit code, stdout, recorded argv, variables).
struct ScriptRun {
    code: Option<i32>,
    stdout: String,
    calls: Vec<String>,
    vars: std::collections::BTreeMap<String, (bool, String)>,
}

fn run_among_stubs(
    script: &Path,
    dir: &Path,
    arg: Option<&str>,
    env: &[(&str, &str)],
) -> ScriptRun {
    let stubs = script_stubs(dir, true);
    let (log, vars) = (dir.join("calls.log"), dir.join("vars.txt"));
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(&vars);
    // Sourced by every non-interactive bash; only the client script dumps its variables.
    let dump = dir.join("dump.sh");
    std::fs::write(
        &dump,
        "[[ \"$0\" == *x_*.sh ]] && trap 'declare -p NODE_ID PROTO NATIVE_PORT ALT_PORT LPORT REMOTE_USER > \"$STUB_VARS\" 2>/dev/null' EXIT\n",
    )
    .unwrap();
    let out = Command::new("bash")
        .arg(script)
        .args(arg)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", stubs.display()))
        .env("HOME", dir)
        .env("BASH_ENV", &dump)
        .env("STUB_LOG", &log)
        .env("STUB_VARS", &vars)
        .envs(env.iter().copied())
        .output()
        .expect("run bash");
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    ScriptRun {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        calls: calls.lines().map(str::to_owned).collect(),
        vars: script_variables(&std::fs::read_to_string(&vars).unwrap_or_default()),
    }
}

#[test]
fn x_ssh_script_pings_first_binds_loopback_bridge_and_lan_and_exports_lport() {
    let sshd = TcpListener::bind("127.0.0.1:0").unwrap();
    let ssh_port = sshd.local_addr().unwrap().port();
    let a_station = Station::new();
    let sshd_config = a_station.path("sshd_config");
    std::fs::write(&sshd_config, format!("Port {ssh_port}\n")).unwrap();
    a_station.configure_with_sshd(&sshd_config, "");
    let a = a_station.start(&[("USER", "pi")]);
    assert!(published(&services(&a), "ssh").is_some());
    let script = a_station.path("scripts").join("x_ssh.sh");
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(check.success(), "bash -n refuses x_ssh.sh");
    let (node, proto) = (a.peer_id.clone(), format!("/x/ssh-{}", a.peer_id));
    let alt = system_alt_port(&node, "ssh").to_string();
    let forward = |ip: &str, port: &str| {
        format!("constellation p2p forward {proto} /ip4/{ip}/tcp/{port} /p2p/{node}")
    };
    let p2p_calls = |run: &ScriptRun| -> Vec<String> {
        (run.calls.iter())
            .filter(|c| c.starts_with("constellation") && !c.starts_with("constellation p2p ls"))
            .cloned()
            .collect()
    };
    let dir = tempfile::tempdir().unwrap();

    // The native port is free: ping, then 127.0.0.1, the bridge, each IPv4 LAN address once.
    let run = run_among_stubs(
        &script,
        dir.path(),
        None,
        &[
            ("STUB_DOCKER_GW", "172.18.0.1"),
            (
                "STUB_LAN",
                "192.168.1.5 10.0.0.7 fe80::1 172.18.0.1 127.0.1.1",
            ),
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    let port = ssh_port.to_string();
    assert_eq!(
        p2p_calls(&run),
        [
            format!("constellation ping -n 2 /p2p/{node}"),
            forward("127.0.0.1", &port),
            forward("172.18.0.1", &port),
            forward("192.168.1.5", &port),
            forward("10.0.0.7", &port),
        ]
    );
    let var = |run: &ScriptRun, name: &str| run.vars.get(name).cloned();
    assert_eq!(
        var(&run, "LPORT"),
        Some((true, port.clone())),
        "{:?}",
        run.vars
    );
    assert_eq!(var(&run, "REMOTE_USER"), Some((false, "pi".into())));
    assert_eq!(var(&run, "NATIVE_PORT").unwrap().1, port);
    assert_eq!(var(&run, "ALT_PORT").unwrap().1, alt);
    assert_eq!(var(&run, "PROTO").unwrap().1, proto);
    assert!(
        run.stdout
            .contains(&format!("ssh -X pi@localhost -p {port}")),
        "{}",
        run.stdout
    );

    // The native port is taken and docker says nothing: the alternative port, bridge 172.17.0.1.
    let run = run_among_stubs(&script, dir.path(), None, &[("STUB_BUSY", &port)]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert_eq!(var(&run, "LPORT"), Some((true, alt.clone())));
    assert_eq!(
        p2p_calls(&run)[1..],
        [forward("127.0.0.1", &alt), forward("172.17.0.1", &alt)]
    );

    // The station does not answer the ping: nothing is forwarded, exit 1.
    let run = run_among_stubs(&script, dir.path(), None, &[("STUB_PING_RC", "1")]);
    assert_eq!(run.code, Some(1));
    assert_eq!(
        p2p_calls(&run),
        [format!("constellation ping -n 2 /p2p/{node}")]
    );

    // `off` closes the protocol and does nothing else.
    let run = run_among_stubs(&script, dir.path(), Some("off"), &[]);
    assert_eq!(run.code, Some(0));
    assert_eq!(
        p2p_calls(&run),
        [format!("constellation p2p close -p {proto}")]
    );
}

#[test]
fn constellation_ping_times_a_round_trip_to_a_connected_peer() {
    let a_station = Station::new();
    let a = consumer(&a_station);
    let b_station = Station::new();
    let b = consumer(&b_station);
    common::connect(&a, &b);
    let out = a.cli_ok(&["ping", "-n", "2", &format!("/p2p/{}", b.peer_id)]);
    assert_eq!(out.matches("Pong received: time=").count(), 2, "{out}");
    assert!(out.starts_with(&format!("PING {}.", b.peer_id)), "{out}");
    let own = common::cli(&a.home, &["ping", &a.peer_id]);
    assert!(!own.status.success());
}
