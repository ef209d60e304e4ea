//! Issue 20: live propagation between real daemons (embedded relays, `/x/strfry-<id>` tunnels,
//! loopback): a chain of five, a full mesh of four, and a station killed and brought back.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nostr::prelude::*;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::common::net::{free_port, tcp_addr};
use crate::common::relays::{ids, note, now, publish};
use crate::common::{self, Daemon, home_with, wait_until};

/// The issue's promise: an event published on A is stored on E within this.
const CHAIN_WITHIN: Duration = Duration::from_secs(5);
/// Every link of every station is live within this after the daemons start (loopback dials,
/// debug build on a loaded 2-core box).
const LINKS_UP: Duration = Duration::from_secs(30);
/// How long C stays dead: the issue's 30 s, far past the subscriptions' overlap
/// (`OVERLAP_SECS`), so what was published meanwhile can only come back through a
/// reconciliation, and through many of the links' backoffs.
const C_DEAD_FOR: Duration = Duration::from_secs(30);
/// The tests' `[live] overlap_secs`.
const OVERLAP_SECS: u64 = 2;
/// Events of the mesh test.
const MESH_EVENTS: usize = 1_000;
/// The mesh converges within this (1,000 events over 12 link directions).
const MESH_WITHIN: Duration = Duration::from_secs(45);

/// A station before it starts: its home, PeerID and fixed ports (so that peers can name it).
struct Plan {
    home: PathBuf,
    peer_id: String,
    listen: String,
    relay_port: u16,
}

impl Plan {
    fn new(root: &Path, name: &str) -> Plan {
        let home = root.join(name);
        std::fs::create_dir_all(&home).unwrap();
        let id: Value = serde_json::from_slice(&common::cli(&home, &["id", "--json"]).stdout)
            .expect("id --json");
        Plan {
            peer_id: id["id"].as_str().expect("id").to_owned(),
            home,
            listen: tcp_addr(free_port()),
            relay_port: free_port(),
        }
    }

    fn addr(&self) -> String {
        format!("{}/p2p/{}", self.listen, self.peer_id)
    }

    /// config.toml: its relay served as `/x/strfry-<id>`, live links to `peers` (kept
    /// connected by peering), quick backoff and refresh, no DHT, no scheduled sync.
    fn configure(&self, peers: &[&Plan]) {
        let ids: Vec<String> = peers.iter().map(|p| p.peer_id.clone()).collect();
        let addrs: Vec<String> = peers.iter().map(|p| p.addr()).collect();
        let config = format!(
            r#"[node]
routing = "none"
bootstrap = []
peering = {addrs:?}

[[tunnels]]
kind = "listen"
protocol = "/x/strfry-{id}"
target = "/ip4/127.0.0.1/tcp/{port}"

[trigger]
enabled = false

[live]
peers = {ids:?}
backoff_min_ms = 100
backoff_max_secs = 1
refresh_secs = 1
overlap_secs = {OVERLAP_SECS}
"#,
            id = self.peer_id,
            port = self.relay_port,
        );
        home_with(&self.home, &config);
    }

    fn start(&self) -> Daemon {
        self.start_with(&[])
    }

    fn start_with(&self, extra: &[&str]) -> Daemon {
        let relay = format!("127.0.0.1:{}", self.relay_port);
        let mut args = vec!["--relay-listen", &relay, "--listen", &self.listen];
        args.extend_from_slice(extra);
        Daemon::start_in(&self.home, &args)
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.relay_port)
    }
}

/// The live links of a daemon (`swarm live --json`).
fn links(d: &Daemon) -> Vec<Value> {
    serde_json::from_str::<Value>(&d.cli_ok(&["swarm", "live", "--json"]))
        .expect("json")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn link_to<'a>(links: &'a [Value], peer: &str) -> &'a Value {
    links
        .iter()
        .find(|l| l["name"] == peer)
        .unwrap_or_else(|| panic!("no link to {peer} in {links:?}"))
}

fn sum(links: &[Value], field: &str) -> u64 {
    links.iter().map(|l| l[field].as_u64().unwrap_or(0)).sum()
}

/// Has the relay at `url` every id of `want`?
fn holds(url: &str, want: &BTreeSet<EventId>) -> bool {
    let have = ids(url, Filter::new().ids(want.iter().copied()));
    want.is_subset(&have)
}

/// Plans for a chain `A–B–C–D–E` (each linked to its neighbours only), configured.
fn chain(root: &Path) -> Vec<Plan> {
    let plans: Vec<Plan> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|n| Plan::new(root, n))
        .collect();
    for (i, plan) in plans.iter().enumerate() {
        let mut neighbours = Vec::new();
        if i > 0 {
            neighbours.push(&plans[i - 1]);
        }
        if i + 1 < plans.len() {
            neighbours.push(&plans[i + 1]);
        }
        plan.configure(&neighbours);
    }
    plans
}

/// Every link of every daemon is connected (live, or catching up after a gap) to a station.
fn wait_links_live(daemons: &[Daemon]) {
    let ok = wait_until(LINKS_UP, || {
        daemons.iter().all(|d| {
            let l = links(d);
            !l.is_empty()
                && l.iter().all(|x| {
                    (x["state"] == "live" || x["state"] == "catching_up")
                        && x["remote"] == "station"
                })
        })
    });
    let states: Vec<Vec<Value>> = daemons.iter().map(links).collect();
    assert!(ok, "links not live: {states:#?}\n{}", daemons[0].log());
}

#[test]
fn an_event_on_a_reaches_e_along_a_chain_of_five_within_5_s_once_per_station() {
    let tmp = tempfile::tempdir().unwrap();
    let plans = chain(tmp.path());
    // A also serves its status page, which shows the same figures.
    let daemons: Vec<Daemon> = plans
        .iter()
        .enumerate()
        .map(|(i, p)| match i {
            0 => p.start_with(&["--status-listen", "127.0.0.1:0"]),
            _ => p.start(),
        })
        .collect();
    wait_links_live(&daemons);

    let event = note(&Keys::generate(), "live along the chain", now());
    let want = BTreeSet::from([event.id]);
    let published = Instant::now();
    publish(&plans[0].url(), std::slice::from_ref(&event));
    let arrived = wait_until(CHAIN_WITHIN, || holds(&plans[4].url(), &want));
    let took = published.elapsed();
    assert!(arrived, "not on E within {CHAIN_WITHIN:?}");
    eprintln!("A → E in {took:?}");
    assert!(wait_until(CHAIN_WITHIN, || plans
        .iter()
        .all(|p| holds(&p.url(), &want))));

    // Once per station: B, C, D and E each received it exactly once, from the station
    // before them; nobody sent it back (A received nothing), each hop sent it once.
    // The counters are written just after the store commits: wait for the last of them.
    let mut all: Vec<Vec<Value>> = Vec::new();
    wait_until(CHAIN_WITHIN, || {
        all = daemons.iter().map(links).collect();
        all.iter().skip(1).all(|l| sum(l, "stored") >= 1)
            && all.iter().map(|l| sum(l, "events_out")).sum::<u64>() >= 4
    });
    for (i, l) in all.iter().enumerate() {
        let (received, stored) = (sum(l, "events_in"), sum(l, "stored"));
        let expected = u64::from(i > 0);
        assert_eq!(
            (received, stored),
            (expected, expected),
            "station {i}: {l:#?}"
        );
        assert_eq!(sum(l, "repeated"), 0);
        if i > 0 {
            assert_eq!(link_to(l, &plans[i - 1].peer_id)["stored"], 1);
        }
    }
    let sent: u64 = all.iter().map(|l| sum(l, "events_out")).sum();
    assert_eq!(sent, 4, "one crossing per hop: {all:#?}");
    let status_url = daemons[0].ready["status"].as_str().expect("status page");
    let status: Value =
        serde_json::from_str(&crate::demo::http_get(status_url, "/api/status")).expect("JSON");
    let live = status["live"]
        .as_array()
        .expect("live links in /api/status");
    assert_eq!(live.len(), 1);
    assert_eq!(
        (&live[0]["name"], &live[0]["state"], &live[0]["events_out"]),
        (
            &Value::from(plans[1].peer_id.clone()),
            &Value::from("live"),
            &Value::from(1)
        )
    );
}

#[test]
fn a_mesh_of_four_carries_1000_events_to_everyone_at_most_once_per_link_and_direction() {
    let tmp = tempfile::tempdir().unwrap();
    let plans: Vec<Plan> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| Plan::new(tmp.path(), n))
        .collect();
    for plan in &plans {
        let others: Vec<&Plan> = plans.iter().filter(|p| p.peer_id != plan.peer_id).collect();
        plan.configure(&others);
    }
    let daemons: Vec<Daemon> = plans.iter().map(Plan::start).collect();
    wait_links_live(&daemons);

    // 1,000 events by 20 authors at random stations, published in small batches.
    let mut rng = rand::rngs::StdRng::seed_from_u64(20);
    let authors: Vec<Keys> = (0..20).map(|_| Keys::generate()).collect();
    let mut at: Vec<Vec<Event>> = vec![Vec::new(); plans.len()];
    let t = now();
    for i in 0..MESH_EVENTS {
        let keys = &authors[i % authors.len()];
        at[rng.gen_range(0..plans.len())].push(note(
            keys,
            &format!("mesh {i}"),
            t - (i % 5) as u64,
        ));
    }
    let want: BTreeSet<EventId> = at.iter().flatten().map(|e| e.id).collect();
    for round in 0..10 {
        for (plan, events) in plans.iter().zip(&at) {
            let chunk = events.len().div_ceil(10);
            let part: Vec<Event> = events
                .iter()
                .skip(round * chunk)
                .take(chunk)
                .cloned()
                .collect();
            if !part.is_empty() {
                publish(&plan.url(), &part);
            }
        }
    }
    let everywhere = wait_until(MESH_WITHIN, || plans.iter().all(|p| holds(&p.url(), &want)));
    if !everywhere {
        let counts: Vec<usize> = plans
            .iter()
            .map(|p| ids(&p.url(), Filter::new().ids(want.iter().copied())).len())
            .collect();
        let all: Vec<Vec<Value>> = daemons.iter().map(links).collect();
        panic!(
            "the mesh did not converge: {counts:?}\n{all:#?}\n{}",
            daemons[0].log()
        );
    }

    // Duplicates may still be on their way once everything is stored: wait for every link's
    // count of events sent to match its other end's count of events received.
    let balanced = |all: &[Vec<Value>]| {
        all.iter().enumerate().all(|(i, l)| {
            l.iter().all(|link| {
                let j = plans.iter().position(|p| p.peer_id == link["name"]);
                j.is_some_and(|j| {
                    link["events_out"] == link_to(&all[j], &plans[i].peer_id)["events_in"]
                })
            })
        })
    };
    let mut all: Vec<Vec<Value>> = Vec::new();
    wait_until(MESH_WITHIN, || {
        all = daemons.iter().map(links).collect();
        balanced(&all)
    });
    for (i, l) in all.iter().enumerate() {
        // Each station stored, through its links, exactly the events published elsewhere.
        assert_eq!(
            sum(l, "stored") as usize,
            MESH_EVENTS - at[i].len(),
            "station {i}: {l:#?}"
        );
        for link in l {
            assert_eq!(link["repeated"], 0, "an event crossed twice: {link}");
            assert!(link["events_in"].as_u64().unwrap() as usize <= MESH_EVENTS);
            assert_eq!(link["dropped"], 0);
            // What this link carried out is what the other end counted in, both ways.
            let j = plans
                .iter()
                .position(|p| p.peer_id == link["name"])
                .unwrap();
            let back = link_to(&all[j], &plans[i].peer_id);
            assert_eq!(link["events_out"], back["events_in"], "{link} vs {back}");
            assert!(link["events_out"].as_u64().unwrap() as usize <= MESH_EVENTS);
        }
    }
    // The backfill, the repair pass, finds nothing left to fetch.
    let b: Vec<String> = plans[1..]
        .iter()
        .flat_map(|p| ["--peer".into(), p.peer_id.clone()])
        .collect();
    let stats = backfill(&daemons[0], &b);
    assert_eq!(stats["imported"], 0, "{stats}");
}

/// `backfill --json --no-profiles` in the daemon of `d` with `args`.
fn backfill(d: &Daemon, args: &[String]) -> Value {
    let mut all = vec!["backfill", "--json", "--no-profiles"];
    all.extend(args.iter().map(String::as_str));
    let out = d.cli(&all);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "backfill printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn events_published_while_c_is_dead_reach_d_and_e_by_the_next_reconciliation_and_links_come_back() {
    let tmp = tempfile::tempdir().unwrap();
    let plans = chain(tmp.path());
    let mut daemons: Vec<Daemon> = plans.iter().map(Plan::start).collect();
    wait_links_live(&daemons);

    daemons[2].stop();
    let died = Instant::now();
    let keys = Keys::generate();
    let meanwhile: Vec<Event> = (0..5)
        .map(|i| note(&keys, &format!("while C is dead {i}"), now() - i))
        .collect();
    let want: BTreeSet<EventId> = meanwhile.iter().map(|e| e.id).collect();
    publish(&plans[0].url(), &meanwhile);
    assert!(
        wait_until(CHAIN_WITHIN, || holds(&plans[1].url(), &want)),
        "B is live with A"
    );
    let c = plans[2].peer_id.clone();
    assert!(wait_until(LINKS_UP, || {
        link_to(&links(&daemons[1]), &c)["state"] == "down"
            && link_to(&links(&daemons[3]), &c)["down_since"].is_u64()
    }));
    while died.elapsed() < C_DEAD_FOR {
        // C stays dead: B and D only pay their backoff timers meanwhile.
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        link_to(&links(&daemons[1]), &c)["connects"] == 1,
        "no connection to a dead C"
    );
    daemons[2] = plans[2].start();

    // The live links come back by themselves, on both sides of C.
    wait_links_live(&daemons);
    assert!(
        !holds(&plans[3].url(), &want),
        "older than the overlap: not live, the backfill's"
    );
    let b_to_c = link_to(&links(&daemons[1]), &c).clone();
    assert_eq!(b_to_c["state"], "catching_up", "C missed the gap: {b_to_c}");

    // The next reconciliation (C's backfill with its neighbours) repairs D and E.
    let args: Vec<String> = [&plans[1], &plans[3]]
        .iter()
        .flat_map(|p| ["--peer".into(), p.peer_id.clone()])
        .collect();
    let stats = backfill(&daemons[2], &args);
    assert_eq!(stats["imported"], 5, "what the live links missed: {stats}");
    assert!(
        wait_until(CHAIN_WITHIN, || holds(&plans[4].url(), &want)),
        "E repaired"
    );

    // And live again: a new event on A is on E within the promise.
    let fresh = note(&keys, "after the repair", now());
    publish(&plans[0].url(), std::slice::from_ref(&fresh));
    assert!(wait_until(CHAIN_WITHIN, || holds(
        &plans[4].url(),
        &BTreeSet::from([fresh.id])
    )));
}

/// A station whose one link is a plain relay (a real strfry at a `ws://` URL), with a push queue
/// of `queue` events.
fn station_with_relay_link(root: &Path, relay: &str, queue: usize) -> (Plan, Daemon) {
    let plan = Plan::new(root, "s");
    let config = format!(
        "[node]\nrouting = \"none\"\nbootstrap = []\n\n[trigger]\nenabled = false\n\n\
         [live]\npeers = [{relay:?}]\nqueue = {queue}\nbackoff_min_ms = 100\nbackoff_max_secs = 1\n\
         refresh_secs = 1\noverlap_secs = {OVERLAP_SECS}\n"
    );
    home_with(&plan.home, &config);
    let daemon = plan.start();
    assert!(wait_until(LINKS_UP, || {
        links(&daemon)
            .iter()
            .all(|l| l["state"] == "live" && l["remote"] == "relay")
    }));
    (plan, daemon)
}

#[test]
fn a_plain_relay_is_pulled_from_and_pushed_to_and_its_echo_is_only_a_duplicate() {
    let strfry = crate::common::strfry::Strfry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (plan, daemon) = station_with_relay_link(tmp.path(), &strfry.url, 1_024);
    let keys = Keys::generate();
    let ours = note(&keys, "from the station", now());
    let theirs = note(&keys, "from the relay", now());
    publish(&plan.url(), std::slice::from_ref(&ours));
    publish(&strfry.url, std::slice::from_ref(&theirs));
    assert!(
        wait_until(CHAIN_WITHIN, || holds(
            &strfry.url,
            &BTreeSet::from([ours.id])
        )),
        "pushed"
    );
    assert!(
        wait_until(CHAIN_WITHIN, || holds(
            &plan.url(),
            &BTreeSet::from([theirs.id])
        )),
        "pulled"
    );
    let ok = wait_until(CHAIN_WITHIN, || {
        let l = links(&daemon);
        l[0]["events_out"] == 1 && l[0]["stored"] == 1
    });
    let l = links(&daemon);
    assert!(ok, "{l:#?}");
    // strfry sends our own push back to our subscription: a duplicate, not a second store, and
    // the relay's event is not pushed back to it.
    assert_eq!(l[0]["repeated"], 0);
    assert!(l[0]["duplicate"].as_u64().unwrap() <= 1, "{l:#?}");
}

#[test]
fn a_burst_past_the_push_queue_drops_to_catching_up_and_the_backfill_repairs_it() {
    let strfry = crate::common::strfry::Strfry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (plan, daemon) = station_with_relay_link(tmp.path(), &strfry.url, 4);
    let keys = Keys::generate();
    let burst: Vec<Event> = (0..300)
        .map(|i| note(&keys, &format!("burst {i}"), now()))
        .collect();
    let want: BTreeSet<EventId> = burst.iter().map(|e| e.id).collect();
    publish(&plan.url(), &burst);
    let dropped = wait_until(CHAIN_WITHIN, || {
        let l = links(&daemon);
        l[0]["state"] == "catching_up" && l[0]["dropped"].as_u64().unwrap_or(0) > 0
    });
    assert!(dropped, "{:#?}", links(&daemon));
    let l = links(&daemon);
    let (out, lost) = (
        l[0]["events_out"].as_u64().unwrap(),
        l[0]["dropped"].as_u64().unwrap(),
    );
    assert!(out + lost <= 300, "{l:#?}");
    assert!(
        !holds(&strfry.url, &want),
        "the relay lacks what was dropped"
    );

    // The next reconciliation uploads the rest; then the link is live again.
    let stats = backfill(&daemon, &["--peer".into(), strfry.url.clone()]);
    assert_eq!(stats["uploaded"].as_u64(), Some(lost), "{stats}");
    assert!(holds(&strfry.url, &want));
    assert!(
        wait_until(LINKS_UP, || links(&daemon)[0]["state"] == "live"),
        "{:#?}",
        links(&daemon)
    );
}

#[test]
fn a_station_whose_local_relay_is_strfry_exchanges_events_live_with_an_embedded_one() {
    let strfry = crate::common::strfry::Strfry::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Plan::new(tmp.path(), "s");
    s.relay_port = strfry.port;
    let e = Plan::new(tmp.path(), "e");
    s.configure(&[&e]);
    e.configure(&[&s]);
    let daemons = vec![s.start(), e.start()];
    assert_eq!(daemons[0].ready["relay_mode"], "external");
    wait_links_live(&daemons);
    let keys = Keys::generate();
    let on_strfry = note(&keys, "posted on the strfry station", now());
    let on_embedded = note(&keys, "posted on the embedded station", now());
    publish(&strfry.url, std::slice::from_ref(&on_strfry));
    publish(&e.url(), std::slice::from_ref(&on_embedded));
    let both = BTreeSet::from([on_strfry.id, on_embedded.id]);
    assert!(
        wait_until(CHAIN_WITHIN, || holds(&e.url(), &both)),
        "pulled from strfry"
    );
    assert!(
        wait_until(CHAIN_WITHIN, || holds(&strfry.url, &both)),
        "stored into strfry"
    );
    let s_links = links(&daemons[0]);
    assert_eq!(s_links[0]["stored"], 1, "{s_links:#?}");
}
