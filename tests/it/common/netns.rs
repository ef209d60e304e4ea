//! Network namespaces for NAT tests: a "public" bridge, routers that masquerade (nft), hosts
//! behind them. Everything is removed on drop; creation failures panic (CI runs as root).

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Labs created by this test process, so that parallel tests get distinct namespace names.
static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// The public segment's address of the bridge (relays and public nodes listen here).
pub const PUBLIC_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
/// The public host's address ([`Lab::add_public_host`]), in its own namespace so that its
/// packets never leave with the relay's source address.
pub const PUBLIC_HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 3);

/// A second address of the bridge that go-libp2p counts as public: outside go-multiaddr's private
/// and unroutable lists (its relay puts only public addresses in a reservation), inside
/// 192.0.0.0/24 (IETF protocol assignments, never routed on the internet), and only ever on the
/// lab's bridge, which has no link out of its namespaces.
pub const GLOBAL_LOOKING_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 0, 100);

/// How a router treats traffic from the host behind it. Either way it drops unsolicited
/// inbound packets silently, as home routers do (an RST would kill a hole punch's first SYN).
#[derive(Clone, Copy)]
pub enum Nat {
    /// Masquerade, anything outbound allowed (a home box): hole punching can work.
    Open,
    /// Masquerade, and outbound only to this address (a strict firewall): only a relay works.
    OnlyTo(Ipv4Addr),
}

/// A set of namespaces: `<p>pub` (the bridge), and per NATed host `<p>r<i>` and `<p>h<i>`.
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    hosts: u8,
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e} (install iproute2 and nftables)"));
    assert!(
        out.status.success(),
        "{args:?} failed (NAT tests need root, iproute2 and nftables): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_ns(ns: &str, args: &[&str]) {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(args);
    run(&full);
}

impl Lab {
    /// The public segment: a bridge with [`PUBLIC_IP`].
    pub fn new() -> Lab {
        let n = NEXT_LAB.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("cn{}x{n}", std::process::id() % 100_000);
        let mut lab = Lab {
            prefix,
            namespaces: Vec::new(),
            hosts: 0,
        };
        let public = lab.add_ns("pub");
        in_ns(&public, &["ip", "link", "set", "lo", "up"]);
        in_ns(&public, &["ip", "link", "add", "br0", "type", "bridge"]);
        let ip = format!("{PUBLIC_IP}/24");
        in_ns(&public, &["ip", "addr", "add", &ip, "dev", "br0"]);
        let global = format!("{GLOBAL_LOOKING_IP}/32");
        in_ns(&public, &["ip", "addr", "add", &global, "dev", "br0"]);
        in_ns(&public, &["ip", "link", "set", "br0", "up"]);
        lab
    }

    fn add_ns(&mut self, role: &str) -> String {
        let name = format!("{}{role}", self.prefix);
        run(&["ip", "netns", "add", &name]);
        self.namespaces.push(name.clone());
        name
    }

    /// The public namespace (the bridge's).
    pub fn public(&self) -> String {
        format!("{}pub", self.prefix)
    }

    /// A host on the public segment at [`PUBLIC_HOST_IP`]; returns its namespace.
    pub fn add_public_host(&mut self) -> String {
        let host = self.add_ns("c");
        let public = self.public();
        in_ns(&host, &["ip", "link", "set", "lo", "up"]);
        run(&[
            "ip", "link", "add", "eth0", "netns", &host, "type", "veth", "peer", "name", "pc",
            "netns", &public,
        ]);
        in_ns(&public, &["ip", "link", "set", "pc", "master", "br0", "up"]);
        let ip = format!("{PUBLIC_HOST_IP}/24");
        in_ns(&host, &["ip", "addr", "add", &ip, "dev", "eth0"]);
        in_ns(&host, &["ip", "link", "set", "eth0", "up"]);
        route_to_global_looking(&host);
        host
    }

    /// A host behind its own router; returns the host's namespace. The host is `10.99.<i>.2`,
    /// its router `10.99.0.<10+i>` on the public side.
    pub fn add_host_behind_nat(&mut self, nat: Nat) -> String {
        self.hosts += 1;
        let i = self.hosts;
        let router = self.add_ns(&format!("r{i}"));
        let host = self.add_ns(&format!("h{i}"));
        let public = self.public();
        for ns in [&router, &host] {
            in_ns(ns, &["ip", "link", "set", "lo", "up"]);
        }
        // Uplink: router "wan" <-> public bridge port "p<i>".
        let port = format!("p{i}");
        run(&[
            "ip", "link", "add", "wan", "netns", &router, "type", "veth", "peer", "name", &port,
            "netns", &public,
        ]);
        in_ns(
            &public,
            &["ip", "link", "set", &port, "master", "br0", "up"],
        );
        let up_ip = format!("10.99.0.{}/24", 10 + i);
        in_ns(&router, &["ip", "addr", "add", &up_ip, "dev", "wan"]);
        in_ns(&router, &["ip", "link", "set", "wan", "up"]);
        route_to_global_looking(&router);
        // Downlink: router "lan" <-> host "eth0".
        run(&[
            "ip", "link", "add", "lan", "netns", &router, "type", "veth", "peer", "name", "eth0",
            "netns", &host,
        ]);
        let down_ip = format!("10.99.{i}.1/24");
        in_ns(&router, &["ip", "addr", "add", &down_ip, "dev", "lan"]);
        in_ns(&router, &["ip", "link", "set", "lan", "up"]);
        in_ns(
            &host,
            &[
                "ip",
                "addr",
                "add",
                &format!("10.99.{i}.2/24"),
                "dev",
                "eth0",
            ],
        );
        in_ns(&host, &["ip", "link", "set", "eth0", "up"]);
        in_ns(
            &host,
            &[
                "ip",
                "route",
                "add",
                "default",
                "via",
                &format!("10.99.{i}.1"),
            ],
        );
        in_ns(
            &router,
            &["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"],
        );
        nft(&router, &ruleset(nat));
        host
    }

    /// The address of the `i`-th host (1-based) behind its NAT.
    pub fn host_ip(i: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 99, i, 2)
    }
}

/// [`GLOBAL_LOOKING_IP`] is on the bridge's namespace, reached through [`PUBLIC_IP`].
fn route_to_global_looking(ns: &str) {
    let (to, via) = (GLOBAL_LOOKING_IP.to_string(), PUBLIC_IP.to_string());
    in_ns(ns, &["ip", "route", "add", &to, "via", &via]);
}

fn ruleset(nat: Nat) -> String {
    let allow = match nat {
        Nat::Open => String::new(),
        Nat::OnlyTo(ip) => format!("ip daddr {ip} "),
    };
    [
        "table ip nat {",
        "  chain masq { type nat hook postrouting priority 100; oifname \"wan\" masquerade; }",
        "}",
        "table ip filter {",
        "  chain guard { type filter hook forward priority 0; policy drop;",
        "    ct state established,related accept",
        &format!("    iifname \"lan\" oifname \"wan\" {allow}accept"),
        "  }",
        "  chain shut { type filter hook input priority 0; policy accept;",
        "    iifname \"wan\" ct state new drop",
        "  }",
        "}",
    ]
    .join("\n")
}

fn nft(ns: &str, rules: &str) {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nft (Debian package nftables, installed by ./test)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(rules.as_bytes())
        .expect("write rules");
    let out = child.wait_with_output().expect("nft");
    assert!(
        out.status.success(),
        "nft rules refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Run `f` on a thread inside namespace `ns`: sockets it creates belong to `ns` (and keep
/// working from any thread afterwards; threads it spawns start in `ns` too).
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns on this thread only, with a valid namespace fd.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("thread in namespace")
}
