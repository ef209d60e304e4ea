//! Our yamux `StreamMuxer` (`/yamux/1.0.0`) over the `yamux` crate: libp2p-yamux's limits and
//! receive windows, but data frames that fill one Noise frame (libp2p-yamux cannot set the split
//! size) and a bounded backlog of inbound streams.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::{future, iter};

use futures::{AsyncRead, AsyncWrite};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo};

/// The protocol name every yamux speaks (go-yamux in Kubo, libp2p-yamux).
pub const PROTOCOL: &str = "/yamux/1.0.0";

/// The largest plaintext libp2p-noise 0.47 puts in one Noise message: 65,535 bytes (the Noise
/// limit) minus the 1,024 it keeps free for the tag (its `MAX_FRAME_LEN`, 64,511).
const NOISE_MAX_PLAINTEXT: usize = 65_535 - 1_024;
/// A yamux frame header: version, type, flags (2), stream id (4), length (4).
const YAMUX_HEADER: usize = 12;
/// Body of our data frames: 64,511 − 12 = 64,499 bytes, so a header and its body fill one Noise
/// frame (one seal, one write) instead of yamux's default 16 KiB (four of each). go-yamux sends
/// and accepts frames up to its 64 KiB message size; yamux never sends more than the peer's
/// window credit, so a peer that grants less gets smaller frames.
pub const SPLIT_SEND_SIZE: usize = NOISE_MAX_PLAINTEXT - YAMUX_HEADER;

/// Inbound streams yamux accepted but the swarm has not taken yet; beyond this they are dropped
/// (yamux resets them), as libp2p-yamux does at 256: a peer that opens streams faster than we
/// accept them cannot make this queue grow. It matches yamux's own 256 unacknowledged streams.
const MAX_BUFFERED_INBOUND_STREAMS: usize = 256;

/// yamux asserts `max_streams × 256 KiB ≤` the connection receive window (1 GiB by default, kept
/// as libp2p-yamux keeps it), so a larger stream limit from the config is clamped, not a panic.
const MAX_STREAMS: usize = 1024 * 1024 * 1024 / yamux::DEFAULT_CREDIT as usize;

/// The upgrade: a yamux configuration. Windows are yamux's defaults (256 KiB per stream, auto-tuned,
/// at most 1 GiB per connection), exactly what libp2p-yamux 0.48 runs with.
#[derive(Debug, Clone)]
pub struct Config(yamux::Config);

impl Config {
    /// At most `max_streams` streams per connection (clamped to [`MAX_STREAMS`]).
    pub fn new(max_streams: usize) -> Config {
        let mut config = yamux::Config::default();
        config.set_max_num_streams(max_streams.min(MAX_STREAMS));
        config.set_split_send_size(SPLIT_SEND_SIZE);
        Config(config)
    }

    fn muxer<C>(self, io: C, mode: yamux::Mode) -> future::Ready<Result<Muxer<C>, Infallible>>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let gate = Arc::new(FlushGate::default());
        let io = Coalesce {
            io,
            gate: Arc::clone(&gate),
        };
        future::ready(Ok(Muxer {
            connection: yamux::Connection::new(io, self.0, mode),
            gate,
            inbound: VecDeque::new(),
            inbound_waker: None,
        }))
    }
}

impl UpgradeInfo for Config {
    type Info = &'static str;
    type InfoIter = iter::Once<Self::Info>;

    fn protocol_info(&self) -> Self::InfoIter {
        iter::once(PROTOCOL)
    }
}

impl<C> InboundConnectionUpgrade<C> for Config
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    type Output = Muxer<C>;
    type Error = Infallible;
    type Future = future::Ready<Result<Muxer<C>, Infallible>>;

    fn upgrade_inbound(self, io: C, _: Self::Info) -> Self::Future {
        self.muxer(io, yamux::Mode::Server)
    }
}

impl<C> OutboundConnectionUpgrade<C> for Config
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    type Output = Muxer<C>;
    type Error = Infallible;
    type Future = future::Ready<Result<Muxer<C>, Infallible>>;

    fn upgrade_outbound(self, io: C, _: Self::Info) -> Self::Future {
        self.muxer(io, yamux::Mode::Client)
    }
}

/// Why a yamux connection ended.
#[derive(Debug, thiserror::Error)]
#[error("yamux: {0}")]
pub struct MuxError(#[from] yamux::ConnectionError);

/// One yamux connection as a libp2p muxer. The connection is driven from whichever of `poll` and
/// `poll_inbound` the swarm calls; streams it accepts wait in `inbound` until `poll_inbound`.
pub struct Muxer<C> {
    connection: yamux::Connection<Coalesce<C>>,
    gate: Arc<FlushGate>,
    inbound: VecDeque<yamux::Stream>,
    /// The task waiting in `poll_inbound` while `poll` drives the connection.
    inbound_waker: Option<Waker>,
}

impl<C> std::fmt::Debug for Muxer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Muxer")
            .field("inbound", &self.inbound.len())
            .finish_non_exhaustive()
    }
}

impl<C> Muxer<C>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    /// Run the connection (reads, writes) until it yields a new inbound stream or has nothing left
    /// to do. yamux flushes after every frame; here its flushes are held while it writes every frame
    /// it has, then one pass lets a flush through, so a round of frames leaves in few Noise frames
    /// and writes. A flush stays owed until the socket took it. When the first pass ends with a new
    /// stream instead, the owed flush goes out on the next call, which comes at once: the swarm's
    /// connection loop polls again after every stream, and `poll` wakes its task.
    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<Result<yamux::Stream, MuxError>> {
        self.gate.holding.store(true, Ordering::Relaxed);
        let polled = self.poll_connection(cx);
        self.gate.holding.store(false, Ordering::Relaxed);
        if polled.is_pending() && self.gate.owed.load(Ordering::Relaxed) {
            return self.poll_connection(cx);
        }
        polled
    }

    fn poll_connection(&mut self, cx: &mut Context<'_>) -> Poll<Result<yamux::Stream, MuxError>> {
        match self.connection.poll_next_inbound(cx) {
            Poll::Ready(Some(stream)) => Poll::Ready(stream.map_err(MuxError::from)),
            Poll::Ready(None) => Poll::Ready(Err(yamux::ConnectionError::Closed.into())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<C> StreamMuxer for Muxer<C>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    type Substream = yamux::Stream;
    type Error = MuxError;

    fn poll_inbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        if let Some(stream) = this.inbound.pop_front() {
            return Poll::Ready(Ok(stream));
        }
        if let Poll::Ready(stream) = this.drive(cx) {
            return Poll::Ready(stream);
        }
        this.inbound_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_outbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        self.get_mut()
            .connection
            .poll_new_outbound(cx)
            .map_err(MuxError::from)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut()
            .connection
            .poll_close(cx)
            .map_err(MuxError::from)
    }

    /// Drives the connection; an inbound stream found here is queued for `poll_inbound` (or
    /// dropped, which resets it, when the queue is full), then the task is woken again so one
    /// busy connection yields between streams.
    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        let this = self.get_mut();
        let stream = std::task::ready!(this.drive(cx))?;
        if this.inbound.len() >= MAX_BUFFERED_INBOUND_STREAMS {
            tracing::warn!(%stream, "inbound yamux stream dropped: backlog full");
            drop(stream);
        } else {
            this.inbound.push_back(stream);
            if let Some(waker) = this.inbound_waker.take() {
                waker.wake();
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Shared by a muxer and its socket: whether flushes are held, and whether one is owed.
#[derive(Debug, Default)]
struct FlushGate {
    holding: AtomicBool,
    owed: AtomicBool,
}

/// The socket as yamux sees it: flushes are held while the muxer's gate says so (the muxer then
/// lets one through before it returns); everything else goes straight to `io`.
#[derive(Debug)]
pub struct Coalesce<C> {
    io: C,
    gate: Arc<FlushGate>,
}

impl<C: AsyncRead + Unpin> AsyncRead for Coalesce<C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for Coalesce<C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.gate.holding.load(Ordering::Relaxed) {
            this.gate.owed.store(true, Ordering::Relaxed);
            return Poll::Ready(Ok(()));
        }
        std::task::ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        this.gate.owed.store(false, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use futures::{AsyncReadExt as _, AsyncWriteExt as _};
    use libp2p::core::muxing::StreamMuxerExt as _;
    use rand::{Rng as _, SeedableRng as _};
    use sha2::{Digest as _, Sha256};
    use tokio::sync::{mpsc, oneshot};
    use tokio_util::compat::{Compat, TokioAsyncReadCompatExt as _};

    use super::*;

    type Duplex = Widest<Compat<tokio::io::DuplexStream>>;
    /// Bytes in flight inside the in-memory pipe: a few frames, like a socket buffer.
    const DUPLEX_BUFFER: usize = 256 * 1024;
    /// Concurrent streams in the test: more than yamux's 256 KiB window needs to interleave.
    const STREAMS: usize = 24;
    /// Largest payload of one stream: several windows and many frames each.
    const MAX_PAYLOAD: usize = 1024 * 1024;
    /// The whole exchange takes about a second; a stall is a failure, not a hang.
    const DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

    /// A socket like Noise's: writes wait in memory until a flush (so a flush the muxer held and
    /// never let through would stall the test), and the largest single write is recorded.
    struct Widest<T> {
        io: T,
        unflushed: Vec<u8>,
        widest: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl<T: AsyncRead + Unpin> AsyncRead for Widest<T> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.io).poll_read(cx, buf)
        }
    }

    impl<T: AsyncWrite + Unpin> AsyncWrite for Widest<T> {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.unflushed.extend_from_slice(buf);
            self.widest
                .fetch_max(buf.len(), std::sync::atomic::Ordering::Relaxed);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            let this = &mut *self;
            while !this.unflushed.is_empty() {
                let n = std::task::ready!(Pin::new(&mut this.io).poll_write(cx, &this.unflushed))?;
                this.unflushed.drain(..n);
            }
            Pin::new(&mut this.io).poll_flush(cx)
        }
        fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            std::task::ready!(self.as_mut().poll_flush(cx))?;
            Pin::new(&mut self.io).poll_close(cx)
        }
    }

    /// Own a muxer like the swarm does: drive it, open streams on request, hand out inbound ones.
    async fn run(
        mut muxer: Muxer<Duplex>,
        mut opens: mpsc::Receiver<oneshot::Sender<yamux::Stream>>,
        accepted: mpsc::UnboundedSender<yamux::Stream>,
    ) {
        let mut asking: Option<oneshot::Sender<yamux::Stream>> = None;
        poll_fn(|cx| {
            loop {
                if muxer.poll_unpin(cx).is_ready() {
                    return Poll::Ready(());
                }
                if asking.is_none()
                    && let Poll::Ready(Some(reply)) = opens.poll_recv(cx)
                {
                    asking = Some(reply);
                }
                if let Some(reply) = asking.take() {
                    match muxer.poll_outbound_unpin(cx) {
                        Poll::Ready(Ok(stream)) => {
                            let _ = reply.send(stream);
                            continue;
                        }
                        Poll::Ready(Err(_)) => return Poll::Ready(()),
                        Poll::Pending => asking = Some(reply),
                    }
                }
                match muxer.poll_inbound_unpin(cx) {
                    Poll::Ready(Ok(stream)) => {
                        let _ = accepted.send(stream);
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await;
    }

    /// The server side of one stream: read to EOF, then send the same bytes back and close.
    async fn echo_after_eof(mut stream: yamux::Stream) -> std::io::Result<()> {
        let mut data = Vec::new();
        stream.read_to_end(&mut data).await?;
        stream.write_all(&data).await?;
        stream.close().await
    }

    /// A client and a server muxer over one in-memory pipe; the client's widest write is counted.
    fn pair() -> (
        mpsc::Sender<oneshot::Sender<yamux::Stream>>,
        mpsc::UnboundedReceiver<yamux::Stream>,
        std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) {
        let (a, b) = tokio::io::duplex(DUPLEX_BUFFER);
        let widest = std::sync::Arc::default();
        let a = Widest {
            io: a.compat(),
            unflushed: Vec::new(),
            widest: std::sync::Arc::clone(&widest),
        };
        let b = Widest {
            io: b.compat(),
            unflushed: Vec::new(),
            widest: std::sync::Arc::default(),
        };
        let config = Config::new(STREAMS + 8);
        let Ok(client) = config.clone().muxer(a, yamux::Mode::Client).into_inner();
        let Ok(server) = config.muxer(b, yamux::Mode::Server).into_inner();
        let (open_tx, open_rx) = mpsc::channel(1);
        let (client_in, _client_inbound) = mpsc::unbounded_channel();
        let (server_in, server_inbound) = mpsc::unbounded_channel();
        tokio::spawn(run(client, open_rx, client_in));
        tokio::spawn(run(server, mpsc::channel(1).1, server_in));
        (open_tx, server_inbound, widest)
    }

    async fn open(opens: &mpsc::Sender<oneshot::Sender<yamux::Stream>>) -> yamux::Stream {
        let (tx, rx) = oneshot::channel();
        opens.send(tx).await.expect("client muxer runs");
        rx.await.expect("client muxer opens a stream")
    }

    /// Many streams at once, random sizes both ways through big frames, every byte checked by
    /// hash; one stream reset halfway does not disturb the others.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_streams_keep_their_bytes_while_one_is_reset() {
        let (opens, mut inbound, widest) = pair();
        let server = tokio::spawn(async move {
            let mut echoes = Vec::new();
            while echoes.len() < STREAMS {
                let Some(stream) = inbound.recv().await else {
                    break;
                };
                echoes.push(tokio::spawn(echo_after_eof(stream)));
            }
            let mut failed = 0;
            for echo in echoes {
                failed += usize::from(echo.await.expect("no panic").is_err());
            }
            failed
        });
        let mut rng = rand::rngs::StdRng::seed_from_u64(15);
        let mut tasks = Vec::new();
        for i in 0..STREAMS {
            let mut payload = vec![0u8; rng.gen_range(1..MAX_PAYLOAD)];
            rng.fill(&mut payload[..]);
            let mut stream = open(&opens).await;
            tasks.push(tokio::spawn(async move {
                let sent = Sha256::digest(&payload);
                if i == STREAMS / 2 {
                    // Reset: write part, then drop without closing (yamux sends RST).
                    stream.write_all(&payload[..payload.len() / 2]).await?;
                    drop(stream);
                    return Ok::<_, std::io::Error>(None);
                }
                let (mut reader, mut writer) = stream.split();
                let write = async {
                    writer.write_all(&payload).await?;
                    writer.close().await
                };
                let mut back = Vec::new();
                let (written, read) = tokio::join!(write, reader.read_to_end(&mut back));
                written?;
                read?;
                Ok(Some((
                    sent,
                    Sha256::digest(&back),
                    back.len(),
                    payload.len(),
                )))
            }));
        }
        let mut checked = 0;
        for task in tasks {
            let done = tokio::time::timeout(DEADLINE, task).await;
            let done = done.expect("a stream stalled: a held flush never reached the socket?");
            if let Some((sent, back, back_len, len)) = done.expect("no panic").expect("io") {
                assert_eq!(back_len, len);
                assert_eq!(sent, back, "echoed bytes differ");
                checked += 1;
            }
        }
        assert_eq!(checked, STREAMS - 1);
        assert_eq!(
            server.await.expect("no panic"),
            1,
            "only the reset stream fails"
        );
        let widest = widest.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            widest, SPLIT_SEND_SIZE,
            "data frames are one Noise frame, not 16 KiB"
        );
    }
}
