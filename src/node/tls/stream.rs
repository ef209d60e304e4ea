//! The TLS data phase: small writes gathered into full records, sealed records sent in one
//! vectored write on flush, ciphertext read in large chunks so one system call brings many
//! records. rustls does the cryptography; this file owns the buffering and its bounds.

use std::io::{self, IoSlice, Read as _, Write};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::{AsyncRead, AsyncWrite};
use rustls::Connection;

use crate::node::read_ahead::{READ_AHEAD, release_when_dry};

/// Plaintext gathered before it is sealed: one TLS record's maximum (16 KiB), so that yamux's
/// 12-byte headers and window updates share a record with the data that follows instead of
/// each costing a record (22 bytes on the wire and an AEAD call) and a system call of their own.
const RECORD_PLAINTEXT: usize = 16 * 1024;

/// Sealed records queued before a write to the socket is forced without a flush: sixteen full
/// records, sent in one vectored system call; a connection never queues more ciphertext.
const SEALED_LIMIT: usize = 256 * 1024;

/// Ciphertext read from the socket per system call: eight full records (rustls alone reads
/// 4 KiB at a time). As large as the connection's read-ahead, which then passes our reads
/// straight through instead of copying them once more. Allocated while bytes flow, kept through
/// a bulk flow and given back as the read-ahead gives its own back ([`release_when_dry`]), so an
/// idle or chatty connection holds none of it.
const READ_CHUNK: usize = READ_AHEAD;

/// A secured connection after its handshake.
pub struct TlsStream<C> {
    io: C,
    conn: Connection,
    /// Plaintext written but not yet sealed (at most one record).
    plain: Vec<u8>,
    /// Ciphertext from the socket not yet handed to rustls: `incoming[start..end]`.
    incoming: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes the last socket read brought: a bulk flow keeps `incoming` over a Pending.
    last_read: usize,
    /// close_notify is queued: nothing more may be written.
    closed: bool,
}

impl<C> TlsStream<C> {
    pub(super) fn new(io: C, conn: impl Into<Connection>) -> Self {
        let mut conn = conn.into();
        conn.set_buffer_limit(Some(SEALED_LIMIT));
        TlsStream {
            io,
            conn,
            plain: Vec::new(),
            incoming: Vec::new(),
            start: 0,
            end: 0,
            last_read: 0,
            closed: false,
        }
    }

    /// The negotiated TLS 1.3 cipher suite.
    pub fn cipher_suite(&self) -> Option<rustls::CipherSuite> {
        self.conn.negotiated_cipher_suite().map(|s| s.suite())
    }
}

/// rustls' blocking-style I/O over the async socket: `Pending` becomes `WouldBlock`.
struct SyncSocket<'a, 'b, C> {
    io: &'a mut C,
    cx: &'a mut Context<'b>,
}

fn would_block<T>(poll: Poll<io::Result<T>>) -> io::Result<T> {
    match poll {
        Poll::Ready(result) => result,
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}

impl<C: AsyncWrite + Unpin> Write for SyncSocket<'_, '_, C> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        would_block(Pin::new(&mut *self.io).poll_write(self.cx, buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        would_block(Pin::new(&mut *self.io).poll_write_vectored(self.cx, bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        would_block(Pin::new(&mut *self.io).poll_flush(self.cx))
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> TlsStream<C> {
    /// Hand buffered ciphertext to rustls and decrypt the records it completes.
    fn feed(&mut self) -> io::Result<()> {
        let mut pending = &self.incoming[self.start..self.end];
        self.start += self.conn.read_tls(&mut pending)?;
        self.conn
            .process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(())
    }

    /// Read the next chunk from the socket. At EOF rustls is told, and its reader then says
    /// whether the peer closed cleanly (close_notify) or the stream was cut.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.incoming.is_empty() {
            self.incoming = vec![0; READ_CHUNK];
        }
        let Poll::Ready(read) = Pin::new(&mut self.io).poll_read(cx, &mut self.incoming) else {
            // Nothing to read (and nothing buffered: `start == end` here).
            release_when_dry(&mut self.incoming, self.last_read);
            return Poll::Pending;
        };
        match read {
            Err(e) => Poll::Ready(Err(e)),
            Ok(n) => {
                (self.start, self.end, self.last_read) = (0, n, n);
                if n == 0 {
                    self.conn.read_tls(&mut io::empty())?;
                }
                Poll::Ready(Ok(()))
            }
        }
    }

    /// Write every queued record to the socket (one vectored write when the socket takes it).
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.wants_write() {
            let mut socket = SyncSocket {
                io: &mut self.io,
                cx,
            };
            match self.conn.write_tls(&mut socket) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Seal as much of `data` as rustls' queue takes; when the queue is full, send it first.
    fn poll_seal(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            let n = self.conn.writer().write(data)?;
            if n > 0 || data.is_empty() {
                return Poll::Ready(Ok(n));
            }
            ready!(self.poll_send(cx))?;
        }
    }

    /// Seal the gathered plaintext.
    fn poll_seal_gathered(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.plain.is_empty() {
            let plain = std::mem::take(&mut self.plain);
            let sealed = self.poll_seal(cx, &plain);
            self.plain = plain;
            let n = ready!(sealed)?;
            self.plain.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            match this.conn.reader().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Ok(0) after close_notify; UnexpectedEof when the socket ended without it.
                done => return Poll::Ready(done),
            }
            if this.start == this.end {
                ready!(this.poll_fill(cx))?;
            }
            this.feed()?;
        }
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "TLS stream already closed for writing",
            )));
        }
        if this.plain.len() == RECORD_PLAINTEXT {
            ready!(this.poll_seal_gathered(cx))?;
        }
        let whole = buf.len() / RECORD_PLAINTEXT * RECORD_PLAINTEXT;
        if this.plain.is_empty() && whole > 0 {
            // Whole records: sealed straight from the caller's buffer, no copy. The tail comes
            // back in the caller's next write and is gathered with what follows it.
            return this.poll_seal(cx, &buf[..whole]);
        }
        if this.plain.capacity() == 0 {
            this.plain.reserve_exact(RECORD_PLAINTEXT);
        }
        let n = buf.len().min(RECORD_PLAINTEXT - this.plain.len());
        this.plain.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_seal_gathered(cx))?;
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    /// Our write half ends as libp2p-tls ends it: close_notify, then the socket's close.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_seal_gathered(cx))?;
        if !this.closed {
            this.conn.send_close_notify();
            this.closed = true;
        }
        ready!(this.poll_send(cx))?;
        match ready!(Pin::new(&mut this.io).poll_close(cx)) {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Poll::Ready(Ok(())),
            done => Poll::Ready(done),
        }
    }
}
