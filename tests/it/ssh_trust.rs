//! Issue 16, DRAGON's SSH trust on a station laid out as Astroport's (`~/.zen/...` under a temp
//! HOME): the authorized_keys block from the bootstrap file, the players' ssh.pub and the
//! same-UPlanet captains' kind-30850 events of the embedded relay; a crash mid-write.

use std::os::unix::process::ExitStatusExt as _;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use nostr::prelude::*;

use crate::common::relays::{OurRelay, publish};
use crate::common::{self, Daemon, TempHome, bin, wait_until};
use crate::relay::signed;

/// The UPlanet of the test station (what my.sh caches in ~/.zen/game/uplanet.ss58).
const UPLANET: &str = "g1UPLANETtestSwarm42";
/// How long the daemon may take for its first refresh (it runs at start).
const REFRESH_WAIT: Duration = Duration::from_secs(10);

/// An `ssh-ed25519` line for a 32-byte key.
fn ssh_line(key: [u8; 32], comment: &str) -> String {
    constellation::dragon::ssh_keys::SshKey::ed25519(key, comment).line()
}

/// The ed25519 key inside a `12D3KooW…` PeerID (an identity multihash of the public key).
fn node_key(peer: &str) -> [u8; 32] {
    let bytes = bs58::decode(peer).into_vec().expect("base58 peer id");
    bytes[bytes.len() - 32..]
        .try_into()
        .expect("ed25519 peer id")
}

/// A station home: HOME with `.zen` and `.ssh`, the constellation home inside it.
struct StationHome {
    tree: TempHome,
    peer: String,
}

impl StationHome {
    fn new(config: &str) -> StationHome {
        let unused = format!("127.0.0.1:{}", common::net::free_port());
        StationHome::with_relay(&unused, config)
    }
    /// A station whose relay is at `relay` (nothing answering there: the embedded store).
    fn with_relay(relay: &str, config: &str) -> StationHome {
        let tree = TempHome::new();
        let home = tree.home();
        let own = tree.path(".zen/tmp/own");
        common::home_with(
            &home,
            &format!(
                "[relay]\nlisten = \"{relay}\"\n[dragon]\nscripts_dir = {own:?}\nuplanet_g1pub = {UPLANET:?}\n{config}"
            ),
        );
        let station = StationHome {
            tree,
            peer: String::new(),
        };
        let out = station.run(&["init"], &[]);
        assert!(out.status.success(), "{out:?}");
        let peer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        StationHome { peer, ..station }
    }
    /// The CLI with this HOME.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(bin())
            .arg("--home")
            .arg(self.home())
            .args(args)
            .env("HOME", self.tree.root())
            .env_remove("UPLANETG1PUB")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("run constellation")
    }
    fn ssh_keys(&self, args: &[&str]) -> String {
        let out = self.run(&[&["ssh-keys"], args].concat(), &[]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    /// Store `events` in the station's embedded relay (its database), as `strfry import` would.
    fn import(&self, events: &[Event]) {
        let text: String = events.iter().map(|e| e.as_json() + "\n").collect();
        let mut command = Command::new(bin());
        command
            .arg("--home")
            .arg(self.home())
            .args(["relay", "import"])
            .env("HOME", self.tree.root());
        let out = common::run_with_stdin(&mut command, text.as_bytes());
        assert!(out.status.success(), "{out:?}");
    }
}

/// A kind-30850 event of a captain, `age` seconds old.
fn captain(keys: &Keys, swarm: &str, station: &str, ssh_pub: &str, age: u64) -> Event {
    let tags = vec![
        Tag::parse(["d", "economic-health"]).unwrap(),
        Tag::parse(["swarm_id", swarm]).unwrap(),
        Tag::parse(["station", station]).unwrap(),
        Tag::parse(["ssh_pub", ssh_pub]).unwrap(),
    ];
    signed(keys, 30850, "{}", tags, Timestamp::now().as_secs() - age)
}

/// Bootstrap keys (one trusted already outside the block), players, captains of this UPlanet,
/// of another UPlanet, our own station's, a stale one, and bad keys in each source; returns the
/// block expected and the captains' events.
fn lay_out(station: &StationHome) -> (Vec<String>, Vec<Event>) {
    let boot = [
        ssh_line([1; 32], "fred@nexus"),
        ssh_line([2; 32], "frd@sagittarius"),
    ];
    station.write(
        ".zen/Astroport.ONE/A_boostrap_ssh.txt",
        &format!(
            "{}\n# a comment\n{}\nssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 old\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeh short\n",
            boot[0], boot[1]
        ),
    );
    let alice = ssh_line([3; 32], "alice@player");
    station.write(
        ".zen/game/players/alice@x.org/ssh.pub",
        &format!("{alice}\n"),
    );
    station.write(
        ".zen/game/players/bob@x.org/ssh.pub",
        &format!("command=\"/bin/sh\" {}\n", ssh_line([4; 32], "bob")),
    );
    station.write(
        ".ssh/authorized_keys",
        &format!("# mine\n{}\n{}\n", ssh_line([9; 32], "me@laptop"), boot[1]),
    );
    let other = "12D3KooWOtherStationxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
    let good = ssh_line([5; 32], "captain@other");
    let events = vec![
        captain(&Keys::generate(), UPLANET, other, &good, 3600),
        captain(
            &Keys::generate(),
            "g1AnotherUPlanet",
            other,
            &ssh_line([6; 32], "x"),
            3600,
        ),
        captain(
            &Keys::generate(),
            UPLANET,
            &station.peer,
            &ssh_line([7; 32], "me"),
            3600,
        ),
        captain(
            &Keys::generate(),
            UPLANET,
            other,
            &ssh_line([8; 32], "old"),
            10 * 86_400,
        ),
        captain(
            &Keys::generate(),
            UPLANET,
            other,
            "ssh-rsa AAAAB3NzaC1yc2E x",
            60,
        ),
    ];
    // The block: bootstrap (minus the one already trusted), players, captains (tagged).
    let block = vec![
        boot[0].clone(),
        alice,
        format!("{good} uplanet:{}", &UPLANET[..8]),
    ];
    (block, events)
}

/// [`lay_out`] with the captains' events in the station's embedded relay.
fn lay_out_embedded(station: &StationHome) -> Vec<String> {
    let (block, events) = lay_out(station);
    station.import(&events);
    block
}

/// The lines between the markers.
fn block(text: &str) -> Vec<String> {
    let begin = text
        .find("# BEGIN constellation DRAGON")
        .expect("block start");
    let end = text.find("# END constellation DRAGON").expect("block end");
    text[begin..end]
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

#[test]
fn authorized_keys_block_holds_bootstrap_players_and_same_uplanet_captains_only() {
    let station = StationHome::new("");
    let expected = lay_out_embedded(&station);
    let before = station.read(".ssh/authorized_keys");

    // Dry run: the block is printed, nothing is written.
    let dry = station.ssh_keys(&[]);
    assert!(
        dry.contains("keys: 2 bootstrap, 1 players, 1 captains"),
        "{dry}"
    );
    assert!(dry.contains("A_boostrap_ssh.txt:4: key refused"), "{dry}");
    assert!(dry.contains("A_boostrap_ssh.txt:5: key refused"), "{dry}");
    assert!(dry.contains("bob@x.org/ssh.pub:1: key refused"), "{dry}");
    assert!(dry.contains("ssh_pub refused"), "{dry}");
    assert_eq!(station.read(".ssh/authorized_keys"), before);

    let out = station.ssh_keys(&["--write"]);
    assert!(out.contains("updated"), "{out}");
    let after = station.read(".ssh/authorized_keys");
    assert!(
        after.starts_with(&before),
        "lines before the block are kept:\n{after}"
    );
    assert_eq!(block(&after), expected);
    let mode = std::fs::metadata(station.path(".ssh/authorized_keys")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    // No ~/.ssh/id_ed25519.pub: neither x_ssh.pub nor y_ssh.pub.
    assert!(!station.path(".zen/tmp/own/x_ssh.pub").exists());

    // Lines added after the block by hand survive; a second run changes nothing.
    let edited = format!("{after}{}\n", ssh_line([10; 32], "added@later"));
    std::fs::write(station.path(".ssh/authorized_keys"), &edited).unwrap();
    assert!(
        station
            .ssh_keys(&["--write"])
            .contains("already up to date")
    );
    assert_eq!(station.read(".ssh/authorized_keys"), edited);
}

#[test]
fn station_keys_are_x_or_y_level_as_the_original_decides() {
    let station = StationHome::new("");
    let other = ssh_line([11; 32], "pi@station");
    station.write(".ssh/id_ed25519.pub", &format!("{other}\n"));
    station.ssh_keys(&["--write"]);
    assert_eq!(station.read(".zen/tmp/own/x_ssh.pub").trim(), other);
    assert!(!station.path(".zen/tmp/own/y_ssh.pub").exists());

    // The SSH key is the node's own key (ssh_to_g1ipfs gives the PeerID): Y level.
    let own = ssh_line(node_key(&station.peer), "pi@station");
    station.write(".ssh/id_ed25519.pub", &format!("{own}\n"));
    station.ssh_keys(&["--write"]);
    assert_eq!(station.read(".zen/tmp/own/y_ssh.pub").trim(), own);
    // No gpg key of a current player: no z_ssh.pub.
    assert!(!station.path(".zen/tmp/own/z_ssh.pub").exists());
}

#[test]
fn a_crash_between_temp_and_rename_leaves_the_old_authorized_keys() {
    let station = StationHome::new("");
    let expected = lay_out_embedded(&station);
    let old = station.read(".ssh/authorized_keys");
    let out = station.run(
        &["ssh-keys", "--write"],
        &[("CONSTELLATION_TEST_ABORT_BEFORE_RENAME", "authorized_keys")],
    );
    assert_eq!(out.status.signal(), Some(6), "aborted mid-write: {out:?}");
    assert_eq!(
        station.read(".ssh/authorized_keys"),
        old,
        "the old file is whole"
    );
    let temp = station.read(".ssh/authorized_keys.tmp");
    assert_eq!(
        block(&temp),
        expected,
        "the new text was in the synced temporary"
    );

    station.ssh_keys(&["--write"]);
    assert_eq!(block(&station.read(".ssh/authorized_keys")), expected);
    assert!(!station.path(".ssh/authorized_keys.tmp").exists());

    // A block someone broke (a start without an end) is never rewritten.
    let broken = format!(
        "{old}# BEGIN constellation DRAGON (managed block: edits inside are replaced)\nx\n"
    );
    std::fs::write(station.path(".ssh/authorized_keys"), &broken).unwrap();
    let out = station.run(&["ssh-keys", "--write"], &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not touching it"),
        "{out:?}"
    );
    assert_eq!(station.read(".ssh/authorized_keys"), broken);

    // Nor is a file that is not UTF-8: rewriting it would change bytes outside the block.
    let latin1 = b"# caf\xe9\n".to_vec();
    std::fs::write(station.path(".ssh/authorized_keys"), &latin1).unwrap();
    assert!(!station.run(&["ssh-keys", "--write"], &[]).status.success());
    assert_eq!(
        std::fs::read(station.path(".ssh/authorized_keys")).unwrap(),
        latin1
    );
}

#[test]
fn the_daemon_refreshes_the_block_from_its_embedded_relay_when_asked_to() {
    let station = StationHome::new("manage_ssh_keys = true\nssh_keys_interval_secs = 10\n");
    let expected = lay_out_embedded(&station);
    let daemon = Daemon::start_with_env(
        &station.home(),
        &["--dragon", "--relay-listen", "127.0.0.1:0"],
        &[("HOME", station.tree.root().to_str().unwrap())],
    );
    let done = wait_until(REFRESH_WAIT, || {
        station
            .read(".ssh/authorized_keys")
            .contains("# END constellation DRAGON")
    });
    assert!(done, "no block written:\n{}", daemon.log());
    assert_eq!(block(&station.read(".ssh/authorized_keys")), expected);
    assert!(
        daemon.log().contains("SSH trust refreshed"),
        "{}",
        daemon.log()
    );
}

/// Off by default: a daemon without `manage_ssh_keys` never touches authorized_keys.
#[test]
fn without_manage_ssh_keys_the_daemon_leaves_authorized_keys_alone() {
    let station = StationHome::new("");
    lay_out_embedded(&station);
    let before = station.read(".ssh/authorized_keys");
    let daemon = Daemon::start_with_env(
        &station.home(),
        &["--dragon", "--relay-listen", "127.0.0.1:0"],
        &[("HOME", station.tree.root().to_str().unwrap())],
    );
    let _ = daemon.cli_ok(&["services", "--refresh", "--json"]);
    assert_eq!(station.read(".ssh/authorized_keys"), before);
    assert!(!daemon.log().contains("SSH trust"), "{}", daemon.log());
}

impl std::ops::Deref for StationHome {
    type Target = TempHome;
    fn deref(&self) -> &TempHome {
        &self.tree
    }
}

#[test]
fn captains_come_from_the_relay_answering_at_relay_listen_over_its_websocket() {
    // The station's relay is another process (strfry's place): the refresh asks it with a REQ.
    let relay = OurRelay::start("");
    let station = StationHome::with_relay(relay.addr(), "");
    let (expected, events) = lay_out(&station);
    publish(&relay.url, &events);
    station.ssh_keys(&["--write"]);
    assert_eq!(block(&station.read(".ssh/authorized_keys")), expected);
    assert!(
        !station.home().join("relay.sqlite").exists(),
        "the embedded store was not opened"
    );
}
