//! Profiles (kind 0) of the run's authors that the station lacks, as the original looks for
//! them: the authors' whole history from the routable peers, then kind 0 alone from the public
//! fallback relays, three at a time; counted as found or missing.

use std::collections::{BTreeSet, HashSet};

use futures::StreamExt;
use nostr::prelude::{Filter, Kind, PublicKey};

use super::discovery::{self, Endpoint, Peer};
use super::engine::{Engine, Phase};
use super::local::LocalStore;
use super::session::Session;

/// The original's fallback relays for missing profiles (`PUBLIC_FALLBACK_RELAYS`).
pub const DEFAULT_FALLBACK_RELAYS: [&str; 3] = [
    "wss://relay.damus.io",
    "wss://nos.lol",
    "wss://relay.nostr.band",
];
/// Fallback relays asked at the same time (the original asks its three at once).
const FALLBACK_AT_ONCE: usize = 3;

impl<L: LocalStore> Engine<'_, L> {
    /// Profiles (kind 0) of authors that have none locally: their whole history (every synced
    /// kind, no `since`) from the routable peers (the tunnelled ones are skipped, as the original
    /// does), then kind 0 only from the fallback relays, [`FALLBACK_AT_ONCE`] at a time.
    pub(super) async fn profiles(
        &self,
        sessions: &mut [Session],
        authors: &BTreeSet<PublicKey>,
    ) -> (u64, u64) {
        let missing = self.missing_profiles(authors).await;
        if missing.is_empty() {
            return (0, 0);
        }
        let kinds = self.sync_kinds();
        let filters: Vec<Filter> = missing
            .chunks(self.options.author_chunk.max(1))
            .map(|c| Filter::new().authors(c.to_vec()).kinds(kinds.clone()))
            .collect();
        let routable: Vec<&mut Session> = sessions.iter_mut().filter(is_routable).collect();
        self.for_each_session(routable, Phase::Fetch(&filters))
            .await;
        let still = self.missing_profiles(authors).await;
        if !still.is_empty() {
            self.ask_fallback_relays(&still).await;
        }
        let still = self.missing_profiles(authors).await;
        ((missing.len() - still.len()) as u64, still.len() as u64)
    }

    /// Kind 0 of `authors` from every fallback relay; a relay that fails is only logged.
    async fn ask_fallback_relays(&self, authors: &[PublicKey]) {
        let filters = self.author_filters(authors, Kind::Metadata);
        futures::stream::iter(&self.options.fallback_relays)
            .for_each_concurrent(FALLBACK_AT_ONCE, |url| {
                let filters = &filters;
                async move {
                    let mut fallback = Session::new(Peer {
                        name: url.clone(),
                        endpoint: discovery::Endpoint::Url(url.clone()),
                        pubkeys: vec![],
                        hostname: None,
                    });
                    if let Err(e) = self.fetch_into_store(&mut fallback, filters).await {
                        tracing::warn!(relay = %url, "profile fallback failed: {e}");
                    }
                    fallback.finish().await;
                }
            })
            .await;
    }

    async fn missing_profiles(&self, authors: &BTreeSet<PublicKey>) -> Vec<PublicKey> {
        let mut have = HashSet::new();
        for filter in self.author_filters(authors, Kind::Metadata) {
            if let Ok(events) = self.local.query(filter).await {
                have.extend(events.into_iter().map(|e| e.pubkey));
            }
        }
        authors
            .iter()
            .filter(|k| !have.contains(*k))
            .copied()
            .collect()
    }
}

/// Reached at a URL rather than through a tunnel (the original's "routable" peers).
fn is_routable(session: &&mut Session) -> bool {
    matches!(session.peer.endpoint, Endpoint::Url(_))
}
