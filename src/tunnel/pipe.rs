//! Moving bytes between a TCP socket and a libp2p stream: raw, no framing, each direction ending
//! on its own (EOF → shut down that write half, so half-close crosses the tunnel), both cut on error.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::AsyncReadExt as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::compat::{FuturesAsyncReadCompatExt, FuturesAsyncWriteCompatExt};
use tokio_util::sync::CancellationToken;

use crate::node::muxer::SPLIT_SEND_SIZE;

/// Bytes moved per read/write: one full yamux data frame ([`SPLIT_SEND_SIZE`], 64,499 bytes), so a
/// full TCP read becomes one yamux frame and one Noise frame (64 KiB would be split 64,499 + 1,037:
/// two of each); two per tunnel keep a thousand tunnels near 126 MiB at most, as 64 KiB did.
const PIPE_BUFFER: usize = SPLIT_SEND_SIZE;
/// A direction starts with this much and grows to [`PIPE_BUFFER`] on its first full read: an
/// idle or chatty tunnel (ssh, a relay's websocket) then costs pages, not two frames. Measured:
/// with full buffers from the start, 100 open tunnels cost 258 KiB each; freed memory reused by
/// the allocator is zeroed (touched) at once, unlike fresh pages.
const PIPE_START_BUFFER: usize = 4 * 1024;

/// Bytes through one tunnel stream, read live by `p2p stream ls` and the status page.
#[derive(Debug, Default)]
pub struct Counters {
    /// TCP → stream (what the local side sent).
    pub sent: AtomicU64,
    /// stream → TCP (what the remote side sent).
    pub received: AtomicU64,
}

/// Why a pipe ended early.
#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    #[error("stream closed by the operator")]
    Cancelled,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Copy both ways until both directions have ended. A direction that hits EOF shuts down the
/// opposite write half and lets the other direction finish (half-close). An error, or `cancel`,
/// drops everything: the libp2p stream is then reset and the TCP socket closed.
pub async fn pipe(
    tcp: TcpStream,
    stream: libp2p::Stream,
    counters: &Counters,
    cancel: &CancellationToken,
) -> Result<(), PipeError> {
    let (mut tcp_read, mut tcp_write) = tcp.into_split();
    let (stream_read, stream_write) = stream.split();
    let mut stream_read = stream_read.compat();
    let mut stream_write = stream_write.compat_write();
    let outbound = async {
        copy_counted(&mut tcp_read, &mut stream_write, &counters.sent).await?;
        stream_write.shutdown().await
    };
    let inbound = async {
        copy_counted(&mut stream_read, &mut tcp_write, &counters.received).await?;
        tcp_write.shutdown().await
    };
    tokio::select! {
        result = futures::future::try_join(outbound, inbound) => result.map(|_| ()).map_err(PipeError::from),
        () = cancel.cancelled() => Err(PipeError::Cancelled),
    }
}

/// `tokio::io::copy` with a larger buffer and a live byte counter.
async fn copy_counted<R, W>(reader: &mut R, writer: &mut W, counter: &AtomicU64) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0u8; PIPE_START_BUFFER];
    loop {
        let n = reader.read(&mut buffer).await?;
        if n == 0 {
            return writer.flush().await;
        }
        if n == buffer.len() && buffer.len() < PIPE_BUFFER {
            buffer.resize(PIPE_BUFFER, 0);
        }
        writer.write_all(&buffer[..n]).await?;
        writer.flush().await?;
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}
