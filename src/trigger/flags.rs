//! The backfill's flags, with the names users know from `backfill_constellation.sh`: shared by
//! `backfill`, `trigger`, `[trigger] backfill` and the demo, and turned into the plain
//! [`BackfillOptions`] that a run (and the control API) carries.

use std::path::PathBuf;

use crate::config::{SyncFiles, home_dir};
use crate::dragon::script::shell_quote;
use crate::sync::backfill::BackfillOptions;
use crate::sync::profiles::DEFAULT_FALLBACK_RELAYS;

/// Flags of `constellation backfill` (names of the original script kept).
#[derive(Debug, Clone, clap::Args)]
pub struct BackfillArgs {
    /// Days back to sync (0 = everything).
    #[arg(long, default_value_t = 1)]
    pub days: u64,
    /// Sync into this relay (strfry or any NIP-01 relay) instead of the station's local relay.
    #[arg(long, value_name = "URL")]
    pub local_relay: Option<String>,
    /// Store through this command, fed JSON lines on stdin, e.g. `strfry --config
    /// /etc/strfry.conf import` (run with `sh -c`); the local relay is asked afterwards which
    /// events it now holds, and only those count as imported.
    #[arg(long, value_name = "COMMAND")]
    pub import_command: Option<String>,
    /// Store over the local relay's websocket even when the station's strfry is at
    /// ~/.zen/strfry/strfry (by default the sync then stores through its
    /// `strfry import --no-verify`, as the original does; signatures are still checked here).
    #[arg(long)]
    pub no_strfry_import: bool,
    /// Sync with this peer (PeerID, reached through its /x/strfry tunnel, or ws(s):// URL); repeatable.
    /// Without --peer, peers come from the swarm folder.
    #[arg(long = "peer", value_name = "PEERID|URL")]
    pub peers: Vec<String>,
    /// Folder of the stations' published files (`*/12345.json`). Default: ~/.zen/tmp/swarm.
    #[arg(long, value_name = "DIR")]
    pub swarm_dir: Option<PathBuf>,
    /// Astroport root for the author sources (game/nostr, strfry/amisOfAmis.txt, flashmem).
    #[arg(long, value_name = "DIR")]
    pub zen: Option<PathBuf>,
    /// Drop direct messages (kind 4).
    #[arg(long)]
    pub no_dms: bool,
    /// Verify ids and signatures (the default).
    #[arg(long, overrides_with = "no_verify")]
    pub verify: bool,
    /// Do not verify signatures.
    #[arg(long)]
    pub no_verify: bool,
    /// Skip the search for missing profiles.
    #[arg(long)]
    pub no_profiles: bool,
    /// Fetch and count, but store and upload nothing.
    #[arg(long, alias = "DRYRUN")]
    pub dry_run: bool,
    /// Also print the local database's figures and the pubkeys per source.
    #[arg(long)]
    pub stats: bool,
    /// Print the author pubkeys.
    #[arg(long)]
    pub show_hex: bool,
    /// Print the run's stats as JSON.
    #[arg(long)]
    pub json: bool,
    /// Public relays asked for missing profiles (kind 0 only), instead of the original's
    /// wss://relay.damus.io, wss://nos.lol and wss://relay.nostr.band; repeatable.
    #[arg(long = "fallback-relay", value_name = "URL")]
    pub fallback_relays: Vec<String>,
    /// Ask no public relay for missing profiles (the peers only).
    #[arg(long, conflicts_with = "fallback_relays")]
    pub no_fallback: bool,
    /// Seconds a silent relay is waited for.
    #[arg(long, default_value_t = 30)]
    pub idle_timeout: u64,
    /// Peers synced at the same time.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Use REQ paging even with peers that speak NIP-77 (to compare, or to debug a peer).
    #[arg(long)]
    pub req_only: bool,
    /// Download only: do not upload to NIP-77 peers what they lack.
    #[arg(long)]
    pub no_upload: bool,
    /// Content that marks spam ("" disables the rule).
    #[arg(long, default_value = "Hello NOSTR visitor.")]
    pub spam: String,
}

impl BackfillArgs {
    /// The plain options of a run.
    pub fn options(&self) -> BackfillOptions {
        BackfillOptions {
            days: self.days,
            local_relay: self.local_relay.clone(),
            import_command: self.import_command.clone(),
            station_import: self.station_import(),
            peers: self.peers.clone(),
            swarm_dir: self.swarm_dir.clone(),
            zen: self.zen.clone(),
            no_dms: self.no_dms,
            verify: !self.no_verify,
            profiles: !self.no_profiles,
            dry_run: self.dry_run,
            show_hex: self.show_hex,
            progress: !self.json,
            fallback_relays: self.fallback_relays(),
            idle_timeout: self.idle_timeout,
            concurrency: self.concurrency,
            req_only: self.req_only,
            upload: !self.no_upload,
            spam: self.spam.clone(),
        }
    }
}

impl BackfillArgs {
    /// The station's `strfry import --no-verify`, run in its folder as the original does, when
    /// `~/.zen/strfry/strfry` is there (and `--no-strfry-import` is not given).
    fn station_import(&self) -> Option<String> {
        let zen = self.zen.clone().unwrap_or_else(|| home_dir().join(".zen"));
        let files = SyncFiles::new(zen);
        let binary = files.strfry_binary();
        let executable = std::fs::metadata(&binary).is_ok_and(|m| {
            m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
        });
        (!self.no_strfry_import && executable).then(|| {
            format!(
                "cd {} && ./strfry import --no-verify",
                shell_quote(&files.strfry_dir().to_string_lossy())
            )
        })
    }

    /// `--fallback-relay`, else the original's three, none with `--no-fallback`.
    fn fallback_relays(&self) -> Vec<String> {
        if self.no_fallback {
            Vec::new()
        } else if self.fallback_relays.is_empty() {
            DEFAULT_FALLBACK_RELAYS.map(str::to_owned).to_vec()
        } else {
            self.fallback_relays.clone()
        }
    }
}

/// Backfill flags from a list of words (`[trigger] backfill` in config.toml, the demo).
pub fn parse_args<I, T>(words: I) -> anyhow::Result<BackfillArgs>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        args: BackfillArgs,
    }
    let words = std::iter::once(std::ffi::OsString::from("backfill"))
        .chain(words.into_iter().map(Into::into));
    Ok(<Wrap as clap::Parser>::try_parse_from(words)?.args)
}
