//! One SSH trust refresh (the captains' kind-30850 events from the station's own relay, the key
//! files, the block, the station's keys) and the daemon's hourly loop of it; `ssh-keys` runs one.

use std::path::PathBuf;
use std::time::Duration;

use nostr::prelude::{Event, Filter, Timestamp};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ssh_keys::{CAPTAIN_EVENTS_LIMIT, CAPTAIN_KIND, CAPTAIN_WINDOW_SECS};
use super::ssh_trust::{self, TrustError, TrustPaths, TrustReport};
use crate::config::{DragonConfig, Zen, home_dir};
use crate::sync::local::Station;
use crate::sync::relay_client::RelayClient;

/// How long the station's relay may take to connect and to answer the one REQ.
const RELAY_TIMEOUT: Duration = Duration::from_secs(10);
/// Shortest interval between refreshes: faster would only re-read the same files.
const MIN_INTERVAL_SECS: u64 = 10;
/// Longest UPLANETG1PUB accepted (an SS58 address is ~48 characters).
const MAX_UPLANET_LEN: usize = 128;
/// Longest cache file of UPLANETG1PUB read.
const MAX_UPLANET_FILE_BYTES: u64 = 1024;

/// Everything a refresh needs besides the relay.
#[derive(Debug, Clone)]
pub struct TrustJob {
    pub paths: TrustPaths,
    pub ssh_dir: PathBuf,
    pub zen: Zen,
    pub node: libp2p::PeerId,
    pub uplanet: Option<String>,
}

impl TrustJob {
    /// The job for this station, from `[dragon]` and the well-known places.
    pub fn new(config: &DragonConfig, zen: Zen, node: libp2p::PeerId) -> TrustJob {
        let ssh_dir = home_dir().join(".ssh");
        let paths = TrustPaths {
            authorized_keys: (config.authorized_keys.clone())
                .unwrap_or_else(|| ssh_dir.join("authorized_keys")),
            bootstrap: (config.ssh_bootstrap.clone())
                .unwrap_or_else(|| home_dir().join(".zen/Astroport.ONE/A_boostrap_ssh.txt")),
            players: zen.players(),
        };
        let uplanet = uplanet_g1pub(config, &zen);
        TrustJob {
            paths,
            ssh_dir,
            zen,
            node,
            uplanet,
        }
    }

    /// One refresh: the captains' events from `station`, the files, then (with `apply`) the
    /// block and the station's own keys.
    pub async fn refresh(&self, station: &Station, apply: bool) -> Result<TrustReport, TrustError> {
        let (events, warning) = match &self.uplanet {
            Some(_) => match captain_events(station).await {
                Ok(events) => (events, None),
                Err(e) => (Vec::new(), Some(format!("captain keys not refreshed: {e}"))),
            },
            None => (Vec::new(), None),
        };
        let own = self.node.to_string();
        let (keys, mut report) =
            ssh_trust::trusted_keys(&self.paths, &events, self.uplanet.as_deref(), &own);
        report.warnings.extend(warning);
        if apply {
            let (changed, block) = ssh_trust::write_block(&self.paths.authorized_keys, &keys)?;
            (report.changed, report.block) = (changed, block);
            let notes = ssh_trust::write_station_keys(
                &self.ssh_dir,
                self.zen.game(),
                self.zen.own(),
                &self.node,
            )
            .await;
            report
                .warnings
                .extend(notes.into_iter().filter(|n| n.starts_with("cannot")));
        } else {
            report.block = keys.iter().map(|k| k.line()).collect();
        }
        Ok(report)
    }

    /// Refresh every `interval` until `shutdown`; a failed refresh is logged and retried next time.
    pub fn spawn(
        self,
        station: Station,
        interval_secs: u64,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) {
        let every = Duration::from_secs(interval_secs.max(MIN_INTERVAL_SECS));
        tracker.spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                match self.refresh(&station, true).await {
                    Ok(r) => {
                        for w in &r.warnings {
                            tracing::warn!("SSH trust: {w}");
                        }
                        tracing::info!(
                            changed = r.changed,
                            keys = r.block.len(),
                            "SSH trust refreshed"
                        );
                    }
                    Err(e) => tracing::warn!("SSH trust: {e}"),
                }
            }
        });
    }
}

/// Kind 30850 of the last 9 days (at most 300), from the station's relay.
async fn captain_events(station: &Station) -> Result<Vec<Event>, String> {
    let since = Timestamp::now()
        .as_secs()
        .saturating_sub(CAPTAIN_WINDOW_SECS);
    let filter = Filter::new()
        .kind(CAPTAIN_KIND)
        .since(Timestamp::from(since))
        .limit(CAPTAIN_EVENTS_LIMIT);
    match station {
        Station::Embedded(store) => {
            (store.query(filter, Some(CAPTAIN_EVENTS_LIMIT)).await).map_err(|e| e.to_string())
        }
        Station::External(url) => {
            let mut client = RelayClient::connect_url(url, RELAY_TIMEOUT, RELAY_TIMEOUT)
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            let events = tokio::time::timeout(RELAY_TIMEOUT, client.query(filter)).await;
            client.close().await;
            match events {
                Ok(Ok(events)) => Ok(events),
                Ok(Err(e)) => Err(format!("{url}: {e}")),
                Err(_) => Err(format!("{url}: no answer after {RELAY_TIMEOUT:?}")),
            }
        }
    }
}

/// UPLANETG1PUB: `[dragon] uplanet_g1pub`, else the environment, else my.sh's caches.
fn uplanet_g1pub(config: &DragonConfig, zen: &Zen) -> Option<String> {
    let plain = |v: &str| {
        let v = v.trim();
        (!v.is_empty()
            && v.len() <= MAX_UPLANET_LEN
            && v.chars().all(|c| c.is_ascii_alphanumeric()))
        .then(|| v.to_owned())
    };
    let from_files = || {
        zen.uplanet_g1pub_caches().iter().find_map(|path| {
            let bytes = crate::atomic_file::read_bounded(path, MAX_UPLANET_FILE_BYTES).ok()?;
            plain(&String::from_utf8_lossy(&bytes))
        })
    };
    (config.uplanet_g1pub.as_deref().and_then(plain))
        .or_else(|| {
            std::env::var("UPLANETG1PUB")
                .ok()
                .as_deref()
                .and_then(plain)
        })
        .or_else(from_files)
}
