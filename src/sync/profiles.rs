//! Profiles (kind 0) of the run's authors that the station lacks: every peer first, then the
//! public fallback relays, counted as found or missing.

use std::collections::{BTreeSet, HashSet};

use nostr::prelude::{Kind, PublicKey};

use super::discovery::{self, Peer};
use super::engine::{Engine, Phase};
use super::local::LocalStore;
use super::session::Session;

impl<L: LocalStore> Engine<'_, L> {
    /// Profiles (kind 0) of authors that have none locally: all peers, then fallback relays.
    pub(super) async fn profiles(
        &self,
        sessions: &mut [Session],
        authors: &BTreeSet<PublicKey>,
    ) -> (u64, u64) {
        let missing = self.missing_profiles(authors).await;
        if missing.is_empty() {
            return (0, 0);
        }
        let filters = self.author_filters(&missing, Kind::Metadata);
        self.for_each_session(sessions, Phase::Fetch(&filters))
            .await;
        let mut still = self.missing_profiles(authors).await;
        for url in &self.options.fallback_relays {
            if still.is_empty() {
                break;
            }
            let mut fallback = Session::new(Peer {
                name: url.clone(),
                endpoint: discovery::Endpoint::Url(url.clone()),
                pubkeys: vec![],
                hostname: None,
            });
            let filters = self.author_filters(&still, Kind::Metadata);
            if let Err(e) = self.fetch_into_store(&mut fallback, &filters).await {
                tracing::warn!(relay = %url, "profile fallback failed: {e}");
            }
            fallback.finish().await;
            still = self.missing_profiles(authors).await;
        }
        ((missing.len() - still.len()) as u64, still.len() as u64)
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
