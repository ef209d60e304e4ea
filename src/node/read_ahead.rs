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

/// `io` with reads served from one buffer of up to [`READ_AHEAD`] bytes; writes pass through.
#[derive(Debug)]
pub struct ReadAhead<C> {
    io: C,
    /// Empty (no allocation) while idle; `buffer[start..end]` is read but not yet consumed.
    buffer: Vec<u8>,
    start: usize,
    end: usize,
}

impl<C> ReadAhead<C> {
    pub fn new(io: C) -> ReadAhead<C> {
        ReadAhead {
            io,
            buffer: Vec::new(),
            start: 0,
            end: 0,
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
                    (this.start, this.end) = (0, n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    // Nothing to read: give the memory back until the socket has bytes again.
                    this.buffer = Vec::new();
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
