//! What the live links share with the daemon: each link's state and counters (written by its
//! task, counted by the relay's fan-out, read by the status page), and where each live event
//! came from, so that it never goes back there.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use libp2p::PeerId;
use nostr::prelude::{Event, EventId, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Events whose origin link is remembered. An entry matters from the insert until the store's
/// broadcast has reached every connection (milliseconds); 16,384 is three of the writer's
/// largest commits (5,000 events), ~1.5 MiB.
const PROVENANCE_CAP: usize = 16_384;
/// Ids a link remembers having carried in, to count an event that crosses it twice in the
/// same direction (the proof of the no-storm rule): a busy link's last minutes, ~200 KiB, so
/// that a hundred links fit a Pi.
const SEEN_PER_LINK: usize = 4_096;

/// A link's state, as the status page shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    #[default]
    Connecting,
    /// Subscribed (and pushing, to a plain relay).
    Live,
    /// Connected, but events were dropped (queue full, or down longer than the overlap): the
    /// next reconciliation repairs them.
    CatchingUp,
    /// Not connected; retried after its backoff.
    Down,
}

/// What is at the other end of a link, which decides who carries events across it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Remote {
    /// Not known yet (not connected, or its agent not identified): nothing is pushed.
    #[default]
    Unknown,
    /// A constellation station: it pulls from us, so we never push to it.
    Station,
    /// A plain relay (strfry behind Kubo, a ws:// URL): we push to it.
    Relay,
}

/// One link's figures (`/api/status`, `swarm map`, `constellation live`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LinkStatus {
    pub name: String,
    pub endpoint: String,
    pub remote: Remote,
    pub state: LinkState,
    /// Unix time the state began.
    pub since: u64,
    /// Unix time the link went down (while it is down).
    pub down_since: Option<u64>,
    pub last_error: Option<String>,
    /// Successful connections (the first, then each reconnection).
    pub connects: u64,
    /// Events its subscription brought.
    pub events_in: u64,
    /// Of those, stored here as new (the others were duplicate or refused).
    pub stored: u64,
    pub duplicate: u64,
    pub refused: u64,
    /// Events that came in on this link a second time (0 when the rule holds).
    pub repeated: u64,
    /// Events sent across it: pushed (a relay) or served to its pull (a station).
    pub events_out: u64,
    /// Events not pushed because its queue was full or it was down.
    pub dropped: u64,
    /// Since when events may be missing across it, until the next reconciliation (dropped,
    /// or down for longer than the subscription's overlap).
    pub owed_since: Option<u64>,
    /// Created-at to stored here, for the last event it brought.
    pub lag_ms: Option<u64>,
}

/// A bounded map that forgets its oldest entries first.
pub(super) struct Recent<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
    cap: usize,
}

impl<K: Hash + Eq + Copy, V> Recent<K, V> {
    pub(super) fn new(cap: usize) -> Self {
        Recent {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    /// Insert unless present; true when inserted.
    pub(super) fn insert(&mut self, key: K, value: V) -> bool {
        if self.map.contains_key(&key) {
            return false;
        }
        if self.order.len() >= self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.map.remove(&old);
        }
        self.order.push_back(key);
        self.map.insert(key, value);
        true
    }

    pub(super) fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }

    /// Forget `key` (its slot in the order is reclaimed when it comes up).
    pub(super) fn remove(&mut self, key: &K) {
        self.map.remove(key);
    }
}

/// One link as the others see it.
pub struct Link {
    pub name: String,
    /// The station's PeerID, when known (tunnel links, swarm stations).
    pub peer: Option<PeerId>,
    status: Mutex<LinkStatus>,
    seen: Mutex<Recent<EventId, ()>>,
    /// Events to push (plain relays only), bounded by `[live] queue`.
    queue: mpsc::Sender<Arc<Event>>,
}

fn now() -> u64 {
    Timestamp::now().as_secs()
}

impl Link {
    pub(super) fn new(
        name: String,
        endpoint: String,
        peer: Option<PeerId>,
        queue: mpsc::Sender<Arc<Event>>,
    ) -> Link {
        let status = LinkStatus {
            name: name.clone(),
            endpoint,
            since: now(),
            ..LinkStatus::default()
        };
        Link {
            name,
            peer,
            status: Mutex::new(status),
            seen: Mutex::new(Recent::new(SEEN_PER_LINK)),
            queue,
        }
    }

    pub fn status(&self) -> LinkStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn update(&self, f: impl FnOnce(&mut LinkStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Move to `state` (a link that lost events stays catching up when it comes back).
    pub(super) fn set_state(&self, state: LinkState) {
        self.update(|s| {
            let state = match (s.state, state) {
                (_, LinkState::Live) if s.owed_since.is_some() => LinkState::CatchingUp,
                (_, state) => state,
            };
            if s.state != state {
                s.state = state;
                s.since = now();
            }
            match state {
                LinkState::Down => {
                    s.down_since.get_or_insert(now());
                }
                // Still down while it tries again.
                LinkState::Connecting => {}
                LinkState::Live | LinkState::CatchingUp => s.down_since = None,
            }
        });
    }

    /// Count an event brought by this link; false when it had already come this way.
    pub(super) fn arrived(&self, id: EventId) -> bool {
        let first = self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, ());
        self.update(|s| {
            s.events_in += 1;
            if !first {
                s.repeated += 1;
            }
        });
        first
    }

    pub(super) fn remote(&self) -> Remote {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).remote
    }

    /// Queue `event` for pushing; a full queue drops it and the link is catching up.
    pub(super) fn offer(&self, event: &Arc<Event>) {
        if self.queue.try_send(event.clone()).is_err() {
            self.update(|s| {
                s.dropped += 1;
                s.owed_since.get_or_insert(now());
                if s.state == LinkState::Live {
                    s.state = LinkState::CatchingUp;
                    s.since = now();
                }
            });
        }
    }

    /// Events may be missing across the link (it was down longer than the overlap).
    pub(super) fn owe(&self) {
        self.update(|s| {
            s.owed_since.get_or_insert(now());
        });
    }

    /// A reconciliation that started at `at` repaired what was owed before it.
    pub(super) fn reconciled(&self, at: u64) {
        self.update(|s| {
            if s.owed_since.is_some_and(|t| t <= at) {
                s.owed_since = None;
                if s.state == LinkState::CatchingUp {
                    s.state = LinkState::Live;
                    s.since = now();
                }
            }
        });
    }
}

/// Every link, and where recent events came from. Shared by the links' tasks, the relay's
/// fan-out and the status page.
#[derive(Default)]
pub struct Registry {
    links: Mutex<BTreeMap<String, Arc<Link>>>,
    provenance: Mutex<Option<Recent<EventId, String>>>,
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// The relay's hook: a live event goes to `peer` unless `peer`'s link brought it; what
    /// goes is counted on that link.
    pub fn fanout(self: &Arc<Self>) -> crate::relay::LiveFanout {
        let registry = self.clone();
        Arc::new(move |id, peer| registry.may_send(id, peer))
    }

    fn may_send(&self, id: &EventId, peer: &PeerId) -> bool {
        let from = self.source(id);
        let links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        let Some(link) = links.values().find(|l| l.peer.as_ref() == Some(peer)) else {
            return true;
        };
        if from.as_deref() == Some(link.name.as_str()) {
            return false;
        }
        link.update(|s| s.events_out += 1);
        true
    }

    /// The link that brought `id`, if it is still remembered.
    pub(super) fn source(&self, id: &EventId) -> Option<String> {
        let provenance = self.provenance.lock().unwrap_or_else(|e| e.into_inner());
        provenance.as_ref().and_then(|p| p.get(id).cloned())
    }

    /// Remember that `link` brings `id` (before it is stored, so that the store's broadcast
    /// already knows); true when no other link had.
    pub(super) fn claim(&self, id: EventId, link: &str) -> bool {
        let mut provenance = self.provenance.lock().unwrap_or_else(|e| e.into_inner());
        provenance
            .get_or_insert_with(|| Recent::new(PROVENANCE_CAP))
            .insert(id, link.to_owned())
    }

    /// Forget a claim whose event was not stored after all.
    pub(super) fn unclaim(&self, id: &EventId) {
        if let Some(p) = self
            .provenance
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            p.remove(id);
        }
    }

    pub(super) fn add(&self, link: Arc<Link>) {
        self.links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(link.name.clone(), link);
    }

    pub(super) fn remove(&self, name: &str) {
        self.links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    pub(super) fn all(&self) -> Vec<Arc<Link>> {
        self.links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Every link's figures, by name.
    pub fn links(&self) -> Vec<LinkStatus> {
        self.all().iter().map(|l| l.status()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::prelude::FinalizeEvent;

    #[test]
    fn recent_forgets_the_oldest_past_its_bound() {
        let mut recent = Recent::new(2);
        assert!(recent.insert(1, "a"));
        assert!(!recent.insert(1, "b"), "first writer wins");
        recent.insert(2, "b");
        recent.insert(3, "c");
        assert_eq!(recent.get(&1), None);
        assert_eq!(recent.get(&3), Some(&"c"));
        assert_eq!(recent.map.len(), 2);
    }

    #[test]
    fn an_event_never_goes_back_to_the_peer_that_brought_it_and_others_count_it() {
        let registry = Registry::new();
        let (a, b) = (PeerId::random(), PeerId::random());
        let (tx, _rx) = mpsc::channel(1);
        registry.add(Arc::new(Link::new(
            "a".into(),
            "/x/a".into(),
            Some(a),
            tx.clone(),
        )));
        registry.add(Arc::new(Link::new("b".into(), "/x/b".into(), Some(b), tx)));
        let id = EventId::from_byte_array([0; 32]);
        assert!(registry.claim(id, "a"));
        assert!(!registry.claim(id, "b"));
        assert!(!registry.may_send(&id, &a));
        assert!(registry.may_send(&id, &b));
        assert!(
            registry.may_send(&id, &PeerId::random()),
            "not a link: sent"
        );
        let out: Vec<u64> = registry.links().iter().map(|l| l.events_out).collect();
        assert_eq!(out, vec![0, 1]);
    }

    #[test]
    fn a_full_queue_drops_and_the_link_catches_up_until_reconciled() {
        let (tx, _rx) = mpsc::channel(1);
        let link = Link::new("r".into(), "ws://x".into(), None, tx);
        link.set_state(LinkState::Live);
        let event = Arc::new(
            nostr::prelude::EventBuilder::new(nostr::prelude::Kind::TextNote, "x")
                .finalize(&nostr::prelude::Keys::generate())
                .unwrap(),
        );
        link.offer(&event);
        link.offer(&event);
        let s = link.status();
        assert_eq!((s.state, s.dropped), (LinkState::CatchingUp, 1));
        link.set_state(LinkState::Live);
        assert_eq!(link.status().state, LinkState::CatchingUp, "still owed");
        link.reconciled(now() + 1);
        assert_eq!(link.status().state, LinkState::Live);
    }
}
