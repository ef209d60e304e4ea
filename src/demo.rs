//! `constellation demo`: the seed's picture on one machine. Starts N real daemons (each with its
//! identity and embedded relay) in a temporary folder, links them by libp2p, seeds events, runs
//! one sync on station A, prints the before/after table, writes a report, and cleans up.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nostr::prelude::{
    Event, EventBuilder, EventId, Filter, FinalizeEvent, Keys, Kind, Tag, Timestamp,
};
use serde_json::{Value, json};

use crate::config::{Home, ListenSpec};
use crate::control::{self, Request};
use crate::sync::relay_client::RelayClient;
use crate::sync::stats::RunStats;

/// How long a demo daemon may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a daemon may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Most stations `--stations` accepts (each is a process with a few threads and sockets).
const MAX_STATIONS: usize = 64;

/// Flags of `constellation demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Stations in the constellation (A, B, C, …).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(2..=MAX_STATIONS as i64))]
    pub stations: u16,
    /// Leave the daemons running and the folder in place (prints how to stop them).
    #[arg(long)]
    pub keep: bool,
    /// Give every station the same generated swarm key (a private network, as UPlanet's).
    #[arg(long)]
    pub swarm_key: bool,
    /// Folder for the stations (default: a new one under the system's temp folder).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One daemon of the demo; stopped on drop unless kept.
struct Station {
    name: String,
    home: PathBuf,
    peer_id: String,
    listen: String,
    relay: String,
    status: Option<String>,
    child: Option<Child>,
}

impl Station {
    fn start(
        bin: &Path,
        dir: &Path,
        name: &str,
        swarm_key: Option<&Path>,
        status: bool,
    ) -> anyhow::Result<Station> {
        let home = dir.join(name);
        std::fs::create_dir_all(&home)
            .with_context(|| format!("cannot create {}", home.display()))?;
        let log = std::fs::File::create(home.join("daemon.log"))?;
        let mut command = Command::new(bin);
        command
            .arg("--home")
            .arg(&home)
            .args(["daemon", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .args(["--relay-listen", "127.0.0.1:0", "--no-dragon"]);
        if status {
            command.args(["--status-listen", "127.0.0.1:0"]);
        } else {
            command.arg("--no-status");
        }
        if let Some(key) = swarm_key {
            command.arg("--swarm-key").arg(key);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start station {name}"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut station = Station {
            name: name.to_owned(),
            home,
            peer_id: String::new(),
            listen: String::new(),
            relay: String::new(),
            status: None,
            child: Some(child),
        };
        let line = rx.recv_timeout(READY_TIMEOUT).unwrap_or_default();
        let ready: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        let text = |k: &str| ready[k].as_str().map(str::to_owned);
        let (Some(peer_id), Some(listen), Some(relay)) = (
            text("peer_id"),
            ready["listen"][0].as_str().map(str::to_owned),
            text("relay"),
        ) else {
            anyhow::bail!(
                "station {name} did not start; see {}",
                station.home.join("daemon.log").display()
            );
        };
        station.peer_id = peer_id;
        station.listen = listen;
        station.relay = relay;
        station.status = text("status");
        Ok(station)
    }

    fn socket(&self) -> PathBuf {
        Home::resolve(Some(self.home.clone())).control_socket()
    }

    fn relay_port(&self) -> &str {
        self.relay.rsplit(':').next().unwrap_or_default()
    }

    /// SIGTERM, then SIGKILL after `STOP_TIMEOUT`.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Leave the daemon running (`--keep`); returns its pid.
    fn detach(&mut self) -> Option<u32> {
        self.child.take().map(|c| c.id())
    }
}

impl Drop for Station {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The events whose presence the tables show: label and id.
struct Tracked {
    label: String,
    id: EventId,
}

fn station_name(i: usize) -> String {
    if i < 26 {
        ((b'A' + i as u8) as char).to_string()
    } else {
        format!("S{i}")
    }
}

fn note(keys: &Keys, content: &str, at: u64) -> anyhow::Result<Event> {
    Ok(EventBuilder::new(Kind::TextNote, content)
        .custom_created_at(Timestamp::from(at))
        .finalize(keys)?)
}

fn follows(keys: &Keys, friend: &Keys, at: u64) -> anyhow::Result<Event> {
    Ok(EventBuilder::new(Kind::ContactList, "")
        .tags([Tag::public_key(friend.public_key())])
        .custom_created_at(Timestamp::from(at))
        .finalize(keys)?)
}

async fn relay_client(url: &str) -> anyhow::Result<RelayClient> {
    RelayClient::connect_url(url, Duration::from_secs(10), Duration::from_secs(30))
        .await
        .with_context(|| format!("cannot reach the relay {url}"))
}

async fn publish(url: &str, events: &[Event]) -> anyhow::Result<()> {
    let mut c = relay_client(url).await?;
    let out = c.publish(events).await?;
    if !out.refused.is_empty() {
        anyhow::bail!("{url} refused seed events: {:?}", out.refused);
    }
    c.close().await;
    Ok(())
}

/// Which tracked events each station holds.
async fn presence(stations: &[Station], tracked: &[Tracked]) -> anyhow::Result<Vec<Vec<bool>>> {
    let ids: Vec<EventId> = tracked.iter().map(|t| t.id).collect();
    let mut out = Vec::new();
    for s in stations {
        let mut c = relay_client(&s.relay).await?;
        let held: Vec<EventId> = c
            .query(Filter::new().ids(ids.clone()).limit(ids.len()))
            .await?
            .into_iter()
            .map(|e| e.id)
            .collect();
        c.close().await;
        out.push(ids.iter().map(|id| held.contains(id)).collect());
    }
    Ok(out)
}

fn render_table(stations: &[Station], tracked: &[Tracked], held: &[Vec<bool>]) -> String {
    let width = tracked.iter().map(|t| t.label.len()).max().unwrap_or(5);
    let mut out = format!("{:width$}", "");
    for s in stations {
        out.push_str(&format!(" {:>3}", s.name));
    }
    out.push('\n');
    for (row, t) in tracked.iter().enumerate() {
        out.push_str(&format!("{:width$}", t.label));
        for column in held {
            out.push_str(&format!(" {:>3}", if column[row] { "●" } else { "·" }));
        }
        out.push('\n');
    }
    out
}

fn html_report(
    stations: &[Station],
    tracked: &[Tracked],
    before: &[Vec<bool>],
    after: &[Vec<bool>],
    stats: &RunStats,
) -> String {
    let table = |held: &[Vec<bool>]| {
        let mut t = String::from("<table><tr><th></th>");
        for s in stations {
            t.push_str(&format!("<th>{}</th>", s.name));
        }
        t.push_str("</tr>");
        for (row, tr) in tracked.iter().enumerate() {
            t.push_str(&format!("<tr><td>{}</td>", tr.label));
            for column in held {
                t.push_str(if column[row] {
                    "<td class=y>●</td>"
                } else {
                    "<td class=n>·</td>"
                });
            }
            t.push_str("</tr>");
        }
        t + "</table>"
    };
    format!(
        "<!doctype html><meta charset=utf-8><title>constellation demo</title>\
         <style>body{{font:14px system-ui,sans-serif;margin:24px}}td,th{{padding:2px 10px;text-align:center}}\
         .y{{color:#1a7f37}}.n{{color:#999}}.grid{{display:flex;gap:48px}}</style>\
         <h1>constellation demo: {} stations</h1><div class=grid><div><h2>Before</h2>{}</div>\
         <div><h2>After one sync on A</h2>{}</div></div><h2>Sync on A</h2><p>status <b>{}</b>, \
         {} peers ok, {} imported, {} uploaded, {} authors discovered by N², {:.2} s</p>",
        stations.len(),
        table(before),
        table(after),
        stats.status(),
        stats.peers_ok,
        stats.imported,
        stats.uploaded,
        stats.discovered,
        stats.duration_ms as f64 / 1000.0
    )
}

fn swarm_key_file(dir: &Path) -> anyhow::Result<PathBuf> {
    use rand::RngCore;
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    let path = dir.join("swarm.key");
    std::fs::write(
        &path,
        format!("/key/swarm/psk/1.0.0/\n/base16/\n{}\n", hex::encode(key)),
    )?;
    Ok(path)
}

/// `--swarm-dir` of station A: a `12345.json` (and `x_strfry.sh`) per other station, whose relay
/// is only on its loopback, so A reaches it through `/x/strfry-<id>`.
fn swarm_dir(dir: &Path, stations: &[Station], captains: &[Keys]) -> anyhow::Result<PathBuf> {
    let swarm = dir.join("swarm-A");
    for (s, k) in stations.iter().zip(captains).skip(1) {
        let d = swarm.join(&s.peer_id);
        std::fs::create_dir_all(&d)?;
        std::fs::write(
            d.join("12345.json"),
            json!({
                "ipfsnodeid": s.peer_id,
                "myRELAY": "ws://127.0.0.1:7777",
                "captainHEX": k.public_key().to_hex(),
                "hostname": format!("station-{}", s.name),
            })
            .to_string(),
        )?;
        std::fs::write(d.join("x_strfry.sh"), "#!/bin/bash\n")?;
    }
    Ok(swarm)
}

/// Run the demo; exit 0 when every station ends with every event.
pub fn run(runtime: &tokio::runtime::Runtime, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let bin = std::env::current_exe().context("cannot find this program's path")?;
    let (dir, owned) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let d = std::env::temp_dir()
                .join(format!("constellation-demo-{}-{nanos}", std::process::id()));
            (d, true)
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result = demo(runtime, &args, &bin, &dir, started);
    if owned && !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// What one demo run found: the tracked events, which station held each before and after A's
/// backfill, and the backfill's figures.
struct Outcome {
    tracked: Vec<Tracked>,
    before: Vec<Vec<bool>>,
    after: Vec<Vec<bool>>,
    stats: RunStats,
}

impl Outcome {
    /// Every station holds every tracked event after the backfill.
    fn complete(&self) -> bool {
        self.after.iter().all(|column| column.iter().all(|&h| h))
    }
}

fn demo(
    runtime: &tokio::runtime::Runtime,
    args: &DemoArgs,
    bin: &Path,
    dir: &Path,
    started: Instant,
) -> anyhow::Result<ExitCode> {
    let n = usize::from(args.stations);
    let key = if args.swarm_key {
        Some(swarm_key_file(dir)?)
    } else {
        None
    };
    let mut stations = Vec::with_capacity(n);
    for i in 0..n {
        stations.push(Station::start(
            bin,
            dir,
            &station_name(i),
            key.as_deref(),
            i == 0,
        )?);
    }
    let captains: Vec<Keys> = (0..n).map(|_| Keys::generate()).collect();
    let outcome = runtime.block_on(async {
        link(&stations).await?;
        let tracked = seed(&stations, &captains).await?;
        let before = presence(&stations, &tracked).await?;
        let stats = backfill_on_a(dir, &stations, &captains).await?;
        let after = presence(&stations, &tracked).await?;
        Ok::<_, anyhow::Error>(Outcome {
            tracked,
            before,
            after,
            stats,
        })
    })?;
    let report = write_reports(dir, &stations, &outcome)?;
    let elapsed = started.elapsed().as_secs_f64();
    if args.json {
        print_json(args, dir, &stations, &outcome, elapsed);
    } else {
        print_text(args, &report, &stations, &outcome, elapsed);
    }
    let complete = outcome.complete();
    release(args, dir, stations);
    Ok(if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Every station serves its relay as /x/strfry-<id>; A is linked to every other one.
async fn link(stations: &[Station]) -> anyhow::Result<()> {
    for s in stations {
        let spec = ListenSpec {
            protocol: format!("/x/strfry-{}", s.peer_id),
            target: format!("/ip4/127.0.0.1/tcp/{}", s.relay_port()),
            report_peer_id: false,
            allow_custom_protocol: false,
            allow_peers: Vec::new(),
        };
        control::call(
            &s.socket(),
            &Request::P2pListen {
                spec,
                persist: false,
            },
        )
        .await?;
    }
    for s in &stations[1..] {
        let addr = format!("{}/p2p/{}", s.listen, s.peer_id);
        control::call(&stations[0].socket(), &Request::SwarmConnect { addr }).await?;
    }
    Ok(())
}

/// The seed's picture: station i holds events 2i+1 and 2i+2 of its captain; A's user follows a
/// friend whose note is on B, who follows a friend whose note is on C. Returns what to track.
async fn seed(stations: &[Station], captains: &[Keys]) -> anyhow::Result<Vec<Tracked>> {
    let at = Timestamp::now().as_secs() - 600;
    let mut tracked = Vec::new();
    for (i, (s, k)) in stations.iter().zip(captains).enumerate() {
        let events = [
            note(k, &format!("event {}", 2 * i + 1), at + 2 * i as u64)?,
            note(k, &format!("event {}", 2 * i + 2), at + 2 * i as u64 + 1)?,
        ];
        for (j, e) in events.iter().enumerate() {
            tracked.push(Tracked {
                label: format!("event {} ({})", 2 * i + j + 1, s.name),
                id: e.id,
            });
        }
        publish(&s.relay, &events).await?;
    }
    tracked.extend(seed_friends(stations, &captains[0], at).await?);
    Ok(tracked)
}

/// A's captain follows a friend (note on B), who follows a friend of a friend (note on the last
/// station): the N¹ and N² events to track.
async fn seed_friends(
    stations: &[Station],
    captain: &Keys,
    at: u64,
) -> anyhow::Result<[Tracked; 2]> {
    let (friend, friend_of_friend) = (Keys::generate(), Keys::generate());
    let friend_note = note(&friend, "a friend's note", at + 100)?;
    let fof_note = note(&friend_of_friend, "a friend of a friend's note", at + 101)?;
    publish(&stations[0].relay, &[follows(captain, &friend, at)?]).await?;
    publish(
        &stations[1].relay,
        &[
            follows(&friend, &friend_of_friend, at)?,
            friend_note.clone(),
        ],
    )
    .await?;
    let last = stations.len() - 1;
    publish(&stations[last].relay, std::slice::from_ref(&fof_note)).await?;
    Ok([
        Tracked {
            label: "friend (N¹)".into(),
            id: friend_note.id,
        },
        Tracked {
            label: "friend of friend (N²)".into(),
            id: fof_note.id,
        },
    ])
}

/// One backfill on A, in A's daemon, through the tunnels; returns its figures.
async fn backfill_on_a(
    dir: &Path,
    stations: &[Station],
    captains: &[Keys],
) -> anyhow::Result<RunStats> {
    let zen = dir.join("A-zen");
    let account = zen.join("game/nostr/captain@A");
    std::fs::create_dir_all(&account)?;
    std::fs::write(account.join("HEX"), captains[0].public_key().to_hex())?;
    let swarm = swarm_dir(dir, stations, captains)?;
    let backfill = crate::trigger::flags::parse_args([
        "--swarm-dir".as_ref(),
        swarm.as_os_str(),
        "--zen".as_ref(),
        zen.as_os_str(),
        "--no-profiles".as_ref(),
        // The demo stays on loopback: no public relay for missing profiles.
        "--no-fallback".as_ref(),
    ])?;
    let value = control::call(
        &stations[0].socket(),
        &Request::Backfill {
            args: backfill.options(),
        },
    )
    .await?;
    Ok(serde_json::from_value(value)?)
}

/// Writes the demo's report.html and the sync report of A's run, as the hourly trigger writes
/// it; returns the path of report.html.
fn write_reports(dir: &Path, stations: &[Station], outcome: &Outcome) -> anyhow::Result<PathBuf> {
    let report = dir.join("report.html");
    std::fs::write(
        &report,
        html_report(
            stations,
            &outcome.tracked,
            &outcome.before,
            &outcome.after,
            &outcome.stats,
        ),
    )?;
    crate::report::Report::load(
        &Home::resolve(Some(stations[0].home.clone())).history(),
        Some(outcome.stats.run_id),
        "demo station A".into(),
    )?
    .save(&dir.join("reports"))?;
    Ok(report)
}

/// `{station: {event label: held}}` for `--json`.
fn held_matrix(stations: &[Station], tracked: &[Tracked], held: &[Vec<bool>]) -> Value {
    stations
        .iter()
        .zip(held)
        .map(|(s, column)| {
            let row: serde_json::Map<String, Value> = tracked
                .iter()
                .zip(column)
                .map(|(t, h)| (t.label.clone(), Value::Bool(*h)))
                .collect();
            (s.name.clone(), Value::Object(row))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn print_json(args: &DemoArgs, dir: &Path, stations: &[Station], outcome: &Outcome, elapsed: f64) {
    let matrix = |held: &[Vec<bool>]| held_matrix(stations, &outcome.tracked, held);
    println!(
        "{}",
        json!({
            "stations": stations.iter().map(|s| json!({"name": s.name, "peer_id": s.peer_id, "relay": s.relay})).collect::<Vec<_>>(),
            "before": matrix(&outcome.before),
            "after": matrix(&outcome.after),
            "complete": outcome.complete(),
            "stats": outcome.stats,
            "dir": dir,
            "kept": args.keep,
            "seconds": elapsed,
        })
    );
}

fn print_text(
    args: &DemoArgs,
    report: &Path,
    stations: &[Station],
    outcome: &Outcome,
    elapsed: f64,
) {
    let (n, stats) = (stations.len(), &outcome.stats);
    println!(
        "constellation demo: {n} stations on loopback, each a daemon with its embedded relay\n"
    );
    println!(
        "before\n{}",
        render_table(stations, &outcome.tracked, &outcome.before)
    );
    println!(
        "after one sync on A ({}: {} peers ok, {} imported, {} uploaded, {} discovered by N², {:.2} s)\n{}",
        stats.status(),
        stats.peers_ok,
        stats.imported,
        stats.uploaded,
        stats.discovered,
        stats.duration_ms as f64 / 1000.0,
        render_table(stations, &outcome.tracked, &outcome.after)
    );
    if args.keep {
        println!("report: {}", report.display());
    } else {
        println!("report: written in the demo folder, removed with it (--keep keeps both)");
    }
    println!(
        "{} in {elapsed:.1} s",
        if outcome.complete() {
            "every station holds every event"
        } else {
            "INCOMPLETE"
        }
    );
}

/// With --keep the daemons stay up (their pids are said); else each one is stopped.
fn release(args: &DemoArgs, dir: &Path, mut stations: Vec<Station>) {
    if args.keep {
        let pids: Vec<String> = stations
            .iter_mut()
            .filter_map(|s| s.detach())
            .map(|p| p.to_string())
            .collect();
        eprintln!(
            "kept: {} (status page {}); stop with: kill {}",
            dir.display(),
            stations[0].status.as_deref().unwrap_or("-"),
            pids.join(" ")
        );
    } else {
        for s in &mut stations {
            s.stop();
        }
    }
}
