//! Issue 7: `constellation trigger` end to end: a real SMTP server (aiosmtpd) receives the report,
//! whose numbers are those of the run in history.sqlite; the lock, the 50-minute rule, failures
//! that must not block; the report rendered by headless Chromium.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use constellation::sync::history::History;
use nostr::prelude::*;

use crate::common::fake_relay::{self, Behaviour};
use crate::common::net::free_port;
use crate::common::relays::{PyRelay, note, now, publish, python};
use crate::common::{self, bin};

/// aiosmtpd saving each message to a folder; killed on drop.
struct SmtpSink {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl SmtpSink {
    fn start(dir: &Path) -> SmtpSink {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/mail/smtp_sink.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        SmtpSink {
            port: line.trim().parse().expect("smtp port"),
            dir: dir.to_owned(),
            child,
        }
    }

    fn wait_message(&self, timeout: Duration) -> Option<PathBuf> {
        let path = self.dir.join("1.eml");
        common::wait_until(timeout, || path.exists()).then_some(path)
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A station home: embedded store, reports and logs in the temp folder, mail to `smtp_port`.
struct Station {
    tmp: tempfile::TempDir,
}

impl Station {
    fn new(smtp_port: u16) -> Station {
        let tmp = tempfile::tempdir().unwrap();
        crate::common::home_with(
            &tmp.path().join("home"),
            &format!(
                "[relay]\nlisten = \"127.0.0.1:{}\"\n\n[trigger]\nlog_dir = {:?}\n\n[report]\ndir = {:?}\nstation = \"test-station\"\n\n\
                 [mail]\nto = \"captain@example.org\"\nfrom = \"station@example.org\"\nhost = \"127.0.0.1\"\nport = {smtp_port}\nsecurity = \"none\"\n",
                free_port(),
                tmp.path().join("logs"),
                tmp.path().join("reports"),
            ),
        );
        Station { tmp }
    }

    fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }

    /// `$HOME` of its commands: nothing is read or written in the real one.
    fn user(&self) -> PathBuf {
        let user = self.tmp.path().join("user");
        std::fs::create_dir_all(&user).unwrap();
        user
    }

    fn zen(&self, authors: &[&Keys]) -> String {
        let zen = self.tmp.path().join("zen");
        for (i, k) in authors.iter().enumerate() {
            let d = zen.join(format!("game/nostr/u{i}@test"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("HEX"), k.public_key().to_hex()).unwrap();
        }
        zen.to_string_lossy().into_owned()
    }

    fn trigger(&self, args: &[&str]) -> Output {
        let mut all = vec!["trigger"];
        all.extend_from_slice(args);
        // No test reaches the public fallback relays.
        if !args.contains(&"--fallback-relay") && !args.contains(&"--no-fallback") {
            all.push("--no-fallback");
        }
        Command::new(bin())
            .arg("--home")
            .arg(self.home())
            .args(&all)
            .env("HOME", self.user())
            .env_remove("CAPTAINEMAIL")
            .stdin(Stdio::null())
            .output()
            .expect("run trigger")
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.tmp.path().join("logs").join(name)).unwrap_or_default()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The decoded HTML part of a saved message, and its subject (Python's `email` module).
fn html_of(eml: &Path) -> (String, String) {
    let out = Command::new(python())
        .args([
            "-c",
            "import email,sys,json\n\
             m=email.message_from_binary_file(open(sys.argv[1],'rb'))\n\
             h=[p.get_payload(decode=True).decode() for p in m.walk() if p.get_content_type()=='text/html'][0]\n\
             print(json.dumps([str(m['Subject']),h]))",
        ])
        .arg(eml)
        .output()
        .unwrap();
    let v: Vec<String> = serde_json::from_slice(&out.stdout).expect("parsed mail");
    (v[0].clone(), v[1].clone())
}

/// The number in `<b id="{id}">N</b>`.
fn number(html: &str, id: &str) -> u64 {
    let start = format!(r#"<b id="{id}">"#);
    let at = html
        .find(&start)
        .unwrap_or_else(|| panic!("no {id} in the report"))
        + start.len();
    html[at..].split('<').next().unwrap().parse().unwrap()
}

#[test]
fn the_report_arrives_by_smtp_with_the_numbers_of_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let smtp = SmtpSink::start(&tmp.path().join("mail"));
    let station = Station::new(smtp.port);
    let peer = PyRelay::start("localrelay", 0);
    let keys = Keys::generate();
    let events: Vec<Event> = (0..12)
        .map(|i| note(&keys, &format!("report {i}"), now() - 30 - i))
        .collect();
    publish(&peer.url, &events);
    let zen = station.zen(&[&keys]);
    let out = station.trigger(&["--peer", &peer.url, "--zen", &zen, "--no-profiles"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(line.starts_with("ran: OK run 1"), "{line}");
    assert!(line.contains("sent to captain@example.org"), "{line}");

    let eml = smtp
        .wait_message(Duration::from_secs(10))
        .expect("the mail arrived");
    let (subject, html) = html_of(&eml);
    let history = History::open(&station.home().join("history.sqlite")).unwrap();
    let run = history.run(Some(1)).unwrap().expect("run 1 recorded");
    assert_eq!(run.imported, 12);
    assert!(
        subject.contains("OK") && subject.contains("12 imported"),
        "{subject}"
    );
    for (id, value) in [
        ("peers_contacted", run.peers_contacted),
        ("peers_ok", run.peers_ok),
        ("peers_failed", run.peers_failed),
        ("collected", run.collected),
        ("imported", run.imported),
        ("uploaded", run.uploaded),
        ("unique_pubkeys", run.unique_pubkeys),
        ("discovered", run.discovered),
        ("profiles_found", run.profiles_found),
        ("profiles_missing", run.profiles_missing),
    ] {
        assert_eq!(number(&html, id), value, "{id}");
    }
    assert!(html.contains(r#"id="status" class="badge""#) && html.contains(">OK</span>"));
    assert!(
        html.contains(r#"<svg id="groups-chart""#) && html.contains(r#"<svg id="trend-chart""#)
    );
    assert!(html.contains(&peer.url), "the peers table names the peer");

    // Saved too, with its text version; the run log has the run.
    let reports = station.tmp.path().join("reports");
    assert!(reports.join("run-1.html").exists() && reports.join("run-1.txt").exists());
    assert!(
        station
            .log("constellation-backfill.log")
            .contains("run 1 OK")
    );

    // `report --run 1` re-renders the same numbers.
    let again = common::cli(&station.home(), &["report", "--run", "1", "--text"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("Events imported          12"));

    // Chromium renders it; one screenshot is kept for the README.
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report.png");
    let out = common::chromium(
        &[
            "--window-size=1100,1400",
            &format!("--screenshot={}", shot.display()),
        ],
        &format!("file://{}", reports.join("run-1.html").display()),
    );
    let png = std::fs::read(&shot).unwrap_or_else(|_| panic!("no screenshot: {}", stderr(&out)));
    assert_eq!(&png[1..4], b"PNG");
    assert!(
        png.len() > 20_000,
        "a report with content, not a blank page ({} bytes)",
        png.len()
    );
}

#[test]
fn two_triggers_one_runs_and_a_killed_holder_leaves_no_lock() {
    let station = Station::new(free_port());
    let silent = fake_relay::start(Behaviour::Silent);
    let zen = station.zen(&[&Keys::generate()]);
    let args = [
        "--peer",
        silent.as_str(),
        "--zen",
        zen.as_str(),
        "--no-profiles",
        "--idle-timeout",
        "3",
        "--no-mail",
    ];
    let mut first = Command::new(bin())
        .arg("--home")
        .arg(station.home())
        .arg("trigger")
        .args(args)
        .env("HOME", station.user())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = || {
        station
            .log("constellation-backfill.log")
            .contains("run started")
    };
    assert!(
        common::wait_until(Duration::from_secs(10), started),
        "the first trigger never started"
    );
    let second = station.trigger(&args);
    assert_eq!(second.status.code(), Some(3), "{}", stderr(&second));
    assert!(stderr(&second).contains("skipped: running"));
    assert_eq!(
        first.wait().unwrap().code(),
        Some(2),
        "the silent peer fails the run"
    );

    // A holder killed by SIGKILL (as by the OOM killer) leaves nothing behind: flock dies with it.
    let mut holder = Command::new(python())
        .args(["-c", "import fcntl,sys,time\nf=open(sys.argv[1],'w')\nfcntl.flock(f,fcntl.LOCK_EX)\nprint('held',flush=True)\ntime.sleep(60)"])
        .arg(station.home().join("backfill.lock"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        station
            .trigger(&[&args[..], &["--force"]].concat())
            .status
            .code(),
        Some(3)
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    let after = station.trigger(&[&args[..], &["--force"]].concat());
    assert_eq!(
        after.status.code(),
        Some(2),
        "ran (and the silent peer failed): {}",
        stderr(&after)
    );
}

#[test]
fn a_recent_run_is_skipped_unless_forced() {
    let station = Station::new(free_port());
    let peer = PyRelay::start("localrelay", 0);
    let zen = station.zen(&[&Keys::generate()]);
    let args = [
        "--peer",
        peer.url.as_str(),
        "--zen",
        zen.as_str(),
        "--no-profiles",
        "--no-mail",
    ];
    assert_eq!(station.trigger(&args).status.code(), Some(0));
    // First the station's stamp (`_12345.sh`'s rule), then, without it, our own history.
    let again = station.trigger(&args);
    assert_eq!(again.status.code(), Some(3));
    assert!(
        stderr(&again).contains("skipped: a sync started"),
        "{}",
        stderr(&again)
    );
    std::fs::remove_file(Path::new(&zen).join("tmp/backfill_constellation.lastrun")).unwrap();
    let again = station.trigger(&args);
    assert_eq!(again.status.code(), Some(3));
    assert!(
        stderr(&again).contains("skipped: last run 0 min ago"),
        "{}",
        stderr(&again)
    );
    let forced = station.trigger(&[&args[..], &["--force"]].concat());
    assert_eq!(forced.status.code(), Some(0), "{}", stderr(&forced));
    let history = History::open(&station.home().join("history.sqlite")).unwrap();
    assert_eq!(history.recent(10).unwrap().len(), 2);
}

#[test]
fn an_unreachable_relay_or_mail_server_does_not_block() {
    // The local relay is down: a clear reason, exit 4, nothing run.
    let station = Station::new(free_port());
    let peer = PyRelay::start("localrelay", 0);
    let zen = station.zen(&[&Keys::generate()]);
    let dead = format!("ws://127.0.0.1:{}", free_port());
    let out = station.trigger(&["--local-relay", &dead, "--peer", &peer.url, "--zen", &zen]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr(&out).contains(&format!(
            "cannot run: the local relay {dead} is not reachable"
        )),
        "{}",
        stderr(&out)
    );
    assert!(
        station
            .log("constellation-backfill.error.log")
            .contains("not reachable")
    );

    // The mail server is down (nothing on its port): the sync succeeds, the report is saved.
    let out = station.trigger(&["--peer", &peer.url, "--zen", &zen, "--no-profiles"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("mail not sent"));
    assert!(station.tmp.path().join("reports/run-1.html").exists());
    assert!(
        station
            .log("constellation-backfill.error.log")
            .contains("mail failed")
    );
}

#[test]
fn the_daemon_runs_the_trigger_on_its_own_schedule() {
    let station = Station::new(free_port());
    let peer = PyRelay::start("localrelay", 0);
    let keys = Keys::generate();
    // Older than the live links' overlap (10 s): the scheduled backfill, not the live link to
    // the same peer, is what brings it.
    publish(&peer.url, &[note(&keys, "scheduled", now() - 600)]);
    let zen = station.zen(&[&keys]);
    let config = std::fs::read_to_string(station.home().join("config.toml")).unwrap();
    let config = config.replace(
        "[trigger]\n",
        &format!(
            "[trigger]\nperiod_secs = 1\njitter_secs = 0\nbackfill = [\"--peer\", {:?}, \"--zen\", {zen:?}, \"--no-profiles\", \"--no-fallback\"]\n",
            peer.url
        ),
    );
    std::fs::write(station.home().join("config.toml"), config).unwrap();
    let daemon = common::Daemon::start_in(&station.home(), &["--relay-listen", "127.0.0.1:0"]);
    let report = station.tmp.path().join("reports/run-1.html");
    let ran = common::wait_until(Duration::from_secs(20), || report.exists());
    assert!(ran, "no scheduled run; log:\n{}", daemon.log());
    let history = History::open(&station.home().join("history.sqlite")).unwrap();
    let run = history.run(Some(1)).unwrap().expect("run 1");
    assert_eq!((run.peers_ok, run.imported), (1, 1));
    // The next scheduled run, a second later, is skipped by the 50-minute rule (the stamp).
    assert!(daemon.wait_log("skipped: a sync started", Duration::from_secs(10)));
    assert!(history.run(Some(2)).unwrap().is_none());
}
