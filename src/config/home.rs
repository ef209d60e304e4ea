//! The home folder of one node (identity, config, database, control socket, logs) and the
//! other well-known places: `$HOME` and the Kubo repo.

use std::path::{Path, PathBuf};

use crate::config::error::ConfigError;

/// The home folder of one node: identity, config, database, control socket, logs.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `--home`, else `$CONSTELLATION_HOME` (handled by clap), else `~/.zen/constellation`.
    pub fn resolve(explicit: Option<PathBuf>) -> Home {
        let root = explicit.unwrap_or_else(|| home_dir().join(".zen").join("constellation"));
        Home { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn identity_key(&self) -> PathBuf {
        self.root.join("identity.key")
    }
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    pub fn control_socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }
    pub fn tunnels_state(&self) -> PathBuf {
        self.root.join("tunnels.json")
    }
    pub fn database(&self) -> PathBuf {
        self.root.join("relay.sqlite")
    }
    /// The sync history: one row per run, one per peer and run.
    pub fn history(&self) -> PathBuf {
        self.root.join("history.sqlite")
    }
    /// The backfill's run lock (`flock`).
    pub fn run_lock(&self) -> PathBuf {
        self.root.join("backfill.lock")
    }
    /// The swarm key looked for when no other is named.
    pub fn swarm_key(&self) -> PathBuf {
        self.root.join("swarm.key")
    }
    /// The block store: one file per block (`ipfs::store`).
    pub fn blocks(&self) -> PathBuf {
        self.root.join("blocks")
    }
    /// The last IPNS record of each name we publish (`node::names`).
    pub fn names(&self) -> PathBuf {
        self.root.join("ipns")
    }
    /// Our keystore (Kubo's format, `ipfs::keystore`) when no Kubo repo lends its own.
    pub fn keystore(&self) -> PathBuf {
        self.root.join("keystore")
    }
    /// The Kubo API's pin set (`kubo_api::pins`).
    pub fn pins(&self) -> PathBuf {
        self.root.join("pins.json")
    }
    /// How each station of the swarm map was found (direct, or through whose map).
    pub fn swarm_map_state(&self) -> PathBuf {
        self.root.join("swarm_map.json")
    }
    /// Where reports are saved unless `[report] dir` says otherwise.
    pub fn reports(&self) -> PathBuf {
        self.root.join("reports")
    }

    /// Create the folder (mode 0700: it holds the private key and the control socket).
    pub fn ensure(&self) -> Result<(), ConfigError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(|source| ConfigError::Write {
                path: self.root.clone(),
                source,
            })
    }
}

/// `$HOME`, falling back to `/` (a daemon started by init systems may have no HOME).
pub fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// The Kubo repo: `--kubo-repo`, else `$IPFS_PATH`, else `~/.ipfs`.
pub fn kubo_repo(explicit: Option<PathBuf>) -> PathBuf {
    explicit
        .or_else(|| std::env::var_os("IPFS_PATH").map(PathBuf::from))
        .unwrap_or_else(|| home_dir().join(".ipfs"))
}

/// The Astroport places under `~/.zen` that the swarm map reads and writes, named once: other
/// stations' folders, our own published folder, the intruders' log, the `MySwarm_<ID>` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zen {
    swarm: PathBuf,
    own: PathBuf,
    tmp: PathBuf,
    game: PathBuf,
}

impl Zen {
    /// `swarm` is `~/.zen/tmp/swarm` and `own` is `~/.zen/tmp/<ID>` unless `[dragon]` moved them
    /// (the same places DRAGON writes, so its `x_<slug>.sh` are published with the folder).
    pub fn new(swarm: PathBuf, own: PathBuf) -> Zen {
        let zen = home_dir().join(".zen");
        Zen {
            swarm,
            own,
            tmp: zen.join("tmp"),
            game: zen.join("game"),
        }
    }
    /// `~/.zen/tmp/swarm/`: one folder per station, `<swarm>/<ID>/`.
    pub fn swarm(&self) -> &Path {
        &self.swarm
    }
    /// `~/.zen/tmp/<ID>/`: the folder this station publishes under `/ipns/<ID>`.
    pub fn own(&self) -> &Path {
        &self.own
    }
    /// `~/.zen/tmp/swarm_intruders.log`: peers that answered the probe with something else.
    pub fn intruders_log(&self) -> PathBuf {
        self.tmp.join("swarm_intruders.log")
    }
    /// `~/.zen/game/`: the captain's and players' folders.
    pub fn game(&self) -> &Path {
        &self.game
    }
    /// `~/.zen/game/players/`: one folder per player (`<player>/ssh.pub`).
    pub fn players(&self) -> PathBuf {
        self.game.join("players")
    }
    /// Where Astroport's my.sh caches UPLANETG1PUB: `~/.zen/game/uplanet.ss58`, then the older
    /// `~/.zen/tmp/UPLANETG1PUB`.
    pub fn uplanet_g1pub_caches(&self) -> [PathBuf; 2] {
        [
            self.game.join("uplanet.ss58"),
            self.tmp.join("UPLANETG1PUB"),
        ]
    }
    /// `~/.zen/game/myswarm_secret.ipns`: the `MySwarm_<ID>` key (PEM PKCS#8 Ed25519, written by
    /// Astroport's `keygen -t ipfs`).
    pub fn myswarm_key(&self) -> PathBuf {
        self.game.join("myswarm_secret.ipns")
    }
}

/// The `~/.zen` files the hourly sync shares with Astroport's own jobs (`_12345.sh`,
/// `backfill_constellation.sh`, `sync_report.sh`, `20h12.process.sh`), named once. `zen` is the
/// Astroport root: `--zen`, else `~/.zen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncFiles {
    zen: PathBuf,
}

impl SyncFiles {
    pub fn new(zen: PathBuf) -> SyncFiles {
        SyncFiles { zen }
    }
    /// `~/.zen/strfry`: the station's strfry, its database and config, and the sync's logs.
    pub fn strfry_dir(&self) -> PathBuf {
        self.zen.join("strfry")
    }
    /// `~/.zen/strfry/strfry`: when it exists the local relay is the station's strfry.
    pub fn strfry_binary(&self) -> PathBuf {
        self.strfry_dir().join("strfry")
    }
    /// `~/.zen/strfry/constellation-backfill.lock`: the original backfill's `flock`, PID inside.
    pub fn backfill_lock(&self) -> PathBuf {
        self.strfry_dir().join("constellation-backfill.lock")
    }
    /// `~/.zen/tmp/backfill_constellation.lastrun`: Unix time `_12345.sh` last started a sync.
    pub fn last_run(&self) -> PathBuf {
        self.zen.join("tmp/backfill_constellation.lastrun")
    }
    /// `~/.zen/workspace/NIP-101/backfill_constellation.sh`: the original sync, which `_12345.sh`
    /// starts every hour when it exists.
    pub fn original_backfill(&self) -> PathBuf {
        self.zen.join("workspace/NIP-101/backfill_constellation.sh")
    }
    /// `~/.zen/strfry/amisOfAmis.txt`: friends of friends, written by Astroport's other jobs
    /// (`NOSTRCARD.refresh.sh`, `NOSTR.UMAP.refresh.sh`); the sync only reads it.
    pub fn amis_of_amis(&self) -> PathBuf {
        self.strfry_dir().join("amisOfAmis.txt")
    }
    /// `~/.zen/strfry/constellation-n2.txt`: our N² author set of the last run, one hex a line.
    pub fn n2_authors(&self) -> PathBuf {
        self.strfry_dir().join("constellation-n2.txt")
    }
}
