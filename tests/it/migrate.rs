//! Issue 16, `constellation migrate` on a station laid out as Astroport's (`~/.ipfs`, `~/.zen`,
//! `/etc/systemd/system/ipfs.service` in a temp folder) with stand-ins for `systemctl` and
//! `sudo` that record their argv and keep unit states: never the real systemd.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use base64::Engine as _;

use crate::common::{Daemon, TempHome, bin};

/// `systemctl` keeping one state file per scope and unit; `sudo -n` running its command.
const FAKE_SYSTEMCTL: &str = r#"#!/bin/bash
echo "systemctl $*" >> "$FAKE_SYSTEMD/calls.log"
scope=system; [[ "$1" == "--user" ]] && { scope=user; shift; }
verb="$1"; shift
[[ "$1" == "--now" ]] && { now=1; shift; }
unit="$1"; state="$FAKE_SYSTEMD/$scope-$unit"
active=$(cat "$state.active" 2>/dev/null || echo inactive)
enabled=$(cat "$state.enabled" 2>/dev/null || echo not-found)
case "$verb" in
  is-active) echo "$active"; [[ "$active" == active ]] ;;
  is-enabled) echo "$enabled"; [[ "$enabled" == enabled ]] ;;
  stop) echo inactive > "$state.active" ;;
  disable) echo disabled > "$state.enabled" ;;
  mask) echo masked > "$state.enabled" ;;
  enable) echo enabled > "$state.enabled"; [[ -n "$now" ]] && echo active > "$state.active" ;;
  daemon-reload) ;;
  *) exit 1 ;;
esac
"#;
const FAKE_SUDO: &str = r#"#!/bin/bash
echo "sudo $*" >> "$FAKE_SYSTEMD/calls.log"
[[ "$1" == "-n" ]] && shift
exec "$@"
"#;

/// The unit `install/setup/ipfs_setup.sh` writes (its shape).
const KUBO_UNIT: &str = "[Unit]\nDescription=IPFS daemon (Astroport.ONE)\n\n[Service]\nType=simple\nUser=pi\nExecStart=/usr/local/bin/ipfs daemon --migrate --enable-pubsub-experiment --enable-namesys-pubsub\n\n[Install]\nWantedBy=multi-user.target\n";

struct Station {
    tree: TempHome,
    kubo_peer: String,
}

impl Station {
    fn new() -> Station {
        use std::os::unix::fs::PermissionsExt as _;
        let tree = TempHome::new();
        let station = Station {
            tree,
            kubo_peer: String::new(),
        };
        for (name, text) in [("systemctl", FAKE_SYSTEMCTL), ("sudo", FAKE_SUDO)] {
            let path = station.path(&format!("stub-bin/{name}"));
            station.write(&format!("stub-bin/{name}"), text);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        station.write("etc-systemd-system/ipfs.service", KUBO_UNIT);
        station.write("systemd-state/system-ipfs.service.active", "active\n");
        station.write("systemd-state/system-ipfs.service.enabled", "enabled\n");
        let key = libp2p::identity::Keypair::generate_ed25519();
        let peer = key.public().to_peer_id().to_string();
        let private =
            base64::engine::general_purpose::STANDARD.encode(key.to_protobuf_encoding().unwrap());
        let boot = libp2p::PeerId::random();
        let friend = libp2p::PeerId::random();
        station.write(
            ".ipfs/config",
            &format!(
                r#"{{"Identity": {{"PeerID": "{peer}", "PrivKey": "{private}"}},
                "Addresses": {{"API": "/ip4/127.0.0.1/tcp/0", "Swarm": ["/ip4/127.0.0.1/tcp/0"]}},
                "Bootstrap": ["/ip4/127.0.0.1/tcp/1/p2p/{boot}"],
                "Peering": {{"Peers": [{{"ID": "{friend}", "Addrs": ["/ip4/127.0.0.1/tcp/2"]}}]}},
                "Routing": {{"Type": "none"}}}}"#
            ),
        );
        station.write(
            ".ipfs/swarm.key",
            &format!("/key/swarm/psk/1.0.0/\n/base16/\n{}\n", "0".repeat(64)),
        );
        // The original sync: its script, a lock held by a live process (this test), a stamp.
        station.write(
            ".zen/workspace/NIP-101/backfill_constellation.sh",
            "#!/bin/bash\n",
        );
        station.write(
            ".zen/strfry/constellation-backfill.lock",
            &format!("{}\n", std::process::id()),
        );
        station.write(".zen/tmp/backfill_constellation.lastrun", "1700000000\n");
        station.write(
            ".zen/strfry/constellation-backfill.error.log",
            "old error\n",
        );
        station.write(
            ".zen/constellation/config.toml",
            "# the operator's own comment\n[relay]\nlisten = \"127.0.0.1:0\"\n",
        );
        Station {
            kubo_peer: peer,
            ..station
        }
    }
    fn migrate(&self, apply: bool) -> Output {
        let _ = std::fs::remove_file(self.path("systemd-state/calls.log"));
        let stubs = self.path("stub-bin");
        Command::new(bin())
            .arg("--home")
            .arg(self.home())
            .arg("migrate")
            .args(apply.then_some("--apply"))
            .arg("--system-unit-dir")
            .arg(self.path("etc-systemd-system"))
            .args(["--sudo", "always"])
            .env("HOME", self.tree.root())
            .env("USER", "pi")
            .env_remove("IPFS_PATH")
            .env("PATH", format!("{}:/usr/bin:/bin", stubs.display()))
            .env("FAKE_SYSTEMD", self.path("systemd-state"))
            .stdin(Stdio::null())
            .output()
            .expect("run constellation migrate")
    }
    /// The commands that change something (queries left out), in order.
    fn changes(&self) -> Vec<String> {
        (self.read("systemd-state/calls.log").lines())
            .filter(|l| l.starts_with("sudo") || l.starts_with("systemctl --user"))
            .filter(|l| !l.contains(" is-active ") && !l.contains(" is-enabled "))
            .map(str::to_owned)
            .collect()
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The line of a step in migrate's output.
fn line<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.get(9..).is_some_and(|rest| rest.starts_with(name)))
        .unwrap_or_else(|| panic!("no step {name:?} in:\n{out}"))
}

#[test]
fn dry_run_on_a_station_prints_every_check_and_step_and_changes_nothing() {
    let station = Station::new();
    let config_before = station.read(".zen/constellation/config.toml");
    let out = station.migrate(false);
    assert!(out.status.success(), "{out:?}");
    let out = stdout(&out);
    assert!(out.starts_with("migrate: dry run"), "{out}");
    let unit = line(&out, "kubo unit");
    assert!(
        unit.contains("system unit") && unit.contains("active, enabled"),
        "{unit}"
    );
    assert!(line(&out, "identity").contains(&station.kubo_peer));
    assert!(line(&out, "swarm key").contains("fingerprint"));
    assert!(line(&out, "bootstrap").contains("1 addresses"));
    assert!(line(&out, "peering").contains("1 peers"));
    assert!(line(&out, "original sync").contains("still starts it hourly"));
    assert!(
        line(&out, "sync lock").contains(&format!("held by running pid {}", std::process::id()))
    );
    assert!(line(&out, "last run").contains(" s ago"));
    assert!(line(&out, "run log").contains("(absent)"));
    assert!(line(&out, "error log").contains("(10 bytes)"));
    assert!(line(&out, "port 5001").contains("Kubo RPC API"));
    line(&out, "port 4001");
    assert!(
        line(&out, "sync settings").contains("report note off"),
        "{out}"
    );
    line(&out, "linger");
    for (step, would) in [
        ("stop kubo", "sudo -n systemctl stop ipfs.service"),
        ("disable kubo", "sudo -n systemctl disable ipfs.service"),
        ("set aside unit", "sudo -n mv "),
        ("daemon-reload", "sudo -n systemctl daemon-reload"),
        ("mask kubo", "sudo -n systemctl mask ipfs.service"),
        ("write config", "[node] kubo_repo = "),
        ("install unit", "write constellation.service"),
        (
            "start ours",
            "systemctl --user enable --now constellation.service",
        ),
    ] {
        let l = line(&out, step);
        assert!(
            l.starts_with("[  todo]") && l.contains(would),
            "{step}: {l}"
        );
    }
    assert_eq!(
        station.changes(),
        Vec::<String>::new(),
        "a dry run changes nothing"
    );
    assert_eq!(
        station.read(".zen/constellation/config.toml"),
        config_before
    );
    assert!(station.path("etc-systemd-system/ipfs.service").is_file());
    assert!(
        !station
            .path(".config/systemd/user/constellation.service")
            .exists()
    );
}

#[test]
fn apply_retires_kubo_in_order_keeps_its_peer_id_and_a_second_run_changes_nothing() {
    let station = Station::new();
    let out = station.migrate(true);
    assert!(
        out.status.success(),
        "{}\n{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    let unit = station.path("etc-systemd-system/ipfs.service");
    let aside = format!("{}.kubo-before-constellation", unit.display());
    assert_eq!(
        station.changes(),
        [
            "sudo -n systemctl stop ipfs.service".to_owned(),
            "sudo -n systemctl disable ipfs.service".to_owned(),
            format!("sudo -n mv {} {aside}", unit.display()),
            "sudo -n systemctl daemon-reload".to_owned(),
            "sudo -n systemctl mask ipfs.service".to_owned(),
            "systemctl --user daemon-reload".to_owned(),
            "systemctl --user enable --now constellation.service".to_owned(),
        ]
    );
    assert!(
        !unit.exists() && Path::new(&aside).is_file(),
        "Kubo's unit kept aside"
    );
    assert_eq!(
        station
            .read("systemd-state/system-ipfs.service.enabled")
            .trim(),
        "masked"
    );
    let config = station.read(".zen/constellation/config.toml");
    assert!(
        config.starts_with("# the operator's own comment\n[relay]\n"),
        "{config}"
    );
    let parsed: toml::Table = toml::from_str(&config).unwrap();
    let repo = station.path(".ipfs");
    assert_eq!(parsed["node"]["kubo_repo"].as_str(), repo.to_str());
    assert_eq!(parsed["kubo_api"]["enabled"].as_bool(), Some(true));
    assert_eq!(parsed["dragon"]["manage_ssh_keys"].as_bool(), Some(true));
    let ours = station.read(".config/systemd/user/constellation.service");
    let home = station.home();
    assert!(
        ours.contains(&format!("--home {} daemon", home.display())),
        "{ours}"
    );

    // Idempotent: everything is already done, nothing is run, nothing is rewritten.
    let out = station.migrate(true);
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(station.changes(), Vec::<String>::new(), "{}", stdout(&out));
    let text = stdout(&out);
    for step in [
        "stop kubo",
        "disable kubo",
        "set aside unit",
        "mask kubo",
        "write config",
        "install unit",
        "start ours",
    ] {
        assert!(line(&text, step).starts_with("[    ok]"), "{step}: {text}");
    }
    assert_eq!(station.read(".zen/constellation/config.toml"), config);
    assert_eq!(
        station.read(".config/systemd/user/constellation.service"),
        ours
    );

    // The daemon the unit would start: Kubo's PeerID (its key and swarm key read from ~/.ipfs).
    let daemon = Daemon::start_with_env(
        &home,
        &[],
        &[("HOME", station.tree.root().to_str().unwrap())],
    );
    assert_eq!(daemon.peer_id, station.kubo_peer);
}

#[test]
fn apply_without_a_usable_kubo_identity_changes_nothing() {
    let station = Station::new();
    station.write(".ipfs/config", "{\"Identity\": {}}");
    let out = station.migrate(true);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("the PeerID must carry over"));
    assert_eq!(station.changes(), Vec::<String>::new());
    assert!(station.path("etc-systemd-system/ipfs.service").is_file());
}

impl std::ops::Deref for Station {
    type Target = TempHome;
    fn deref(&self) -> &TempHome {
        &self.tree
    }
}
