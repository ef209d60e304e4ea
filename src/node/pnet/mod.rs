//! Our pnet upgrade, wire-identical to go-libp2p's private networks: each side sends a random
//! 24-byte nonce, then XSalsa20(swarm key, own nonce) over everything it writes. Unlike libp2p-pnet
//! it uses a SIMD keystream and batches I/O, one bounded buffer each way, so small reads cost no syscall.

pub mod xsalsa20;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::pnet::PreSharedKey;
use rand::RngCore;

use xsalsa20::{KEY_SIZE, NONCE_SIZE, XSalsa20};

/// Decrypted bytes read ahead of the layer above. Noise asks for a few KiB at a time and a yamux
/// frame is 16 KiB: 64 KiB takes several frames per syscall, and matches a loopback TCP read.
const READ_BUFFER: usize = 64 * 1024;
/// Encrypted bytes waiting for the socket. One Noise frame is at most 65,537 bytes on the wire:
/// 64 KiB holds most of one (or several small ones) for a single write, and bounds what we hold.
const WRITE_BUFFER: usize = 64 * 1024;
/// The nonce exchange is one write and one 24-byte read each way; a peer that sends nothing must
/// not hold a pending connection for ever (the swarm's pending limit counts it meanwhile). 15 s is
/// go-libp2p's accept timeout for the whole upgrade, and leaves room for a slow relayed circuit.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a pnet upgrade failed.
#[derive(Debug, thiserror::Error)]
pub enum PnetError {
    #[error("pnet handshake: nonce exchange failed")]
    Io(#[source] io::Error),
    #[error("pnet handshake: no nonce from the peer in time")]
    Timeout,
    #[error("pnet: the swarm key cannot be read back from libp2p's key type")]
    Key,
}

/// The 32 raw bytes of a swarm key: [`PreSharedKey`] (which parses `swarm.key`) does not lend
/// them, but writes them back in its key-file form, which we read and check.
#[derive(Clone, Copy)]
pub struct PnetKey([u8; KEY_SIZE]);

impl TryFrom<PreSharedKey> for PnetKey {
    type Error = PnetError;

    fn try_from(psk: PreSharedKey) -> Result<PnetKey, PnetError> {
        let file = psk.to_key_file();
        let hex_key = file.lines().nth(2).ok_or(PnetError::Key)?;
        let mut key = [0u8; KEY_SIZE];
        hex::decode_to_slice(hex_key.trim(), &mut key).map_err(|_| PnetError::Key)?;
        if PreSharedKey::new(key) != psk {
            return Err(PnetError::Key);
        }
        Ok(PnetKey(key))
    }
}

/// Upgrade `socket`: send our nonce, read the peer's (bounded by [`HANDSHAKE_TIMEOUT`]). A peer
/// with another key gets through this step; it fails at the next one, on bytes that make no sense.
pub async fn handshake<S>(key: PnetKey, socket: S) -> Result<PnetStream<S>, PnetError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    handshake_within(HANDSHAKE_TIMEOUT, key, socket).await
}

async fn handshake_within<S>(
    timeout: Duration,
    key: PnetKey,
    mut socket: S,
) -> Result<PnetStream<S>, PnetError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut local_nonce = [0u8; NONCE_SIZE];
    rand::thread_rng().fill_bytes(&mut local_nonce);
    let mut remote_nonce = [0u8; NONCE_SIZE];
    let exchange = async {
        socket.write_all(&local_nonce).await?;
        socket.flush().await?;
        socket.read_exact(&mut remote_nonce).await
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| PnetError::Timeout)?
        .map_err(PnetError::Io)?;
    Ok(PnetStream {
        inner: socket,
        reader: XSalsa20::new(&key.0, &remote_nonce),
        writer: XSalsa20::new(&key.0, &local_nonce),
        read_buf: Vec::new(),
        read_at: 0,
        read_end: 0,
        write_buf: Vec::new(),
        filled: 0,
        written: 0,
    })
}

/// A socket after the pnet handshake: plaintext above, XSalsa20 below.
pub struct PnetStream<S> {
    inner: S,
    reader: XSalsa20,
    writer: XSalsa20,
    /// Decrypted bytes read ahead; `read_buf[read_at..read_end]` is not yet delivered. Allocated
    /// ([`READ_BUFFER`] bytes) at the first small read: a failed handshake never holds one.
    read_buf: Vec<u8>,
    read_at: usize,
    read_end: usize,
    /// Encrypted bytes for the socket: [`WRITE_BUFFER`] long once allocated (at the first write,
    /// then kept); `write_buf[written..filled]` is encrypted and unsent.
    write_buf: Vec<u8>,
    filled: usize,
    written: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> PnetStream<S> {
    /// Send everything buffered; `Ready(Ok)` means the buffer is empty.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.filled {
            let unsent = &self.write_buf[self.written..self.filled];
            let sent = ready!(Pin::new(&mut self.inner).poll_write(cx, unsent))?;
            if sent == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += sent;
        }
        self.filled = 0;
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Refill the read-ahead buffer (all delivered when called) with one read; `Ok(0)` is end of
    /// stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read_buf.is_empty() {
            self.read_buf = vec![0; READ_BUFFER];
        }
        let filled = ready!(Pin::new(&mut self.inner).poll_read(cx, &mut self.read_buf))?;
        self.reader.apply(&mut self.read_buf[..filled]);
        self.read_at = 0;
        self.read_end = filled;
        Poll::Ready(Ok(filled))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PnetStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.read_at == this.read_end {
            if buf.len() >= READ_BUFFER {
                // A large read goes straight into the caller's buffer: no copy.
                let n = ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                this.reader.apply(&mut buf[..n]);
                return Poll::Ready(Ok(n));
            }
            if ready!(this.poll_fill(cx))? == 0 {
                return Poll::Ready(Ok(0));
            }
        }
        let ahead = &this.read_buf[this.read_at..this.read_end];
        let n = ahead.len().min(buf.len());
        buf[..n].copy_from_slice(&ahead[..n]);
        this.read_at += n;
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PnetStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.filled == WRITE_BUFFER {
            ready!(this.poll_drain(cx))?;
        }
        if this.write_buf.is_empty() {
            this.write_buf = vec![0; WRITE_BUFFER];
        }
        let n = buf.len().min(WRITE_BUFFER - this.filled);
        let end = this.filled + n;
        // Encrypted on the way into the buffer: one pass over the bytes, not a copy and a XOR.
        this.writer
            .apply_into(&buf[..n], &mut this.write_buf[this.filled..end]);
        this.filled = end;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    /// Flush, then close the socket's write side: the peer reads end of stream (half-close).
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use salsa20::cipher::{KeyIvInit, StreamCipher};
    use tokio_util::compat::TokioAsyncReadCompatExt;

    /// Bytes in flight between the two ends: small, so both sides block on each other often.
    const PIPE: usize = 4096;

    /// Write `data` in random pieces, flushing now and then, then close (half-close).
    async fn send_in_pieces<S: AsyncWrite + Unpin>(mut out: S, data: &[u8], seed: u64) -> S {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut at = 0;
        while at < data.len() {
            let end = (at + rng.gen_range(1..=100_000)).min(data.len());
            out.write_all(&data[at..end]).await.expect("write");
            if rng.gen_bool(0.3) {
                out.flush().await.expect("flush");
            }
            at = end;
        }
        out.close().await.expect("close");
        out
    }

    /// Read to end of stream in random read sizes (large ones take the no-copy path).
    async fn receive_in_pieces<S: AsyncRead + Unpin>(mut input: S, seed: u64) -> Vec<u8> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut got = Vec::new();
        let mut buf = vec![0u8; 2 * READ_BUFFER];
        loop {
            let size = rng.gen_range(1..=buf.len());
            let n = input.read(&mut buf[..size]).await.expect("read");
            if n == 0 {
                return got;
            }
            got.extend_from_slice(&buf[..n]);
        }
    }

    fn key(byte: u8) -> PnetKey {
        PnetKey::try_from(PreSharedKey::new([byte; KEY_SIZE])).expect("key")
    }

    #[test]
    fn the_key_comes_back_byte_for_byte() {
        let raw: [u8; 32] = std::array::from_fn(|i| i as u8 * 7);
        let key = PnetKey::try_from(PreSharedKey::new(raw)).expect("key");
        assert_eq!(key.0, raw);
    }

    #[tokio::test]
    async fn a_round_trip_both_ways_with_random_chunks_and_half_close() {
        let (a, b) = tokio::io::duplex(PIPE);
        let (a, b) = tokio::join!(handshake(key(0), a.compat()), handshake(key(0), b.compat()));
        let (a, b) = (a.expect("a"), b.expect("b"));
        let mut rng = StdRng::seed_from_u64(15);
        let mut one_way = vec![0u8; 3 * 1024 * 1024 + 17];
        let mut other_way = vec![0u8; 1024 * 1024 + 5];
        rng.fill(&mut one_way[..]);
        rng.fill(&mut other_way[..]);
        let (a_read, a_write) = a.split();
        let (b_read, b_write) = b.split();
        let (_, _, at_b, at_a) = tokio::join!(
            send_in_pieces(a_write, &one_way, 1),
            send_in_pieces(b_write, &other_way, 2),
            receive_in_pieces(b_read, 3),
            receive_in_pieces(a_read, 4),
        );
        assert!(
            at_b == one_way,
            "a → b: {} of {} bytes",
            at_b.len(),
            one_way.len()
        );
        assert!(
            at_a == other_way,
            "b → a: {} of {} bytes",
            at_a.len(),
            other_way.len()
        );
    }

    #[tokio::test]
    async fn the_wire_is_the_nonce_then_xsalsa20_of_the_plaintext() {
        let (ours, theirs) = tokio::io::duplex(PIPE);
        let mut theirs = theirs.compat();
        let peer = async {
            theirs.write_all(&[9u8; NONCE_SIZE]).await.expect("nonce");
            let mut wire = vec![0u8; NONCE_SIZE + 1000];
            theirs.read_exact(&mut wire).await.expect("wire");
            wire
        };
        let send = async {
            let mut stream = handshake(key(3), ours.compat()).await.expect("handshake");
            stream.write_all(&[b'x'; 1000]).await.expect("write");
            stream.flush().await.expect("flush");
            stream
        };
        let (wire, _stream) = tokio::join!(peer, send);
        let (nonce, body) = wire.split_at(NONCE_SIZE);
        let mut expected = vec![b'x'; 1000];
        let nonce = <[u8; NONCE_SIZE]>::try_from(nonce).expect("24 bytes");
        salsa20::XSalsa20::new(&[3u8; 32].into(), &nonce.into()).apply_keystream(&mut expected);
        assert!(body == expected);
    }

    #[tokio::test]
    async fn a_silent_peer_times_out() {
        let (ours, _silent) = tokio::io::duplex(PIPE);
        let result = handshake_within(Duration::from_millis(50), key(0), ours.compat()).await;
        assert!(
            matches!(result, Err(PnetError::Timeout)),
            "{:?}",
            result.err()
        );
    }
}
