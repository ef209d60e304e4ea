//! The swarm map without Kubo: the hourly cycle of Astroport's `_12345.sh` (probe, mirror,
//! `g1swarm` hop, cleanup) that fills `~/.zen/tmp/swarm/`, and the publication of our own
//! folder and map under IPNS. One cycle runs at a time; the daemon and `swarm refresh` share it.

mod context;
pub mod cycle;
pub mod listing;
pub mod own;
pub mod station;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use context::{Context, CycleReport, Line, Progress, ProgressCell};

/// Shortest period between cycles, whatever the config says: a cycle probes every peer.
const MIN_INTERVAL: Duration = Duration::from_secs(30);
/// Shortest period between checks of our folder (`[swarm_map] own_check_secs`, 60 s by
/// default); a check is one `--only-hash` add of a few KiB, so once a second is still cheap.
const MIN_OWN_CHECK: Duration = Duration::from_secs(1);
/// How soon a record the DHT did not take (no peer connected yet at start) is sent again.
const UNSENT_RETRY: Duration = Duration::from_secs(3);

/// The map cycle's owner: one cycle at a time.
pub struct SwarmMap {
    ctx: Context,
    running: tokio::sync::Mutex<()>,
    unsent: own::Unsent,
}

impl SwarmMap {
    pub fn new(ctx: Context) -> SwarmMap {
        SwarmMap {
            ctx,
            running: tokio::sync::Mutex::new(()),
            unsent: own::Unsent::default(),
        }
    }

    /// How far the running cycle is (`running: false` between cycles).
    pub fn progress(&self) -> Progress {
        self.ctx.progress.get()
    }

    /// One whole cycle now (waits for a running one to end first).
    pub async fn refresh(&self) -> CycleReport {
        let _one = self.running.lock().await;
        let started = std::time::Instant::now();
        let mut report = cycle::run(&self.ctx).await;
        if self.ctx.config.publish {
            own::publish_all(&self.ctx, &self.unsent, &mut report, true).await;
        }
        report.secs = started.elapsed().as_secs_f64();
        tracing::info!(
            fetched = report.fetched.len(),
            kept = report.kept.len(),
            refused = report.refused.len(),
            unreachable = report.unreachable.len(),
            intruders = report.intruders.len(),
            removed = report.removed.len(),
            "swarm map cycle done in {:.1} s",
            report.secs
        );
        report
    }

    /// Publish our folder if it changed, its record nears expiry or the DHT did not take it
    /// (between cycles); `refresh` also rewrites our files and publishes the map.
    async fn check_own(&self, refresh: bool) {
        let Ok(_one) = self.running.try_lock() else {
            return;
        };
        let mut report = CycleReport::default();
        own::publish_all(&self.ctx, &self.unsent, &mut report, refresh).await;
    }

    /// Run cycles every `interval_secs` (the first at once when the map is empty), and keep
    /// our folder published in between, until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let interval = Duration::from_secs(self.ctx.config.interval_secs).max(MIN_INTERVAL);
        let own_check = Duration::from_secs(self.ctx.config.own_check_secs).max(MIN_OWN_CHECK);
        // Our folder goes out first, so peers probing us at their start find it.
        if self.ctx.config.publish {
            self.check_own(true).await;
        }
        let mut next = if listing::station_dirs(self.ctx.zen.swarm()).is_empty() {
            tokio::time::Instant::now()
        } else {
            tokio::time::Instant::now() + interval
        };
        loop {
            let wait = match self.unsent.any() {
                true => UNSENT_RETRY,
                false => own_check,
            };
            let check = tokio::time::Instant::now() + wait;
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep_until(next.min(check)) => {}
            }
            if tokio::time::Instant::now() >= next {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = self.refresh() => {}
                }
                next = tokio::time::Instant::now() + interval;
            } else if self.ctx.config.publish {
                self.check_own(false).await;
            }
        }
    }
}
