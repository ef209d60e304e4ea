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
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
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
