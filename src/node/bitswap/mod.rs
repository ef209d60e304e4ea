//! Bitswap 1.2.0 (and 1.1.0, 1.0.0) client and server on the node's streams: wants go out on a
//! stream we open, blocks come back on one the peer opens, as go-bitswap does. Every received
//! block is checked against the CID we wanted; wants, streams and waits are bounded.

pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cid::Cid;
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use tokio::sync::{Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Node, NodeError, inbound::AlreadyRegistered};
use crate::ipfs::block::{Block, BlockSink, BlockSource, SourceError};
use crate::ipfs::store::BlockStore;
use wire::{Dialect, Entry, MAX_MESSAGE_BYTES, Message, Presence, WantType};

/// Kubo's protocols, newest first: we offer them in this order and answer in the peer's.
pub const PROTOCOLS: [StreamProtocol; 3] = [
    StreamProtocol::new("/ipfs/bitswap/1.2.0"),
    StreamProtocol::new("/ipfs/bitswap/1.1.0"),
    StreamProtocol::new("/ipfs/bitswap/1.0.0"),
];
/// How long one `get_block` waits for any provider: a block on loopback or a LAN comes in
/// milliseconds; 30 s leaves room for a slow station and still ends a dead want.
pub const BLOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// Blocks our client wants at once; a folder fetch asks one at a time, so this is many callers.
pub const MAX_WANTS: usize = 256;
/// Providers one want is sent to (Kubo broadcasts to its connected peers; a station has tens).
pub const MAX_PROVIDERS: usize = 32;
/// Providers looked up in the DHT when no connected peer has a block: a few are enough (the
/// first that answers gives the block); each is dialled, so more would cost connections.
const MAX_DHT_PROVIDERS: usize = 5;
/// Inbound bitswap streams handled at once, over all peers; more wait in the inbound queue.
const MAX_INBOUND_STREAMS: usize = 64;
/// A peer that opens a stream and then says nothing for this long is dropped.
const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a block could not be had.
#[derive(Debug, thiserror::Error)]
pub enum BitswapError {
    #[error("{MAX_WANTS} blocks are already wanted; try again")]
    Busy,
    #[error("no peer to ask for {0} (not connected to anyone)")]
    NoProviders(Cid),
    #[error("no peer sent block {cid} within {secs} s")]
    Timeout { cid: Cid, secs: u64 },
    #[error("every asked peer said it does not have {0}")]
    NotFound(Cid),
    #[error("bitswap is already running on this node: {0}")]
    Registered(#[from] AlreadyRegistered),
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// One wanted block: who waits, how many peers were asked, how many said no.
struct Want {
    cid: Cid,
    waiters: Vec<oneshot::Sender<Result<Block, BitswapError>>>,
    asked: usize,
    dont_have: usize,
}

/// Our wants by multihash (a CIDv0 and its CIDv1 name the same bytes). The mutex owns them.
#[derive(Default)]
struct Wants(Mutex<HashMap<Vec<u8>, Want>>);

impl Wants {
    fn lock(&self) -> MutexGuard<'_, HashMap<Vec<u8>, Want>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deliver `data` to whoever wants the block it hashes to; false if nobody did.
    fn deliver(&self, cid: &Cid, data: Vec<u8>) -> Option<Block> {
        let want = self.lock().remove(&cid.hash().to_bytes())?;
        match Block::new(want.cid, data) {
            Ok(block) => {
                for waiter in want.waiters {
                    let _ = waiter.send(Ok(block.clone()));
                }
                Some(block)
            }
            Err(e) => {
                tracing::warn!(cid = %want.cid, "bitswap block refused: {e}");
                self.lock().insert(want.cid.hash().to_bytes(), want);
                None
            }
        }
    }

    fn dont_have(&self, cid: &Cid) {
        let mut wants = self.lock();
        let key = cid.hash().to_bytes();
        let Some(want) = wants.get_mut(&key) else {
            return;
        };
        want.dont_have += 1;
        if want.dont_have >= want.asked
            && let Some(want) = wants.remove(&key)
        {
            for waiter in want.waiters {
                let _ = waiter.send(Err(BitswapError::NotFound(want.cid)));
            }
        }
    }
}

/// Cheap, cloneable bitswap handle: the client (`get_block`) and the server serving `store`.
#[derive(Clone)]
pub struct Bitswap {
    node: Node,
    store: Arc<BlockStore>,
    wants: Arc<Wants>,
}

impl Bitswap {
    /// Serve `store` on the bitswap protocols and return the client handle.
    pub fn start(
        node: &Node,
        store: Arc<BlockStore>,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Bitswap, BitswapError> {
        let bitswap = Bitswap {
            node: node.clone(),
            store,
            wants: Arc::default(),
        };
        let permits = Arc::new(Semaphore::new(MAX_INBOUND_STREAMS));
        for protocol in PROTOCOLS {
            let mut streams = node.accept(protocol.clone())?;
            let (bitswap, permits, shutdown) = (bitswap.clone(), permits.clone(), shutdown.clone());
            let inner = tracker.clone();
            tracker.spawn(async move {
                loop {
                    let (peer, stream) = tokio::select! {
                        () = shutdown.cancelled() => break,
                        next = streams.recv() => match next { Some(s) => s, None => break },
                    };
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        break;
                    };
                    let (bitswap, protocol) = (bitswap.clone(), protocol.clone());
                    let shutdown = shutdown.clone();
                    inner.spawn(async move {
                        tokio::select! {
                            () = shutdown.cancelled() => {}
                            () = bitswap.serve_stream(peer, protocol, stream) => {}
                        }
                        drop(permit);
                    });
                }
            });
        }
        Ok(bitswap)
    }

    pub fn store(&self) -> &Arc<BlockStore> {
        &self.store
    }

    /// The block `cid`, from the store or else from `providers` (none given: every connected
    /// peer, as Kubo broadcasts, then the providers the DHT names when none of them has it).
    /// A fetched block is checked, then kept in the store.
    pub async fn get_block(&self, cid: &Cid, providers: &[PeerId]) -> Result<Block, BitswapError> {
        if let Ok(Some(block)) = self.store.get_local(cid) {
            return Ok(block);
        }
        let asked = self.ask(cid, providers).await;
        if !providers.is_empty()
            || !matches!(
                asked,
                Err(BitswapError::NoProviders(_) | BitswapError::NotFound(_))
            )
        {
            return asked;
        }
        let found = (self.node.find_providers(cid, MAX_DHT_PROVIDERS).await).unwrap_or_default();
        if found.is_empty() {
            return asked;
        }
        tracing::debug!(%cid, "asking the {} providers the DHT names", found.len());
        self.ask(cid, &found).await
    }

    /// The block `cid` from `providers` (none given: every connected peer).
    async fn ask(&self, cid: &Cid, providers: &[PeerId]) -> Result<Block, BitswapError> {
        let mut providers = providers.to_vec();
        if providers.is_empty() {
            let info = self.node.info().await?;
            providers = (info.peers.iter())
                .filter_map(|p| p.peer_id.parse().ok())
                .collect();
        }
        providers.truncate(MAX_PROVIDERS);
        if providers.is_empty() {
            return Err(BitswapError::NoProviders(*cid));
        }
        let receive = self.want(cid, providers.len())?;
        for peer in &providers {
            let (bitswap, peer, cid) = (self.clone(), *peer, *cid);
            tokio::spawn(async move {
                if let Err(e) = bitswap.send_want(peer, cid).await {
                    tracing::debug!(%peer, %cid, "cannot send the want: {e}");
                    bitswap.wants.dont_have(&cid);
                }
            });
        }
        let result = match tokio::time::timeout(BLOCK_TIMEOUT, receive).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(BitswapError::Node(NodeError::Stopped)),
            Err(_) => Err(BitswapError::Timeout {
                cid: *cid,
                secs: BLOCK_TIMEOUT.as_secs(),
            }),
        };
        if result.is_err() {
            self.wants.lock().remove(&cid.hash().to_bytes());
        }
        result
    }

    /// Register a waiter for `cid` (joining an existing want), bounded by [`MAX_WANTS`].
    fn want(
        &self,
        cid: &Cid,
        asked: usize,
    ) -> Result<oneshot::Receiver<Result<Block, BitswapError>>, BitswapError> {
        let (reply, receive) = oneshot::channel();
        let mut wants = self.wants.lock();
        let key = cid.hash().to_bytes();
        if !wants.contains_key(&key) && wants.len() >= MAX_WANTS {
            return Err(BitswapError::Busy);
        }
        let want = wants.entry(key).or_insert_with(|| Want {
            cid: *cid,
            waiters: Vec::new(),
            asked: 0,
            dont_have: 0,
        });
        want.asked += asked;
        want.waiters.push(reply);
        Ok(receive)
    }

    async fn send_want(&self, peer: PeerId, cid: Cid) -> Result<(), BitswapError> {
        let message = Message {
            wantlist: vec![Entry {
                cid,
                priority: 1,
                cancel: false,
                want_type: WantType::Block,
                send_dont_have: true,
            }],
            ..Message::default()
        };
        self.send(peer, None, message).await
    }

    /// Open a bitswap stream to `peer` (in `protocol`, else the newest it speaks) and write.
    async fn send(
        &self,
        peer: PeerId,
        protocol: Option<&StreamProtocol>,
        message: Message,
    ) -> Result<(), BitswapError> {
        let mut last = None;
        for candidate in protocol.map_or(&PROTOCOLS[..], std::slice::from_ref) {
            match self.node.open_stream(peer, candidate.clone()).await {
                Ok(mut stream) => {
                    let bytes = message.encode(dialect_of(candidate));
                    let written = async {
                        stream.write_all(&bytes).await?;
                        stream.close().await
                    };
                    return written.await.map_err(|e| {
                        BitswapError::Node(NodeError::OpenStream {
                            peer: peer.to_string(),
                            protocol: candidate.to_string(),
                            reason: e.to_string(),
                        })
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or(BitswapError::Node(NodeError::Stopped), BitswapError::Node))
    }

    /// Read the peer's messages until it closes the stream; answer wants, deliver blocks.
    async fn serve_stream(&self, peer: PeerId, protocol: StreamProtocol, mut stream: Stream) {
        loop {
            let read = tokio::time::timeout(STREAM_IDLE_TIMEOUT, read_message(&mut stream));
            let message = match read.await {
                Ok(Ok(Some(message))) => message,
                Ok(Ok(None)) => return,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "bad bitswap message: {e}");
                    return;
                }
                Err(_) => return,
            };
            self.on_message(peer, &protocol, message).await;
        }
    }

    async fn on_message(&self, peer: PeerId, protocol: &StreamProtocol, message: Message) {
        for (cid, data) in message.blocks {
            if let Some(block) = self.wants.deliver(&cid, data) {
                let mut store = &*self.store;
                if let Err(e) = store.put(block) {
                    tracing::debug!(%cid, "fetched block not kept: {e}");
                }
            } else {
                tracing::debug!(%peer, %cid, "unwanted block dropped");
            }
        }
        for (cid, presence) in message.presences {
            if presence == Presence::DontHave {
                self.wants.dont_have(&cid);
            }
        }
        for reply in self.answer(&message.wantlist) {
            if let Err(e) = self.send(peer, Some(protocol), reply).await {
                tracing::debug!(%peer, "cannot answer its wants: {e}");
                return;
            }
        }
    }

    /// Our answers to a wantlist, split so each message stays under [`MAX_MESSAGE_BYTES`].
    /// We keep no ledger: a block we lack now is answered DontHave (when asked) and forgotten.
    fn answer(&self, wantlist: &[Entry]) -> Vec<Message> {
        let mut replies = vec![Message::default()];
        let mut size = 0;
        for entry in wantlist.iter().filter(|e| !e.cancel) {
            let block = match entry.want_type {
                WantType::Block => self.store.get_local(&entry.cid).ok().flatten(),
                WantType::Have => None,
            };
            let have = block.is_some() || self.store.has(&entry.cid);
            let last = replies.last_mut().expect("non-empty");
            match (block, have) {
                (Some(block), _) => {
                    if size + block.data().len() > MAX_MESSAGE_BYTES / 2 {
                        replies.push(Message::default());
                        size = 0;
                    }
                    size += block.data().len();
                    let last = replies.last_mut().expect("non-empty");
                    last.blocks.push((entry.cid, block.into_data()));
                }
                (None, true) => last.presences.push((entry.cid, Presence::Have)),
                (None, false) if entry.send_dont_have => {
                    last.presences.push((entry.cid, Presence::DontHave));
                }
                (None, false) => {}
            }
        }
        replies.retain(|m| !m.blocks.is_empty() || !m.presences.is_empty());
        replies
    }

    /// A [`BlockSource`] that asks `providers` (none: every connected peer).
    pub fn source(&self, providers: Vec<PeerId>) -> BitswapSource {
        BitswapSource {
            bitswap: self.clone(),
            providers,
        }
    }
}

fn dialect_of(protocol: &StreamProtocol) -> Dialect {
    if protocol.as_ref() == PROTOCOLS[2].as_ref() {
        Dialect::V100
    } else {
        Dialect::V110
    }
}

/// One framed message, or `None` at a clean end of stream. A length above the bound is refused
/// before anything is allocated.
async fn read_message(stream: &mut Stream) -> std::io::Result<Option<Message>> {
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let mut len: u64 = 0;
    for i in 0..10 {
        let mut byte = [0u8];
        if stream.read(&mut byte).await? == 0 {
            return if i == 0 {
                Ok(None)
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            };
        }
        len |= u64::from(byte[0] & 0x7f) << (7 * i);
        if byte[0] & 0x80 == 0 {
            break;
        }
    }
    if len > MAX_MESSAGE_BYTES as u64 {
        return Err(invalid(format!(
            "message of {len} bytes passes {MAX_MESSAGE_BYTES}"
        )));
    }
    let mut body = vec![0u8; len as usize];
    stream.read_exact(&mut body).await?;
    Message::decode(&body).map(Some).map_err(invalid)
}

/// Blocks from bitswap for a DAG walk (`fetch_folder`, `cat_file`).
#[derive(Clone)]
pub struct BitswapSource {
    bitswap: Bitswap,
    providers: Vec<PeerId>,
}

impl BlockSource for BitswapSource {
    async fn get(&self, cid: &Cid) -> Result<Block, SourceError> {
        self.bitswap
            .get_block(cid, &self.providers)
            .await
            .map_err(|e| {
                tracing::debug!(%cid, "bitswap: {e}");
                SourceError::Missing(*cid)
            })
    }
}
