//! Shared test utilities: start our daemon as a real process, run CLI commands against it,
//! and simple TCP services (echo, swap) whose payloads are checked by SHA-256.

#![allow(dead_code)]

pub mod fake_relay;
pub mod net;
pub mod netns;
pub mod relays;
pub mod strfry;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a daemon may take to print its ready line (debug build, loaded CI machine).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The binary under test; `CONSTELLATION_BIN` points the tests at another build (e.g. main's,
/// to see a new test fail there first).
pub fn bin() -> String {
    std::env::var("CONSTELLATION_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_constellation").to_owned())
}

/// Resident memory of process `pid`, in KiB (`VmRSS` of /proc/<pid>/status).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// A daemon process with its own home; SIGTERM then SIGKILL on drop, so no process outlives a test.
pub struct Daemon {
    pub home: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub peer_id: String,
    pub listen: Vec<String>,
    /// The whole ready line (relay URL and mode, control socket, …).
    pub ready: serde_json::Value,
    child: Option<Child>,
}

impl Daemon {
    /// Start a daemon on 127.0.0.1:0 with no relay, plus `extra` daemon flags.
    pub fn start(extra: &[&str]) -> Daemon {
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = tmp.path().join("home");
        let mut daemon = Daemon::start_in(&home, extra);
        daemon._tmp = Some(tmp);
        daemon
    }

    /// Start a daemon whose fresh home has `config` as its config.toml.
    pub fn start_with_config(config: &str, extra: &[&str]) -> Daemon {
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = home_with(&tmp.path().join("home"), config);
        let mut daemon = Daemon::start_in(&home, extra);
        daemon._tmp = Some(tmp);
        daemon
    }

    /// Start a daemon on an existing home (e.g. to restart it).
    pub fn start_in(home: &Path, extra: &[&str]) -> Daemon {
        Daemon::start_with_env(home, extra, &[])
    }

    pub fn start_with_env(home: &Path, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::spawn(home, extra, env, None)
    }

    /// Start a daemon inside network namespace `netns` with `config` as its config.toml.
    /// The CLI still reaches it from here: the control socket is a file in its home.
    pub fn start_in_netns(netns: &str, config: &str, extra: &[&str]) -> Daemon {
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = home_with(&tmp.path().join("home"), config);
        let mut daemon = Daemon::spawn(&home, extra, &[], Some(netns));
        daemon._tmp = Some(tmp);
        daemon
    }

    fn spawn(home: &Path, extra: &[&str], env: &[(&str, &str)], netns: Option<&str>) -> Daemon {
        std::fs::create_dir_all(home).expect("home");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(home.join("daemon.log"))
            .expect("log file");
        // `ip netns exec` execs the daemon, so the child's pid is the daemon's.
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, &bin()]);
                c
            }
            None => Command::new(bin()),
        };
        command.arg("--home").arg(home).arg("daemon");
        if !extra.contains(&"--relay-listen") {
            command.arg("--no-relay");
        }
        if !extra.contains(&"--status-listen") {
            command.arg("--no-status");
        }
        if !extra.contains(&"--dragon") {
            // DRAGON would publish this machine's services and write scripts under ~/.zen.
            command.arg("--no-dragon");
        }
        if !extra.contains(&"--listen") {
            command.args(["--listen", "/ip4/127.0.0.1/tcp/0"]);
        }
        // The daemon's ~/.zen (swarm map, DRAGON's scripts) stays inside the test's home unless
        // the test names a HOME itself: no test writes into the real one.
        if !env.iter().any(|(k, _)| *k == "HOME") {
            let user = home.join("user");
            std::fs::create_dir_all(&user).expect("HOME inside the test");
            command.env("HOME", user);
        }
        command
            .args(extra)
            .env("RUST_LOG", "info,constellation=debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = command.spawn().expect("spawn daemon");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) if !line.is_empty() => line,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "daemon did not become ready; log:\n{}",
                    std::fs::read_to_string(home.join("daemon.log")).unwrap_or_default()
                );
            }
        };
        let ready: serde_json::Value = serde_json::from_str(&line).expect("ready line is JSON");
        assert_eq!(ready["event"], "ready");
        Daemon {
            home: home.to_owned(),
            _tmp: None,
            peer_id: ready["peer_id"].as_str().expect("peer_id").to_owned(),
            listen: ready["listen"]
                .as_array()
                .expect("listen")
                .iter()
                .map(|a| a.as_str().expect("addr").to_owned())
                .collect(),
            ready,
            child: Some(child),
        }
    }

    /// The first listen address with `/p2p/<id>` appended.
    pub fn addr(&self) -> String {
        format!("{}/p2p/{}", self.listen[0], self.peer_id)
    }

    /// Run `constellation --home <home> <args>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli(&self.home, args)
    }

    /// Run a CLI command that must succeed; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "constellation {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.join("daemon.log")).unwrap_or_default()
    }

    /// Wait until the log contains `needle` (bounded).
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log().contains(needle))
    }

    /// Send SIGTERM and wait for the exit status (bounded; SIGKILL after 15 s).
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        unsafe_sigterm(child.id());
        let mut status = None;
        if wait_until(Duration::from_secs(15), || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        }) {
            return status;
        }
        let _ = child.kill();
        child.wait().ok()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

/// Poll `ok` every 100 ms until it holds or `timeout` passes; true if it held.
pub fn wait_until(timeout: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// As [`wait_until`], for a check that awaits (inside a test's own runtime).
pub async fn wait_until_async<F, Fut>(timeout: Duration, mut ok: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if ok().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Create the home folder `home` with `config` as its config.toml; returns `home`.
pub fn home_with(home: &Path, config: &str) -> PathBuf {
    std::fs::create_dir_all(home).expect("home folder");
    std::fs::write(home.join("config.toml"), config).expect("config.toml");
    home.to_owned()
}

/// Run the CLI against `home`.
pub fn cli(home: &Path, args: &[&str]) -> Output {
    cli_with_env(home, args, &[])
}

/// [`cli`] with `env` set for the command.
pub fn cli_with_env(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run constellation")
}

/// Run `command` with `stdin` fed from another thread (so a child that writes while it reads
/// never deadlocks on a full pipe); stdout and stderr are captured.
pub fn run_with_stdin(command: &mut Command, stdin: &[u8]) -> Output {
    use std::io::Write as _;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait for the child");
    let _ = feeder.join();
    out
}

/// Connect two daemons (b dials a).
pub fn connect(a: &Daemon, b: &Daemon) {
    b.cli_ok(&["swarm", "connect", &a.addr()]);
}

/// Headless Chromium (Debian package, installed by ./test) on `url` with extra `args`.
pub fn chromium(args: &[&str], url: &str) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=4000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("chromium is installed by ./test (Debian package chromium)")
}

/// A station laid out under a temp HOME (`.zen/…`, `.ssh/…`, `.ipfs/…`); our home folder is
/// `.zen/constellation`, as on a station.
pub struct TempHome {
    dir: tempfile::TempDir,
}

impl TempHome {
    pub fn new() -> TempHome {
        TempHome {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
    /// The HOME.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    /// Write `text` at `rel`, creating the folders.
    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().expect("a file path")).expect("folders");
        std::fs::write(path, text).expect("write file");
    }
    /// The text at `rel`, empty when the file is absent.
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_default()
    }
    /// `.zen/constellation`.
    pub fn home(&self) -> PathBuf {
        self.path(".zen/constellation")
    }
}
