//! The CLI side of the daemon's commands: `init`, `id`, `swarm`, `p2p`. Each builds a control
//! request, sends it, and prints the answer in Kubo's format (or JSON).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::context::Context;
use crate::config::{ForwardSpec, Home, ListenSpec};
use crate::control::{self, Request};
use crate::node::NodeInfo;
use crate::tunnel::{CloseFilter, StreamInfo, TunnelInfo};

/// Flags of `constellation init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {}

/// Flags of `constellation id`.
#[derive(Debug, clap::Args)]
pub struct IdArgs {
    /// Print `{"id": …, "addresses": […], "first_peers": …}`: addresses (and routing mode,
    /// reachability, announced addresses) only while a daemon runs; `first_peers` gives each
    /// bootstrap/peering/routing/addresses setting with its source (config, kubo_repo,
    /// astroport_list, default).
    #[arg(long)]
    pub json: bool,
    /// Report the identity of this Kubo repo instead (without a value: $IPFS_PATH or ~/.ipfs).
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "")]
    pub kubo_repo: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum SwarmCommand {
    /// Connect to a peer: a multiaddr ending in /p2p/<peer id>.
    Connect { address: String },
    /// List connected peers (`-v`: how each was found, connection, latency, tunnels).
    Peers {
        #[arg(long)]
        json: bool,
        /// Columns: address, how the peer was found, connection kind, ping latency, tunnels
        /// (Kubo's `swarm peers -v`; `--verbose` is the global log flag here).
        #[arg(short = 'v', long)]
        detail: bool,
    },
    /// The stations of the swarm map (`~/.zen/tmp/swarm/`): id, hostname, myRELAY, moats age,
    /// direct or one hop (through whose map), services. Works without a daemon.
    Map {
        #[arg(long)]
        json: bool,
    },
    /// Run one swarm map cycle now in the daemon: probe peers, mirror stations, follow their
    /// maps one hop, clean up; prints what was fetched, kept, refused and removed.
    Refresh {
        #[arg(long)]
        json: bool,
    },
    /// The daemon's live links: state (live, catching up, down since …), events in and out,
    /// duplicates, drops and lag of each.
    Live {
        #[arg(long)]
        json: bool,
    },
}

/// How a list (`p2p ls`, `p2p stream ls`) is printed: Kubo's columns, or the daemon's JSON.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ListFormat {
    /// Print column headers (and, for streams, the bytes carried).
    #[arg(short = 'v', long = "headers")]
    pub headers: bool,
    /// Print the daemon's answer as JSON.
    #[arg(long)]
    pub json: bool,
}

impl ListFormat {
    /// Print `result` as JSON, or as the rows `columns` formats.
    fn print<T: serde::de::DeserializeOwned>(
        self,
        result: serde_json::Value,
        columns: impl Fn(&[T], bool) -> String,
    ) -> anyhow::Result<()> {
        if self.json {
            println!("{result}");
        } else {
            let rows: Vec<T> = serde_json::from_value(result)?;
            print!("{}", columns(&rows, self.headers));
        }
        Ok(())
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum P2pCommand {
    /// Serve inbound streams of <PROTOCOL> by connecting to <TARGET> (e.g. /ip4/127.0.0.1/tcp/22).
    Listen {
        protocol: String,
        target: String,
        /// Accept a protocol name that does not start with /x/.
        #[arg(long)]
        allow_custom_protocol: bool,
        /// First write the remote's PeerID and a newline to the target.
        #[arg(short = 'r', long)]
        report_peer_id: bool,
        /// Only these peers may open the tunnel (repeatable). Default: every peer.
        #[arg(long = "allow-peer", value_name = "PEERID")]
        allow_peer: Vec<String>,
        /// Keep this tunnel across daemon restarts.
        #[arg(long)]
        persist: bool,
    },
    /// Carry TCP connections to <LISTEN> to <TARGET> (/p2p/<peer id> or a full multiaddr).
    Forward {
        protocol: String,
        listen: String,
        target: String,
        /// Accept a protocol name that does not start with /x/.
        #[arg(long)]
        allow_custom_protocol: bool,
        /// Keep this tunnel across daemon restarts.
        #[arg(long)]
        persist: bool,
    },
    /// List listeners and forwards: protocol, listen address, target address.
    Ls {
        #[command(flatten)]
        format: ListFormat,
    },
    /// Close listeners and forwards (every given filter must match).
    Close {
        /// Close all.
        #[arg(short = 'a', long)]
        all: bool,
        /// Match this protocol.
        #[arg(short = 'p', long)]
        protocol: Option<String>,
        /// Match this listen address.
        #[arg(short = 'l', long = "listen-address")]
        listen: Option<String>,
        /// Match this target address.
        #[arg(short = 't', long = "target-address")]
        target: Option<String>,
    },
    /// Live tunnel streams.
    #[command(subcommand)]
    Stream(StreamCommand),
}

#[derive(Debug, clap::Subcommand)]
pub enum StreamCommand {
    /// List open streams: id, protocol, origin, target (and bytes with -v).
    Ls {
        #[command(flatten)]
        format: ListFormat,
    },
    /// Close (reset) one stream, or all with -a.
    Close {
        id: Option<u64>,
        #[arg(short = 'a', long)]
        all: bool,
    },
}

const CONFIG_TEMPLATE: &str = r#"# constellation configuration. Every key is optional; shown values are the defaults.

[node]
# listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
# Unset keys below are taken from the Kubo repo's config (with --kubo-repo / kubo_repo), and
# bootstrap from ~/.zen/game/MY_boostrap_nodes.txt or ~/.zen/Astroport.ONE/A_boostrap_nodes.txt.
# bootstrap = []                 # dialled at start: "/ip4/…/tcp/4001/p2p/12D3…", "/dnsaddr/…"
# peering = []                   # kept connected (re-dialled), like Kubo's Peering.Peers
# routing = "dht"                # "dht" (client until public), "dhtclient", "dhtserver", "none"
# announce = []                  # Addresses.Announce: announced instead of the listen addresses
# append_announce = []           # Addresses.AppendAnnounce
# no_announce = []               # Addresses.NoAnnounce
# dns = "127.0.0.1:53"           # resolver for /dns4, /dns6, /dnsaddr (default: the system's)
# kubo_repo = "/home/user/.ipfs" # use the station's Kubo identity (IPFSNODEID)
# swarm_key = "/home/user/.ipfs/swarm.key"
# relays = []                    # relays to reserve a slot on when behind NAT: "/ip4/…/p2p/12D3…"
# relay_service = true           # serve relay slots; unset: only while AutoNAT says public
# autonat_private_addresses = false  # AutoNAT for LAN/VPN addresses too

[node.limits]
# max_connections = 512
# max_connections_per_peer = 4
# max_pending = 64
# max_streams_per_peer = 256
# shutdown_grace_secs = 5
# conn_low = 40                   # connection manager: above conn_high connections, idle ones
# conn_high = 200                 # (no tunnel, not kept) are closed down to conn_low
# conn_grace_secs = 20            # a connection younger than this is never trimmed

# Tunnels that come back at every start:
# [[tunnels]]
# kind = "listen"
# protocol = "/x/ssh-12D3…"
# target = "/ip4/127.0.0.1/tcp/22"
# allow_peers = ["12D3…"]
#
# [[tunnels]]
# kind = "forward"
# protocol = "/x/strfry-12D3…"
# listen = "/ip4/127.0.0.1/tcp/9999"
# target = "/p2p/12D3…"

# DRAGON: publish this station's running services as /x/<slug>-<PEERID> and write x_<slug>.sh.
[dragon]
# enabled = true
# interval_secs = 300
# modules_list = "/home/user/.zen/Astroport.ONE/IA/modules.list"
# env_file = "/home/user/.zen/Astroport.ONE/.env"     # DRAGON_PRIVATE_SERVICES="qdrant …"
# scripts_dir = "/home/user/.zen/tmp/<PEERID>"
# swarm_dir = "/home/user/.zen/tmp/swarm"
# sshd_config = "/etc/ssh/sshd_config"
# private = []
# manage_ssh_keys = false          # keep a block of ~/.ssh/authorized_keys (bootstrap, players, captains)
# ssh_keys_interval_secs = 3600
# uplanet_g1pub = "g1…"            # default: $UPLANETG1PUB, else ~/.zen/game/uplanet.ss58
# [dragon.ports]
# ollama = 11434
# [dragon.allow_peers]
# ssh = ["12D3…"]

# The block store: blocks of our folder and of the mirrored stations, served over bitswap.
[ipfs]
# blocks_max_bytes = 2147483648

# The swarm map (_12345.sh without Kubo): mirror every station into ~/.zen/tmp/swarm/<ID>/ and
# publish ~/.zen/tmp/<ID>/ under /ipns/<ID>. "auto": off while a Kubo daemon serves ~/.ipfs.
[swarm_map]
# enabled = "auto"
# interval_secs = 3600
# probe_timeout_secs = 20
# probe_timeout_empty_secs = 60
# max_age_secs = 43200
# station_timeout_secs = 120
# max_station_bytes = 67108864
# max_station_files = 2000
# max_station_depth = 8
# max_map_bytes = 1073741824
# publish = true
# record_lifetime_secs = 86400
# record_ttl_secs = 1800
# own_check_secs = 60            # a change of our folder goes out at the next check
# my_relay = "wss://relay.example"   # default: the embedded relay's URL
# captain_hex = "…64 hex…"
# node_hex = "…64 hex…"

# Live links: new events reach every station in seconds; the hourly backfill repairs the rest.
# Links: [trigger] backfill's --peer and these peers, else the stations of the swarm folder.
[live]
# enabled = true
# dir = "both"             # "down": pull only; "up": push to plain relays only
# peers = []
# queue = 1024             # events waiting to be pushed to one link; past it: catching up
# backoff_min_ms = 500
# backoff_max_secs = 60
# overlap_secs = 10
# refresh_secs = 300
"#;

/// Send `request` to the home's daemon and wait for its answer.
pub(crate) fn call(ctx: &Context, request: Request) -> anyhow::Result<serde_json::Value> {
    Ok(ctx.block_on(control::call(&ctx.home.control_socket(), &request))??)
}

/// `constellation init`.
pub fn init(home: &Home, _args: InitArgs) -> anyhow::Result<ExitCode> {
    home.ensure()?;
    let key = crate::identity::load_or_generate(&home.identity_key())?;
    let config = home.config_file();
    if !config.exists() {
        std::fs::write(&config, CONFIG_TEMPLATE)
            .with_context(|| format!("cannot write {}", config.display()))?;
    }
    println!("{}", key.public().to_peer_id());
    Ok(ExitCode::SUCCESS)
}

/// `constellation id`: ask the daemon, else read the key from disk.
pub fn id(ctx: &Context, args: IdArgs) -> anyhow::Result<ExitCode> {
    let running = args.kubo_repo.is_none()
        && ctx.block_on(control::is_running(&ctx.home.control_socket()))?;
    let (peer_id, details) = if running {
        let value = call(ctx, Request::Id)?;
        let info: NodeInfo = serde_json::from_value(value.clone())?;
        (info.peer_id, value)
    } else {
        let config = ctx.config()?;
        let kubo = crate::node::options::kubo_repo_choice(args.kubo_repo.as_ref(), config);
        let key = crate::node::options::load_keypair(&ctx.home, kubo.as_ref())?;
        let first = crate::node::options::first_peers(config, args.kubo_repo.as_ref())?;
        let details = serde_json::json!({ "listen": [], "first_peers": first });
        (key.public().to_peer_id().to_string(), details)
    };
    if args.json {
        // Kubo's `id` keys first, then ours: where each first-peer setting came from, the
        // routing mode, reachability and the announced addresses.
        let mut out = serde_json::json!({ "id": peer_id, "addresses": details["listen"] });
        if let (Some(out), Some(details)) = (out.as_object_mut(), details.as_object()) {
            for (key, value) in details {
                if !matches!(key.as_str(), "peer_id" | "listen" | "peers") {
                    out.insert(key.clone(), value.clone());
                }
            }
        }
        println!("{out}");
    } else {
        println!("{peer_id}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `constellation ping`.
#[derive(Debug, clap::Args)]
pub struct PingArgs {
    /// The peer: a PeerID or `/p2p/<PeerID>`.
    pub peer: String,
    /// Round trips (at most 10).
    #[arg(short = 'n', long, default_value_t = 2)]
    pub count: u32,
}

/// `constellation ping`: one line per round trip, then the average, as `ipfs ping`.
pub fn ping(ctx: &Context, args: PingArgs) -> anyhow::Result<ExitCode> {
    let result = call(
        ctx,
        Request::Ping {
            peer: args.peer,
            count: args.count,
        },
    )?;
    let rtts: Vec<f64> = serde_json::from_value(result["rtt_ms"].clone())?;
    let peer = result["peer"].as_str().unwrap_or_default();
    println!("PING {peer}.");
    for rtt in &rtts {
        println!("Pong received: time={rtt:.2} ms");
    }
    let average = rtts.iter().sum::<f64>() / rtts.len().max(1) as f64;
    println!("Average latency: {average:.2}ms");
    Ok(ExitCode::SUCCESS)
}

/// `constellation swarm …`.
pub fn swarm(ctx: &Context, command: SwarmCommand) -> anyhow::Result<ExitCode> {
    match command {
        SwarmCommand::Connect { address } => {
            let result = call(ctx, Request::SwarmConnect { addr: address })?;
            println!(
                "connect {} success",
                result["peer_id"].as_str().unwrap_or_default()
            );
        }
        SwarmCommand::Peers { json, detail } => {
            let result = call(ctx, Request::SwarmPeers)?;
            if json {
                println!("{result}");
            } else {
                let peers: Vec<crate::node::PeerInfo> = serde_json::from_value(result)?;
                print!("{}", format_peers(&peers, detail));
            }
        }
        SwarmCommand::Map { json } => super::swarm_map::map(ctx, json)?,
        SwarmCommand::Refresh { json } => super::swarm_map::refresh(ctx, json)?,
        SwarmCommand::Live { json } => super::swarm_map::live(ctx, json)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `constellation p2p …`.
pub fn p2p(ctx: &Context, command: P2pCommand) -> anyhow::Result<ExitCode> {
    match command {
        P2pCommand::Listen {
            protocol,
            target,
            allow_custom_protocol,
            report_peer_id,
            allow_peer,
            persist,
        } => {
            let spec = ListenSpec {
                protocol,
                target,
                report_peer_id,
                allow_custom_protocol,
                allow_peers: allow_peer,
            };
            call(ctx, Request::P2pListen { spec, persist })?;
        }
        P2pCommand::Forward {
            protocol,
            listen,
            target,
            allow_custom_protocol,
            persist,
        } => {
            let spec = ForwardSpec {
                protocol,
                listen,
                target,
                allow_custom_protocol,
            };
            call(ctx, Request::P2pForward { spec, persist })?;
        }
        P2pCommand::Ls { format } => format.print(call(ctx, Request::P2pLs)?, format_tunnels)?,
        P2pCommand::Close {
            all,
            protocol,
            listen,
            target,
        } => {
            let filter = CloseFilter {
                all,
                protocol,
                listen,
                target,
            };
            let closed: Vec<TunnelInfo> =
                serde_json::from_value(call(ctx, Request::P2pClose { filter })?)?;
            println!("Closed {} tunnel(s)", closed.len());
        }
        P2pCommand::Stream(StreamCommand::Ls { format }) => {
            format.print(call(ctx, Request::StreamLs)?, format_streams)?
        }
        P2pCommand::Stream(StreamCommand::Close { id, all }) => {
            if id.is_none() && !all {
                anyhow::bail!("give a stream id, or -a to close all streams");
            }
            let result = call(
                ctx,
                Request::StreamClose {
                    id: if all { None } else { id },
                },
            )?;
            println!("Closed {} stream(s)", result["closed"]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Lay out rows in aligned columns (Kubo uses a tabwriter).
fn columns(rows: Vec<Vec<String>>) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join(" ").trim_end());
        out.push('\n');
    }
    out
}

/// `swarm peers`: `address/p2p/id` as Kubo prints it; verbose adds how each peer was found,
/// the connection kind, the ping latency and the tunnels on it.
pub fn format_peers(peers: &[crate::node::PeerInfo], verbose: bool) -> String {
    let rows = peers.iter().map(|p| {
        let mut row = vec![format!("{}/p2p/{}", p.address, p.peer_id)];
        if verbose {
            row.extend([
                label(&p.found).replace('_', " "),
                label(&p.connection),
                p.latency_ms.map_or("-".into(), |ms| format!("{ms:.1}ms")),
                format!("{} tunnel(s)", p.tunnels),
            ]);
        }
        row
    });
    columns(rows.collect())
}

/// The serde name of an enum value (`swarm_map`, `direct`).
fn label<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// `p2p ls`: `protocol listen-address target-address`, as Kubo prints it.
pub fn format_tunnels(rows: &[TunnelInfo], headers: bool) -> String {
    let mut table: Vec<Vec<String>> = Vec::new();
    if headers {
        table.push(vec![
            "Protocol".into(),
            "ListenAddress".into(),
            "TargetAddress".into(),
        ]);
    }
    table.extend(rows.iter().map(|t| {
        vec![
            t.protocol.clone(),
            t.listen_address.clone(),
            t.target_address.clone(),
        ]
    }));
    columns(table)
}

/// `p2p stream ls`: `id protocol origin target` (+ bytes with headers).
pub fn format_streams(rows: &[StreamInfo], headers: bool) -> String {
    let mut table: Vec<Vec<String>> = Vec::new();
    if headers {
        table.push(
            ["Id", "Protocol", "Origin", "Target", "Sent", "Received"]
                .map(String::from)
                .to_vec(),
        );
    }
    table.extend(rows.iter().map(|s| {
        let mut row = vec![
            s.id.to_string(),
            s.protocol.clone(),
            s.origin_address.clone(),
            s.target_address.clone(),
        ];
        if headers {
            row.extend([s.bytes_sent.to_string(), s.bytes_received.to_string()]);
        }
        row
    }));
    columns(table)
}
