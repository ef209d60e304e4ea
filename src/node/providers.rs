//! Content routing on the DHT, as Kubo does it: who provides a block (GET_PROVIDERS, bounded in
//! count and time) and announcing what we hold (ADD_PROVIDER, republished by Kad every 22 h).

use std::time::Duration;

use cid::Cid;
use libp2p::PeerId;
use tokio::sync::oneshot;

use super::routing::Table;
use super::{Command, Node, NodeError};

/// How long a provider lookup may take: Kubo's `routing findprovs` has no bound of its own but
/// its callers give a few tens of seconds; within 20 s a reachable provider has answered.
pub const FIND_PROVIDERS_TIMEOUT: Duration = super::routing::FIND_PEER_TIMEOUT;
/// Providers one lookup returns at most: Kubo's `routing findprovs --num-providers` default.
pub const MAX_PROVIDERS_FOUND: usize = 20;
/// How long an announcement may take before its caller stops waiting (Kad goes on).
const PROVIDE_TIMEOUT: Duration = super::routing::FIND_PEER_TIMEOUT;

impl Node {
    /// The peers that provide `cid` in the DHT (ourselves left out), at most `limit` (capped at
    /// [`MAX_PROVIDERS_FOUND`]), within [`FIND_PROVIDERS_TIMEOUT`]; none when the DHT is off.
    pub async fn find_providers(&self, cid: &Cid, limit: usize) -> Result<Vec<PeerId>, NodeError> {
        let (key, limit) = (cid.hash().to_bytes(), limit.clamp(1, MAX_PROVIDERS_FOUND));
        let find = self.send(|reply| Command::FindProviders { key, limit, reply });
        let found = tokio::time::timeout(FIND_PROVIDERS_TIMEOUT, find)
            .await
            .unwrap_or(Ok(Vec::new()))?;
        Ok(found.into_iter().filter(|p| *p != self.peer_id).collect())
    }

    /// Announce that we provide `cid` (Kubo keys provider records by the multihash).
    pub async fn provide(&self, cid: &Cid) -> Result<(), NodeError> {
        let key = cid.hash().to_bytes();
        let provide = self.send(|reply| Command::Provide { key, reply });
        match tokio::time::timeout(PROVIDE_TIMEOUT, provide).await {
            Ok(result) => result?.map_err(NodeError::Dht),
            Err(_) => Err(NodeError::Dht(format!(
                "no answer after {PROVIDE_TIMEOUT:?}"
            ))),
        }
    }
}

impl super::EventLoop {
    pub(super) fn find_providers(
        &mut self,
        key: Vec<u8>,
        limit: usize,
        reply: oneshot::Sender<Vec<PeerId>>,
    ) {
        let behaviour = self.swarm.behaviour_mut();
        let tables = [
            (Table::Wan, &mut behaviour.kad),
            (Table::Lan, &mut behaviour.lan_kad),
        ];
        self.records.providers(tables, key, limit, reply);
    }

    pub(super) fn provide(&mut self, key: Vec<u8>, reply: oneshot::Sender<Result<(), String>>) {
        let behaviour = self.swarm.behaviour_mut();
        let tables = [
            (Table::Wan, &mut behaviour.kad),
            (Table::Lan, &mut behaviour.lan_kad),
        ];
        self.records.provide(tables, key, reply);
    }
}
