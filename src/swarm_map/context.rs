//! What the map cycle shares with its parts: the daemon's handles (the context), the report of
//! one cycle, and the clock; their own module so that the parts never import their parent.

use std::path::PathBuf;
use std::sync::Arc;

use libp2p::identity::Keypair;
use serde::{Deserialize, Serialize};

use crate::config::{SwarmMapConfig, Zen};
use crate::node::Node;
use crate::node::bitswap::Bitswap;
use crate::node::names::Names;

/// What the cycle needs from the daemon.
pub struct Context {
    pub node: Node,
    pub bitswap: Bitswap,
    pub names: Arc<Names>,
    /// The node key: our folder is published under `/ipns/<our ID>`.
    pub key: Keypair,
    pub zen: Zen,
    pub config: SwarmMapConfig,
    /// Where the origin of each mirrored station (direct, or through whose map) is kept:
    /// `<home>/swarm_map.json`, read by `swarm map`.
    pub state: PathBuf,
    /// Kubo-format keystores where `MySwarm_<ID>` is looked for before the PEM file: the Kubo
    /// repo's (with `--kubo-repo`), then ours.
    pub keystores: Vec<PathBuf>,
    /// Our relay's URL, for `myRELAY` of the `12345.json` we write.
    pub relay_url: Option<String>,
    /// Where the running cycle says how far it is.
    pub progress: Arc<ProgressCell>,
}

/// One station in a report, with why it is there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub station: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    pub detail: String,
}

/// What one cycle did; `swarm refresh` prints it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CycleReport {
    /// Peers probed (connected ones, and stations named by their maps).
    pub probed: usize,
    /// Stations mirrored this cycle.
    pub fetched: Vec<Line>,
    /// Stations in the map after the cycle.
    pub kept: Vec<String>,
    /// Stations refused: a bound, a bad name, a symlink, a stale moats, a failed fetch.
    pub refused: Vec<Line>,
    /// Peers that answered nothing (no record, no block, empty moats): retried next cycle.
    pub unreachable: Vec<Line>,
    /// Peers whose moats is no number: disconnected and logged in `swarm_intruders.log`.
    pub intruders: Vec<Line>,
    /// Folders removed: moats older than the bound.
    pub removed: Vec<Line>,
    /// `/ipfs/<cid>` of our folder and of our map, when published this cycle.
    pub published: Option<String>,
    pub map_published: Option<String>,
    /// Where the `MySwarm_<ID>` key of the map was found (a keystore, or the PEM file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_key: Option<String>,
    pub secs: f64,
}

/// How far the running cycle is, for `swarm refresh`'s progress bar: stations visited, stations
/// queued so far (the queue grows as maps are read), the one being visited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub running: bool,
    pub visited: usize,
    pub queued: usize,
    pub station: Option<String>,
}

/// The running cycle's [`Progress`], written by the cycle and read by the control API.
#[derive(Debug, Default)]
pub struct ProgressCell(std::sync::Mutex<Progress>);

impl ProgressCell {
    pub fn set(&self, progress: Progress) {
        // A panicked writer left a whole value: the last one it set.
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = progress;
    }
    pub fn get(&self) -> Progress {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Seconds since the epoch (0 on a clock before 1970).
pub(super) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
