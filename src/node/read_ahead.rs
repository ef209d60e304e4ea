//! A bounded read-ahead buffer under the security layer: Noise reads its frames 8 KiB at a time
//! (asynchronous-codec), so without it a 64 KiB frame costs eight `read` system calls.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{AsyncRead, AsyncWrite};

/// Bytes fetched per `read` from the socket (or pnet): two full Noise frames (64 KiB + 18 bytes
/// each) per system call. Allocated only while bytes flow: a connection whose socket has nothing
/// to read holds none of it, so an idle connection costs what it did without the buffer.
pub const READ_AHEAD: usize = 128 * 1024;
/// A reader whose last `read` brought at least this much is in a bulk flow, and keeps its buffer
/// when the socket runs dry for a moment: giving it back there cost one allocation, one 128 KiB
/// zeroing and its page faults per refill (5–8 % of a tunnel's CPU, measured with `perf`). A
/// chatty or idle connection (pings, DHT messages: reads far below this) still gives it back, so
/// a connection that leaves a bulk flow holds it only until its next small read (a ping, 15 s).
const KEEP_AFTER_READ: usize = 16 * 1024;

/// The rule of [`KEEP_AFTER_READ`] for a read buffer whose socket has just run dry (nothing of
/// it unread): give it back unless the last read into it brought a bulk flow's worth. The TLS
/// layer's read buffer follows it too.
pub fn release_when_dry(buffer: &mut Vec<u8>, last_read: usize) {
    if last_read < KEEP_AFTER_READ {
        *buffer = Vec::new();
    }
}

/// `io` with reads served from one buffer of up to [`READ_AHEAD`] bytes; writes pass through.
#[derive(Debug)]
pub struct ReadAhead<C> {
    io: C,
    /// Empty (no allocation) while idle; `buffer[start..end]` is read but not yet consumed.
    buffer: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes the last `read` into `buffer` brought: a bulk flow keeps the buffer over a Pending.
    last_read: usize,
}

impl<C> ReadAhead<C> {
    pub fn new(io: C) -> ReadAhead<C> {
        ReadAhead {
            io,
            buffer: Vec::new(),
            start: 0,
            end: 0,
            last_read: 0,
        }
    }
}

impl<C: AsyncRead + Unpin> AsyncRead for ReadAhead<C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.start == this.end {
            if out.len() >= READ_AHEAD {
                return Pin::new(&mut this.io).poll_read(cx, out);
            }
            if this.buffer.is_empty() {
                this.buffer = vec![0; READ_AHEAD];
            }
            match Pin::new(&mut this.io).poll_read(cx, &mut this.buffer) {
                Poll::Ready(Ok(n)) => {
                    (this.start, this.end, this.last_read) = (0, n, n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    // Nothing to read: unless bytes are flowing in bulk, give the memory back
                    // until the socket has bytes again.
                    release_when_dry(&mut this.buffer, this.last_read);
                    return Poll::Pending;
                }
            }
        }
        let n = out.len().min(this.end - this.start);
        out[..n].copy_from_slice(&this.buffer[this.start..this.start + n]);
        this.start += n;
        Poll::Ready(Ok(n))
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for ReadAhead<C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use futures::{AsyncReadExt as _, AsyncWriteExt as _};
    use rand::{Rng as _, SeedableRng as _};
    use tokio_util::compat::TokioAsyncReadCompatExt as _;

    use super::*;

    /// Bytes through the pipe: several buffers' worth, written in uneven pieces.
    const TOTAL: usize = 5 * READ_AHEAD + 12_345;

    /// Small reads (Noise reads 8 KiB) get every byte in order, through refills, to EOF; and a
    /// reader that has drained the socket holds no buffer while it waits.
    #[tokio::test]
    async fn small_reads_see_every_byte_and_an_idle_reader_holds_no_buffer() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(15);
        let mut sent = vec![0u8; TOTAL];
        rng.fill(&mut sent[..]);
        let (a, b) = tokio::io::duplex(3 * READ_AHEAD);
        let mut writer = a.compat();
        let mut reader = ReadAhead::new(b.compat());
        writer.write_all(&sent[..1000]).await.expect("write");
        let mut first = [0u8; 1000];
        reader.read_exact(&mut first).await.expect("read");
        assert_eq!(first[..], sent[..1000]);
        let idle = futures::poll!(reader.read(&mut [0u8; 8192]));
        assert!(idle.is_pending(), "nothing more was written");
        assert_eq!(
            reader.buffer.capacity(),
            0,
            "an idle reader gives its buffer back"
        );
        let rest = sent[1000..].to_vec();
        let write = tokio::spawn(async move {
            for piece in rest.chunks(70_001) {
                writer.write_all(piece).await?;
            }
            writer.close().await
        });
        let mut received = first.to_vec();
        let mut piece = [0u8; 8192];
        loop {
            let n = reader.read(&mut piece).await.expect("read");
            if n == 0 {
                break;
            }
            received.extend_from_slice(&piece[..n]);
        }
        write.await.expect("no panic").expect("write");
        assert_eq!(received.len(), TOTAL);
        assert!(received == sent, "bytes differ");
    }

    /// A bulk flow keeps its buffer when the socket runs dry for a moment; the next small read
    /// followed by a dry socket gives it back.
    #[tokio::test]
    async fn a_bulk_reader_keeps_its_buffer_over_a_pause_and_a_small_read_gives_it_back() {
        let (a, b) = tokio::io::duplex(3 * READ_AHEAD);
        let mut writer = a.compat();
        let mut reader = ReadAhead::new(b.compat());
        let bulk = vec![7u8; READ_AHEAD];
        writer.write_all(&bulk).await.expect("write");
        let mut got = vec![0u8; READ_AHEAD];
        reader.read_exact(&mut got[..8192]).await.expect("read");
        assert_eq!(reader.last_read, READ_AHEAD, "one read filled the buffer");
        reader.read_exact(&mut got[8192..]).await.expect("read");
        assert!(got == bulk, "bytes differ");
        let paused = futures::poll!(reader.read(&mut [0u8; 8192]));
        assert!(paused.is_pending(), "nothing more was written");
        assert_eq!(
            reader.buffer.len(),
            READ_AHEAD,
            "a bulk reader keeps its buffer"
        );
        writer.write_all(b"ping").await.expect("write");
        let mut ping = [0u8; 4];
        reader.read_exact(&mut ping).await.expect("read");
        assert_eq!(&ping, b"ping");
        let idle = futures::poll!(reader.read(&mut [0u8; 8192]));
        assert!(idle.is_pending(), "nothing more was written");
        assert_eq!(
            reader.buffer.capacity(),
            0,
            "after a small read it gives it back"
        );
    }
}
