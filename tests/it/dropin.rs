//! Issue 16, sync and report: living next to Astroport's own jobs on a home laid out like a
//! station's (`~/.zen/...` under a temp `HOME`): their lock and stamp, their log names and
//! rotation, the station's strfry import, profiles, and the run's Nostr note.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use nostr::prelude::*;

use crate::common::fake_relay::{self, Behaviour};
use crate::common::net::free_port;
use crate::common::relays::{OurRelay, PyRelay, now, publish, python};
use crate::common::{self, bin, wait_until};

/// A station: `HOME` is `<tmp>/user` with `~/.zen/{tmp,game,strfry}`; our home `<tmp>/home`.
struct Station {
    tmp: tempfile::TempDir,
}

impl Station {
    /// `relay_listen`: `[relay] listen` (the station's relay); `report`: more `[report]` keys.
    fn new(relay_listen: &str, report: &str) -> Station {
        let tmp = tempfile::tempdir().unwrap();
        for sub in ["tmp", "game", "strfry"] {
            std::fs::create_dir_all(tmp.path().join("user/.zen").join(sub)).unwrap();
        }
        common::home_with(
            &tmp.path().join("home"),
            &format!(
                "[relay]\nlisten = \"{relay_listen}\"\n\n[report]\ndir = {:?}\nstation = \"test-station\"\n{report}\n",
                tmp.path().join("reports"),
            ),
        );
        Station { tmp }
    }

    fn user(&self) -> PathBuf {
        self.tmp.path().join("user")
    }

    fn zen(&self) -> PathBuf {
        self.user().join(".zen")
    }

    fn strfry(&self) -> PathBuf {
        self.zen().join("strfry")
    }

    /// A MULTIPASS account: an author of the sync.
    fn account(&self, keys: &Keys) {
        let dir = self.zen().join(format!(
            "game/nostr/{}@test",
            &keys.public_key().to_hex()[..8]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("HEX"), keys.public_key().to_hex()).unwrap();
    }

    /// `constellation --home … ARGS` as the station's user; never the public fallback relays.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(bin());
        command
            .arg("--home")
            .arg(self.tmp.path().join("home"))
            .args(args)
            .env("HOME", self.user())
            .env_remove("CAPTAINEMAIL")
            .env_remove("UPLANETNAME")
            .env_remove("IPFS_PATH")
            .stdin(Stdio::null());
        if !args.contains(&"--fallback-relay") && !args.contains(&"--no-fallback") {
            command.arg("--no-fallback");
        }
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run constellation")
    }

    /// `backfill --json`: exit code and stats.
    fn backfill(&self, args: &[&str]) -> (i32, serde_json::Value) {
        let out = self.run(&[&["backfill", "--json"], args].concat());
        let stats = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code().unwrap_or(-1), stats)
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.strfry().join(name)).unwrap_or_default()
    }

    fn lock(&self) -> PathBuf {
        self.strfry().join("constellation-backfill.lock")
    }

    fn stamp(&self) -> PathBuf {
        self.zen().join("tmp/backfill_constellation.lastrun")
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A bash process that prints one line once ready (`echo held`), killed on drop.
struct Holder(Child);

impl Holder {
    fn start(script: &str, lock: &Path) -> Holder {
        let mut child = Command::new("bash")
            .args(["-c", script, "holder"])
            .arg(lock)
            .stdout(Stdio::piped())
            .spawn()
            .expect("bash");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "held");
        Holder(child)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_original_syncs_lock_or_a_fresh_stamp_makes_trigger_skip_with_exit_3() {
    let peer = PyRelay::start("localrelay", 0);
    let station = Station::new(&format!("127.0.0.1:{}", free_port()), "");
    station.account(&Keys::generate());
    let args = ["trigger", "--peer", &peer.url, "--no-profiles", "--no-mail"];

    // backfill_constellation.sh's create_lock: `exec 9>lock; flock -n 9; echo $$ >&9`, then its
    // run (`exec sleep` keeps the PID and the descriptor).
    let original = Holder::start(
        "exec 9>\"$1\"; flock -n 9 || exit 1; echo $$ >&9; echo held; exec sleep 60",
        &station.lock(),
    );
    let out = station.run(&args);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let why = format!(
        "skipped: the original backfill_constellation.sh runs (PID {} in",
        original.0.id()
    );
    assert!(text(&out).contains(&why), "{}", text(&out));
    drop(original);

    // Its PID is dead now (left in the file), but another process holds the flock.
    let _other = Holder::start(
        "exec 9>>\"$1\"; flock -n 9 || exit 1; echo held; exec sleep 60",
        &station.lock(),
    );
    let out = station.run(&args);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("another process holds the original sync's lock"),
        "{}",
        text(&out)
    );
    drop(_other);

    // `_12345.sh` started a sync two minutes ago.
    std::fs::write(station.stamp(), format!("{}\n", now() - 120)).unwrap();
    let out = station.run(&args);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("skipped: a sync started 12"),
        "{}",
        text(&out)
    );
    assert!(
        station
            .log("constellation-backfill.log")
            .contains("skipped: a sync started")
    );

    // An hour-old stamp: we run, stamp as `_12345.sh` does, and leave no lock behind.
    std::fs::write(station.stamp(), format!("{}\n", now() - 4_000)).unwrap();
    let out = station.run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stamped: u64 = std::fs::read_to_string(station.stamp())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(now() - stamped < 60, "the stamp is not this run's");
    assert!(
        !station.lock().exists(),
        "the original's lock is left behind"
    );
}

/// What `_12345.sh` and `backfill_constellation.sh` do before they start: a live PID in the lock
/// means "running"; else `flock -n` (here on `>>`, so that our PID stays readable).
const ORIGINAL_STAND_IN: &str = r#"
LOCK="$1"
if [ -f "$LOCK" ]; then pid=$(cat "$LOCK"); if [ -n "$pid" ] && [ -d "/proc/$pid" ]; then echo "running $pid"; fi; fi
exec 9>>"$LOCK"
if flock -n 9; then echo ran; else echo busy; fi
"#;

#[test]
fn while_we_run_the_original_skips_and_after_us_it_runs() {
    let silent = fake_relay::start(Behaviour::Silent);
    let station = Station::new(&format!("127.0.0.1:{}", free_port()), "");
    station.account(&Keys::generate());
    let mut ours = station
        .command(&[
            "trigger",
            "--peer",
            &silent,
            "--no-profiles",
            "--no-mail",
            "--idle-timeout",
            "4",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = ours.id().to_string();
    let holds = || std::fs::read_to_string(station.lock()).is_ok_and(|t| t.trim() == pid);
    assert!(
        wait_until(Duration::from_secs(10), holds),
        "our PID never in the lock"
    );
    let stand_in = |lock: &Path| {
        let out = Command::new("bash")
            .args(["-c", ORIGINAL_STAND_IN, "stand-in"])
            .arg(lock)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(stand_in(&station.lock()), format!("running {pid}\nbusy\n"));
    assert_eq!(
        ours.wait().unwrap().code(),
        Some(2),
        "the silent peer fails"
    );
    assert_eq!(stand_in(&station.lock()), "ran\n");
}

#[test]
fn the_error_log_has_the_original_name_and_rotates_past_the_original_size() {
    let (max, keep) = constellation::runlog::default_limits();
    if cfg!(target_arch = "x86_64") {
        assert_eq!((max, keep), (10 << 20, 3), "the original's 10 MB × 3");
    }
    let station = Station::new(&format!("127.0.0.1:{}", free_port()), "");
    station.account(&Keys::generate());
    let errors = station.strfry().join("constellation-backfill.error.log");
    let full = vec![b'x'; max as usize + 1];
    std::fs::write(&errors, &full).unwrap();
    for n in 1..=keep {
        std::fs::write(format!("{}.{n}", errors.display()), format!("old {n}")).unwrap();
    }
    let dead = format!("ws://127.0.0.1:{}", free_port());
    let args = [
        "trigger",
        "--peer",
        &dead,
        "--no-profiles",
        "--no-mail",
        "--force",
    ];
    let out = station.run(&args);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let rotated = |n: usize| std::fs::read(format!("{}.{n}", errors.display())).unwrap_or_default();
    assert_eq!(rotated(1), full, "the full log became .1");
    for n in 2..=keep {
        assert_eq!(rotated(n), format!("old {}", n - 1).into_bytes());
    }
    assert!(rotated(keep + 1).is_empty(), "more than {keep} kept");
    let now_errors = station.log("constellation-backfill.error.log");
    assert!(now_errors.contains("[ERROR] run 1: peer"), "{now_errors}");
    assert!(now_errors.len() < 4_096);

    // The run log holds the latest run, with the markers the original's sync_report.sh reads.
    let run_log = station.log("constellation-backfill.log");
    assert!(
        run_log.starts_with("# Constellation Backfill Log"),
        "{run_log}"
    );
    for marker in [
        "Starting Astroport constellation backfill",
        "SYNC_STATS: events=0 dms=0",
        "SYNC_PEERS: total=1 success=0",
        "SYNC_IMPORT: events=0",
        "Backfill process completed",
    ] {
        assert!(run_log.contains(marker), "{marker}: {run_log}");
    }
    // Our earlier names are links to the new files.
    for (old, new) in [
        ("constellation_sync.log", "constellation-backfill.log"),
        (
            "constellation_sync.error.log",
            "constellation-backfill.error.log",
        ),
    ] {
        assert_eq!(
            std::fs::read_link(station.strfry().join(old)).unwrap(),
            Path::new(new)
        );
        assert_eq!(station.log(old), station.log(new));
    }

    // Under the limit, nothing rotates; the run log starts again.
    let out = station.run(&args);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(rotated(1), full);
    assert_eq!(
        station
            .log("constellation-backfill.error.log")
            .matches("[ERROR]")
            .count(),
        2
    );
    assert_eq!(
        station
            .log("constellation-backfill.log")
            .matches("run started")
            .count(),
        1
    );
}

/// A stand-in for `~/.zen/strfry/strfry`: logs its arguments, refuses the events that contain
/// `refuse-me` on its first call only (a write policy's passing refusal), and stores the rest
/// in the local relay's database with our own `relay import`.
fn fake_strfry(dir: &Path, db: &Path) {
    let script = format!(
        "#!/bin/sh\necho \"$*\" >> calls.log\n\
         if [ -e refused-once ]; then cat; else touch refused-once; grep -v refuse-me; fi \
         | '{}' relay --db '{}' import\n",
        bin(),
        db.display()
    );
    let path = dir.join("strfry");
    std::fs::write(&path, script).unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
}

#[test]
fn the_stations_strfry_import_stores_and_a_policy_refusal_is_retried_next_run() {
    let local = OurRelay::start("");
    let station = Station::new(local.addr(), "");
    let keys = Keys::generate();
    station.account(&keys);
    fake_strfry(&station.strfry(), &local.db);
    let peer = PyRelay::start("localrelay", 0);
    let events: Vec<Event> = (0..6)
        .map(|i| {
            let word = if i < 2 { "refuse-me" } else { "welcome" };
            crate::common::relays::note(&keys, &format!("{word} {i}"), now() - 100 + i)
        })
        .collect();
    publish(&peer.url, &events);
    // A forged event (its id no longer matches) from a second peer: refused for good.
    let mut forged: serde_json::Value =
        serde_json::from_str(&crate::common::relays::note(&keys, "forged", now() - 50).as_json())
            .unwrap();
    forged["content"] = "tampered".into();
    let liar = fake_relay::start(Behaviour::Serve(vec![forged.to_string()]));
    let args = [
        "--peer",
        peer.url.as_str(),
        "--peer",
        liar.as_str(),
        "--local-relay",
        local.url.as_str(),
        "--no-profiles",
    ];
    let (code, stats) = station.backfill(&args);
    assert_eq!(code, 0, "{stats}");
    assert_eq!(stats["imported"], 4, "{stats}");
    assert_eq!(
        stats["rejected"]["refused by the import command"], 2,
        "{stats}"
    );
    assert!(
        stats["rejected"]["invalid signature"].as_u64() >= Some(1),
        "{stats}"
    );
    let calls = std::fs::read_to_string(station.strfry().join("calls.log")).unwrap();
    assert!(calls.lines().all(|l| l == "import --no-verify"), "{calls}");

    let (code, stats) = station.backfill(&args);
    assert_eq!(code, 0, "{stats}");
    assert_eq!(
        stats["imported"], 2,
        "the policy's refusals are tried again: {stats}"
    );
    assert!(
        stats["rejected"].get("invalid signature").is_none(),
        "{stats}"
    );
    let want: std::collections::BTreeSet<EventId> = events.iter().map(|e| e.id).collect();
    assert_eq!(local.stored_ids(), want);

    // `--no-strfry-import`: over the relay's websocket, the station's strfry left alone.
    let calls_before = std::fs::read_to_string(station.strfry().join("calls.log")).unwrap();
    let (code, stats) = station.backfill(&[&args[..], &["--no-strfry-import"]].concat());
    assert_eq!((code, stats["imported"].as_u64()), (0, Some(0)), "{stats}");
    assert_eq!(
        std::fs::read_to_string(station.strfry().join("calls.log")).unwrap(),
        calls_before
    );
}

#[test]
fn the_real_strfry_of_the_station_is_fed_by_its_own_import() {
    let strfry = crate::common::strfry::Strfry::start();
    let station = Station::new(&format!("127.0.0.1:{}", strfry.port), "");
    // ~/.zen/strfry is the station's strfry folder: its binary, strfry.conf and database.
    std::fs::remove_dir(station.strfry()).unwrap();
    std::os::unix::fs::symlink(strfry.dir(), station.strfry()).unwrap();
    std::os::unix::fs::symlink(crate::common::strfry::binary(), strfry.dir().join("strfry"))
        .unwrap();
    let keys = Keys::generate();
    station.account(&keys);
    let peer = PyRelay::start("localrelay", 0);
    let events: Vec<Event> = (0..12)
        .map(|i| crate::common::relays::note(&keys, &format!("station {i}"), now() - 300 + i))
        .collect();
    publish(&peer.url, &events);
    let (code, stats) = station.backfill(&["--peer", &peer.url, "--no-profiles"]);
    assert_eq!(code, 0, "{stats}");
    assert_eq!(stats["imported"], 12, "{stats}");
    let want: std::collections::BTreeSet<EventId> = events.iter().map(|e| e.id).collect();
    assert_eq!(strfry.stored_ids(), want);
}

fn profile(keys: &Keys, name: &str, at: u64) -> Event {
    EventBuilder::new(Kind::Metadata, format!("{{\"name\":\"{name}\"}}"))
        .custom_created_at(Timestamp::from(at))
        .finalize(keys)
        .unwrap()
}

#[test]
fn missing_profiles_bring_the_whole_history_then_kind_0_from_the_fallback_relays() {
    let local = PyRelay::start("localrelay", 0);
    let station = Station::new(&format!("127.0.0.1:{}", free_port()), "");
    let (a, b, c) = (Keys::generate(), Keys::generate(), Keys::generate());
    for k in [&a, &b, &c] {
        station.account(k);
    }
    let day = 86_400;
    let peer = PyRelay::start("localrelay", 0);
    let old_note = crate::common::relays::note(&a, "three days ago", now() - 3 * day);
    let b_profile = profile(&b, "bee", now() - 5 * day);
    publish(&peer.url, &[old_note.clone(), b_profile.clone()]);
    let fallback = PyRelay::start("localrelay", 0);
    let a_profile = profile(&a, "ay", now() - 9 * day);
    let c_profile = profile(&c, "sea", now() - 9 * day);
    let fallback_note =
        crate::common::relays::note(&a, "only on the public relay", now() - 9 * day);
    publish(&fallback.url, &[a_profile.clone(), fallback_note.clone()]);
    let args = [
        "--peer",
        peer.url.as_str(),
        "--local-relay",
        local.url.as_str(),
    ];

    // Without fallback relays: a's whole history and b's profile come from the peer.
    let (code, stats) = station.backfill(&[&args[..], &["--no-fallback"]].concat());
    assert_eq!(code, 0, "{stats}");
    assert_eq!(
        (
            stats["profiles_found"].as_u64(),
            stats["profiles_missing"].as_u64()
        ),
        (Some(1), Some(2)),
        "{stats}"
    );
    let held = crate::common::relays::ids(&local.url, Filter::new());
    assert!(
        held.contains(&old_note.id),
        "a's note older than --days 1 is missing"
    );
    assert!(held.contains(&b_profile.id));

    // With one: a's kind 0 from it, but nothing else of it; c's is on no relay asked.
    publish(&fallback.url, std::slice::from_ref(&c_profile));
    let (code, stats) =
        station.backfill(&[&args[..], &["--fallback-relay", fallback.url.as_str()]].concat());
    assert_eq!(code, 0, "{stats}");
    assert_eq!(
        (
            stats["profiles_found"].as_u64(),
            stats["profiles_missing"].as_u64()
        ),
        (Some(2), Some(0)),
        "{stats}"
    );
    let held = crate::common::relays::ids(&local.url, Filter::new());
    assert!(held.contains(&a_profile.id) && held.contains(&c_profile.id));
    assert!(
        !held.contains(&fallback_note.id),
        "the fallback relays give kind 0 only"
    );
}

/// The UMAP 0.00 public key of `name`, from the independent script.
fn umap_pubkey(name: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/keygen/umap_key.py");
    let out = Command::new(python())
        .arg(script)
        .arg(name)
        .output()
        .expect("umap_key.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vector: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    vector["pubkey"].as_str().unwrap().to_owned()
}

fn notes_by(url: &str, author: &str) -> Vec<Event> {
    let author = PublicKey::from_hex(author).unwrap();
    crate::common::relays::runtime().block_on(async {
        let mut c = constellation::sync::relay_client::RelayClient::connect_url(
            url,
            Duration::from_secs(10),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        c.query(Filter::new().author(author).kind(Kind::TextNote))
            .await
            .unwrap()
    })
}

fn expiration(event: &Event) -> Option<u64> {
    event.tags.iter().find_map(|t| match t.as_slice() {
        [name, at] if name == "expiration" => at.parse().ok(),
        _ => None,
    })
}

#[test]
fn the_note_is_signed_by_the_umap_key_expires_in_an_hour_and_is_not_sent_after_an_idle_run() {
    let local = OurRelay::start("");
    let station = Station::new(local.addr(), "note = true");
    let uplanet = "9f2c1b0e4d5a69788766554433221100ffeeddccbbaa99887766554433221100";
    std::fs::create_dir_all(station.user().join(".ipfs")).unwrap();
    std::fs::write(
        station.user().join(".ipfs/swarm.key"),
        format!("/key/swarm/psk/1.0.0/\n/base16/\n{uplanet}\n"),
    )
    .unwrap();
    let keys = Keys::generate();
    station.account(&keys);
    let peer = PyRelay::start("localrelay", 0);
    let events: Vec<Event> = (0..3)
        .map(|i| crate::common::relays::note(&keys, &format!("n {i}"), now() - 60 + i))
        .collect();
    publish(&peer.url, &events);
    let args = [
        "trigger",
        "--peer",
        &peer.url,
        "--no-profiles",
        "--no-mail",
        "--force",
    ];
    let out = station.run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let umap = umap_pubkey(uplanet);
    assert!(
        text(&out).contains("; note ") && text(&out).contains(&umap),
        "{}",
        text(&out)
    );
    let notes = notes_by(&local.url, &umap);
    assert_eq!(notes.len(), 1, "{notes:?}");
    let note = &notes[0];
    assert!(note.verify().is_ok());
    assert_eq!(expiration(note), Some(note.created_at.as_secs() + 3_600));
    assert!(note.content.contains("3 imported"), "{}", note.content);

    // Nothing new, nothing failed: no note.
    let out = station.run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("note not sent (nothing imported and nothing failed)"),
        "{}",
        text(&out)
    );
    assert_eq!(notes_by(&local.url, &umap).len(), 1);
}

#[test]
fn the_daemons_run_links_the_report_added_to_its_block_store() {
    let tmp = tempfile::tempdir().unwrap();
    let peer = PyRelay::start("localrelay", 0);
    let keys = Keys::generate();
    // Older than the live links' overlap (10 s): the scheduled backfill, not the live link to
    // the same peer, is what brings it (and a run that imports something sends its note).
    publish(
        &peer.url,
        &[crate::common::relays::note(&keys, "scheduled", now() - 600)],
    );
    let zen = tmp.path().join("zen");
    let account = zen.join("game/nostr/one@test");
    std::fs::create_dir_all(&account).unwrap();
    std::fs::write(account.join("HEX"), keys.public_key().to_hex()).unwrap();
    let signer = Keys::generate();
    let nsec = tmp.path().join("note.nsec");
    std::fs::write(
        &nsec,
        format!("NSEC={};\n", signer.secret_key().to_bech32().unwrap()),
    )
    .unwrap();
    let reports = tmp.path().join("reports");
    let config = format!(
        "[relay]\nlisten = \"127.0.0.1:{}\"\n[kubo_api]\nenabled = true\nlisten = \"/ip4/127.0.0.1/tcp/0\"\n\
         [report]\ndir = {reports:?}\nnote = true\nnote_key = {nsec:?}\n\
         [trigger]\nperiod_secs = 1\njitter_secs = 0\n\
         backfill = [\"--peer\", {:?}, \"--zen\", {:?}, \"--no-profiles\", \"--no-fallback\"]\n",
        free_port(),
        peer.url,
        zen.display().to_string(),
    );
    let home = common::home_with(&tmp.path().join("home"), &config);
    let daemon = common::Daemon::start_in(&home, &["--relay-listen", "127.0.0.1:0"]);
    let relay = daemon.ready["relay"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", daemon.ready))
        .to_owned();
    let author = signer.public_key().to_hex();
    let noted = wait_until(Duration::from_secs(30), || {
        !notes_by(&relay, &author).is_empty()
    });
    assert!(noted, "no note; log:\n{}", daemon.log());
    let note = notes_by(&relay, &author).remove(0);
    let cid = note
        .content
        .split("/ipfs/")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no /ipfs/ link: {}", note.content))
        .to_owned();
    let api = crate::kubo_api::api_of(&daemon);
    let served = crate::kubo_api::ok(crate::kubo_api::ipfs(&api, None, &["cat", &cid]));
    let saved = std::fs::read(reports.join("run-1.html")).unwrap();
    assert_eq!(served.as_str().map(str::to_owned), Some(hex::encode(saved)));
}
