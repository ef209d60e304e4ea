//! `/ipfs/ping/1.0.0` as a caller-driven exchange (Kubo's `ipfs ping`): 32 random bytes out, the
//! same 32 back, timed. The swarm's own ping behaviour answers peers; this one asks, on demand.

use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, StreamProtocol};
use rand::RngCore;

use super::{Node, NodeError};

/// The libp2p ping protocol, the one Kubo speaks.
pub const PING_PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/ping/1.0.0");
/// Bytes of one ping (fixed by the protocol).
const PING_SIZE: usize = 32;
/// How long one ping may take: Kubo's `kPingTimeout`.
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// One ping stream to a peer; each [`Pinger::ping`] is one round trip on it.
pub struct Pinger {
    peer: PeerId,
    stream: libp2p::Stream,
}

impl Node {
    /// Open a ping stream to `peer` (connecting first, by a DHT lookup if needed).
    pub async fn pinger(&self, peer: PeerId) -> Result<Pinger, NodeError> {
        let stream = self.open_stream(peer, PING_PROTOCOL).await?;
        Ok(Pinger { peer, stream })
    }
}

impl Pinger {
    /// One round trip: the time until the peer echoed our 32 bytes.
    pub async fn ping(&mut self) -> Result<Duration, NodeError> {
        let mut payload = [0u8; PING_SIZE];
        rand::thread_rng().fill_bytes(&mut payload);
        let started = Instant::now();
        let exchange = async {
            self.stream.write_all(&payload).await?;
            self.stream.flush().await?;
            let mut echo = [0u8; PING_SIZE];
            self.stream.read_exact(&mut echo).await?;
            Ok::<_, std::io::Error>(echo)
        };
        let failed = |reason: String| NodeError::OpenStream {
            peer: self.peer.to_string(),
            protocol: PING_PROTOCOL.to_string(),
            reason,
        };
        match tokio::time::timeout(PING_TIMEOUT, exchange).await {
            Ok(Ok(echo)) if echo == payload => Ok(started.elapsed()),
            Ok(Ok(_)) => Err(failed("the peer answered with other bytes".into())),
            Ok(Err(e)) => Err(failed(e.to_string())),
            Err(_) => Err(failed(format!("no answer after {PING_TIMEOUT:?}"))),
        }
    }
}
