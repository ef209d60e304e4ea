//! Is a service really running? Listening TCP sockets from `/proc/net/tcp{,6}`, their owning
//! process (socket inodes in `/proc/<pid>/fd`), and the modules.list checks (pgrep, docker, systemctl).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt as _;

use super::catalog::Check;

/// A check command (docker, systemctl, pgrep) that takes longer is "not running".
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Output read from a check command (`docker ps` of a busy host is a few KiB).
const MAX_CHECK_OUTPUT: u64 = 256 * 1024;
/// The kernel's state code for a listening TCP socket.
const TCP_LISTEN: &str = "0A";

/// One listening TCP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub addr: SocketAddr,
    pub inode: u64,
}

/// The process that owns a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub name: String,
}

/// What listens on a port, as DRAGON judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listening {
    Nothing,
    /// A native service: publish it with this target.
    Native {
        target: SocketAddr,
    },
    /// A tunnel (ours or Kubo's): never publish it (no tunnel → tunnel loops).
    Tunnel {
        by: String,
    },
}

/// Parse one `/proc/net/tcp` or `/proc/net/tcp6` text: the listening sockets.
pub fn parse_proc_net_tcp(text: &str) -> Vec<Listener> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(3) != Some(&TCP_LISTEN) {
                return None;
            }
            let (ip, port) = fields.get(1)?.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let inode = fields.get(9)?.parse().ok()?;
            Some(Listener {
                addr: SocketAddr::new(parse_hex_ip(ip)?, port),
                inode,
            })
        })
        .collect()
}

/// The kernel prints each 32-bit word of the address in host byte order.
fn parse_hex_ip(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

/// Every listening TCP socket of this network namespace (v4 and v6).
pub fn listeners() -> Vec<Listener> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|text| parse_proc_net_tcp(&text))
        .collect()
}

/// The owners of the sockets `inodes`, found through `/proc/<pid>/fd`. Processes whose fds we
/// may not read (other users, without root) are skipped: their sockets have no known owner.
pub fn socket_owners(inodes: &HashSet<u64>) -> HashMap<u64, Owner> {
    let mut owners = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return owners;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let inode = link
                .to_str()
                .and_then(|l| l.strip_prefix("socket:["))
                .and_then(|l| l.strip_suffix(']'))
                .and_then(|l| l.parse::<u64>().ok());
            if let Some(inode) = inode.filter(|i| inodes.contains(i)) {
                let name = std::fs::read_to_string(entry.path().join("comm"))
                    .map(|n| n.trim().to_owned())
                    .unwrap_or_default();
                owners.insert(inode, Owner { pid, name });
            }
        }
        if owners.len() == inodes.len() {
            break;
        }
    }
    owners
}

/// A snapshot of the listening sockets and their owners, taken once per cycle.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub listeners: Vec<Listener>,
    pub owners: HashMap<u64, Owner>,
}

impl Snapshot {
    /// Read `/proc` for the sockets listening on `ports` (blocking: call it off the async threads).
    pub fn take(ports: &HashSet<u16>) -> Snapshot {
        let listeners: Vec<Listener> = listeners()
            .into_iter()
            .filter(|l| ports.contains(&l.addr.port()))
            .collect();
        let inodes = listeners.iter().map(|l| l.inode).collect();
        let owners = socket_owners(&inodes);
        Snapshot { listeners, owners }
    }

    /// Judge `port`: a forward of this daemon (`forward_ports`), an `ipfs` process or another
    /// `constellation` process is a tunnel; any other listener is native.
    pub fn classify(&self, port: u16, own_pid: u32, forward_ports: &[u16]) -> Listening {
        if forward_ports.contains(&port) {
            return Listening::Tunnel {
                by: "a forward of this daemon".into(),
            };
        }
        let sockets: Vec<&Listener> = self
            .listeners
            .iter()
            .filter(|l| l.addr.port() == port)
            .collect();
        if sockets.is_empty() {
            return Listening::Nothing;
        }
        for socket in &sockets {
            if let Some(owner) = self.owners.get(&socket.inode) {
                let tunnel =
                    owner.name == "ipfs" || (owner.name == "constellation" && owner.pid != own_pid);
                if tunnel {
                    return Listening::Tunnel {
                        by: format!("{} (pid {})", owner.name, owner.pid),
                    };
                }
            }
        }
        Listening::Native {
            target: target_for(&sockets),
        }
    }
}

/// The address to connect to: loopback when the service listens on a wildcard or loopback
/// address, else the specific address it listens on.
fn target_for(sockets: &[&Listener]) -> SocketAddr {
    let port = sockets.first().map_or(0, |s| s.addr.port());
    let v4 = sockets.iter().find(|s| s.addr.is_ipv4());
    let choose = |s: &Listener| -> IpAddr {
        match s.addr.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => Ipv4Addr::LOCALHOST.into(),
            ip if ip.is_unspecified() => Ipv6Addr::LOCALHOST.into(),
            ip => ip,
        }
    };
    let ip = v4
        .or(sockets.first())
        .map_or(Ipv4Addr::LOCALHOST.into(), |s| choose(s));
    SocketAddr::new(ip, port)
}

/// Run a modules.list check. `Err` says why it could not run (which counts as "not running").
pub async fn run_check(check: &Check) -> Result<bool, String> {
    match check {
        Check::Auto => Ok(true),
        Check::Pgrep(name) => Ok(command(&["pgrep", "--", name]).await?.0),
        Check::Systemctl(unit) => Ok(command(&["systemctl", "is-active", "--quiet", unit])
            .await?
            .0),
        Check::Docker(name) => docker_ps("{{.Names}}", name).await,
        Check::DockerImg(image) => docker_ps("{{.Image}}", image).await,
    }
}

async fn docker_ps(format: &str, needle: &str) -> Result<bool, String> {
    let (ok, out) = command(&["docker", "ps", "--format", format]).await?;
    if !ok {
        return Err("`docker ps` failed".into());
    }
    Ok(out.lines().any(|l| l.contains(needle)))
}

/// Run `argv` within [`CHECK_TIMEOUT`]; returns (exit status success, bounded stdout).
async fn command(argv: &[&str]) -> Result<(bool, String), String> {
    run_bounded(argv, CHECK_TIMEOUT, MAX_CHECK_OUTPUT).await
}

/// Run `argv` (stdin closed, stderr dropped) within `timeout`, keeping at most `max_output`
/// bytes of stdout; returns (exit status success, stdout). Killed when dropped or late.
pub async fn run_bounded<S: AsRef<std::ffi::OsStr>>(
    argv: &[S],
    timeout: Duration,
    max_output: u64,
) -> Result<(bool, String), String> {
    let (program, args) = argv.split_first().ok_or("empty command")?;
    let name = program.as_ref().to_string_lossy().into_owned();
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {name}: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let run = async {
        let mut out = Vec::new();
        (&mut stdout)
            .take(max_output)
            .read_to_end(&mut out)
            .await
            .map_err(|e| e.to_string())?;
        drop(stdout);
        let status = child.wait().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((status.success(), String::from_utf8_lossy(&out).into_owned()))
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| format!("{name} did not answer within {timeout:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0\n\
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2222 1 0000000000000000 100 0 0 10 0\n\
   2: 0100007F:A1B2 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 3333 1 0000000000000000 100 0 0 10 0\n";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000000000000000000001000000:2B67 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0\n";

    #[test]
    fn proc_net_tcp_gives_listening_sockets_only() {
        let l = parse_proc_net_tcp(TCP);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(l[0].inode, 1111);
        assert_eq!(l[1].addr, "0.0.0.0:22".parse().unwrap());
        let l6 = parse_proc_net_tcp(TCP6);
        assert_eq!(l6[0].addr, "[::1]:11111".parse().unwrap());
    }

    fn snapshot(owner: &str, pid: u32) -> Snapshot {
        let listeners = parse_proc_net_tcp(TCP);
        let owners = HashMap::from([(
            1111,
            Owner {
                pid,
                name: owner.into(),
            },
        )]);
        Snapshot { listeners, owners }
    }

    #[test]
    fn ipfs_and_other_constellations_are_tunnels_our_own_relay_is_not() {
        assert!(matches!(
            snapshot("ipfs", 7).classify(8080, 1, &[]),
            Listening::Tunnel { by } if by.contains("ipfs")
        ));
        assert!(matches!(
            snapshot("constellation", 7).classify(8080, 1, &[]),
            Listening::Tunnel { .. }
        ));
        assert_eq!(
            snapshot("constellation", 1).classify(8080, 1, &[]),
            Listening::Native {
                target: "127.0.0.1:8080".parse().unwrap()
            }
        );
        assert!(matches!(
            snapshot("constellation", 1).classify(8080, 1, &[8080]),
            Listening::Tunnel { .. }
        ));
        assert_eq!(
            snapshot("sshd", 9).classify(22, 1, &[]),
            Listening::Native {
                target: "127.0.0.1:22".parse().unwrap()
            }
        );
        assert_eq!(snapshot("sshd", 9).classify(23, 1, &[]), Listening::Nothing);
    }

    #[tokio::test]
    async fn a_check_that_cannot_run_is_an_error() {
        assert!(
            command(&["/nonexistent/constellation-check"])
                .await
                .is_err()
        );
        assert_eq!(run_check(&Check::Auto).await, Ok(true));
    }
}
