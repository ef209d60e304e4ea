//! N²: the contact lists (kind 3) of the base authors give their friends, the friends' lists give
//! friends of friends; one round fetches the lists of one layer from every peer and locally.

use std::collections::BTreeSet;

use nostr::prelude::{Kind, PublicKey};

use super::authors;
use super::engine::{Engine, Phase};
use super::local::LocalStore;
use super::session::Session;

impl<L: LocalStore> Engine<'_, L> {
    /// One N² step: fetch contact lists of `of` from every peer (and locally); add their follows.
    pub(super) async fn expand_round(
        &self,
        sessions: &mut [Session],
        authors: &mut BTreeSet<PublicKey>,
        of: &BTreeSet<PublicKey>,
    ) -> BTreeSet<PublicKey> {
        let filters = self.author_filters(of, Kind::ContactList);
        self.for_each_session(&mut *sessions, Phase::Fetch(&filters))
            .await;
        let mut lists = Vec::new();
        for f in &filters {
            match self.local.query(f.clone()).await {
                Ok(events) => lists.extend(events),
                Err(e) => tracing::warn!("cannot read local contact lists: {e}"),
            }
        }
        // In a dry run nothing was stored: use what the peers sent.
        lists.extend(
            sessions
                .iter_mut()
                .flat_map(|s| std::mem::take(&mut s.contact_lists)),
        );
        authors::expand(authors, of, &authors::follows(&lists))
    }
}
