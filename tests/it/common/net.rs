//! TCP helpers for tunnel tests: free ports, an echo server, a "swap" server that sends and
//! receives at the same time, deterministic payloads and SHA-256.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;

use sha2::{Digest, Sha256};

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn tcp_addr(port: u16) -> String {
    format!("/ip4/127.0.0.1/tcp/{port}")
}

/// `len` deterministic pseudo-random bytes (xorshift), different per `seed`.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Read until EOF, hashing; returns (bytes, hex digest).
pub fn read_all_hashed(stream: &mut impl Read) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok((total, hex::encode(hasher.finalize())));
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

/// An echo server: each connection gets back what it sends, until EOF (then FIN).
pub fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut conn = conn;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = conn.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

/// A server that reads a request to EOF, then answers with `reply_len` bytes and the hash of the
/// request in the last 64 bytes (tests half-close: the reply comes after the client's FIN).
pub fn reply_after_eof_server(reply_len: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut conn = conn;
                let Ok((_, digest)) = read_all_hashed(&mut conn) else {
                    return;
                };
                let mut reply = payload(reply_len, 7);
                reply.extend_from_slice(digest.as_bytes());
                let _ = conn.write_all(&reply);
                let _ = conn.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

/// A server that, on each connection, sends `len` bytes (seed 2) while reading everything;
/// reports the (bytes, hash) it received on the returned channel.
pub fn swap_server(len: usize) -> (SocketAddr, mpsc::Receiver<(u64, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut writer = conn.try_clone().unwrap();
                let sender = thread::spawn(move || {
                    let _ = writer.write_all(&payload(len, 2));
                    let _ = writer.shutdown(Shutdown::Write);
                });
                let mut reader = conn;
                if let Ok(result) = read_all_hashed(&mut reader) {
                    let _ = tx.send(result);
                }
                let _ = sender.join();
            });
        }
    });
    (addr, rx)
}

/// Connect, send `data`, half-close, read the whole answer.
pub fn request(port: u16, data: &[u8]) -> std::io::Result<Vec<u8>> {
    request_to("127.0.0.1", port, data)
}

/// [`request`] to another loopback address (a forward bound on 127.0.0.2, say).
pub fn request_to(host: &str, port: u16, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut conn = TcpStream::connect((host, port))?;
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let writer_data = data.to_vec();
    let mut writer = conn.try_clone()?;
    let sender = thread::spawn(move || {
        writer.write_all(&writer_data)?;
        writer.shutdown(Shutdown::Write)
    });
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer)?;
    sender.join().expect("sender thread")?;
    Ok(answer)
}

/// A server that sends `len` bytes (`payload(len, seed)`) on each connection, then closes;
/// returns its address and the bytes it has written so far, over all connections.
pub fn firehose_server(
    len: usize,
    seed: u64,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let written = std::sync::Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    let data = std::sync::Arc::new(payload(len, seed));
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (data, counter) = (data.clone(), counter.clone());
            thread::spawn(move || {
                let mut conn = conn;
                for chunk in data.chunks(64 * 1024) {
                    if conn.write_all(chunk).is_err() {
                        return;
                    }
                    counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
                let _ = conn.shutdown(Shutdown::Write);
            });
        }
    });
    (addr, written)
}

/// A server that accepts its first `sinks` connections and never reads them (holding them
/// open), then echoes every later one; returns its address and how many it has accepted.
pub fn sink_then_echo_server(
    sinks: usize,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            if counter.fetch_add(1, Ordering::Relaxed) < sinks {
                held.push(conn);
                continue;
            }
            thread::spawn(move || {
                let mut conn = conn;
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n @ 1..) = conn.read(&mut buf) {
                    if conn.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                let _ = conn.shutdown(Shutdown::Write);
            });
        }
    });
    (addr, accepted)
}

/// Write up to `per_conn` bytes into each of `conns` (non-blocking) until none takes another
/// byte: every buffer on the way (ours, the tunnel's, the kernel's) is full or the cap is
/// reached. Returns the bytes written.
pub fn fill_until_blocked(
    conns: &mut [TcpStream],
    per_conn: u64,
    deadline: std::time::Duration,
) -> u64 {
    let started = std::time::Instant::now();
    let chunk = vec![0x5a_u8; 64 * 1024];
    let mut written = vec![0u64; conns.len()];
    for c in conns.iter() {
        c.set_nonblocking(true).unwrap();
    }
    let mut idle_passes = 0;
    loop {
        let mut pass = 0u64;
        for (c, w) in conns.iter_mut().zip(written.iter_mut()) {
            while *w < per_conn {
                let room = chunk.len().min((per_conn - *w) as usize);
                match c.write(&chunk[..room]) {
                    Ok(n @ 1..) => (*w, pass) = (*w + n as u64, pass + n as u64),
                    _ => break,
                }
            }
        }
        idle_passes = if pass == 0 { idle_passes + 1 } else { 0 };
        // Two passes 200 ms apart that move nothing: the pipeline is full, not merely slow.
        if idle_passes == 2 || started.elapsed() > deadline {
            return written.iter().sum();
        }
        thread::sleep(std::time::Duration::from_millis(200));
    }
}
