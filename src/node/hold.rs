//! Holds: the tunnel layer holds a peer while a tunnel stream to it is open, so that the
//! connection manager never trims a connection that carries a tunnel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use libp2p::PeerId;

/// Open holds per peer, shared by the node's handle and its event loop.
#[derive(Clone, Default)]
pub struct Holds {
    counts: Arc<Mutex<HashMap<PeerId, usize>>>,
}

impl Holds {
    fn lock(&self) -> MutexGuard<'_, HashMap<PeerId, usize>> {
        // A counter map cannot be left half-updated: recover from a poisoned lock.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hold `peer` until the returned guard is dropped.
    pub fn hold(&self, peer: PeerId) -> Hold {
        *self.lock().entry(peer).or_default() += 1;
        Hold {
            holds: self.clone(),
            peer,
        }
    }

    pub fn is_held(&self, peer: &PeerId) -> bool {
        self.lock().contains_key(peer)
    }

    /// How many holds `peer` has (the tunnels on it).
    pub fn count(&self, peer: &PeerId) -> usize {
        self.lock().get(peer).copied().unwrap_or(0)
    }
}

/// One hold on a peer; released on drop.
pub struct Hold {
    holds: Holds,
    peer: PeerId,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut counts = self.holds.lock();
        if let Some(n) = counts.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_count_and_release() {
        let holds = Holds::default();
        let peer = PeerId::random();
        let a = holds.hold(peer);
        let b = holds.hold(peer);
        assert_eq!(holds.count(&peer), 2);
        drop(a);
        assert!(holds.is_held(&peer));
        drop(b);
        assert!(!holds.is_held(&peer));
    }
}
