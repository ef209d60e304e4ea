//! The floor of the tunnel benchmark (issue 15): a TCP relay that only copies bytes, with no crypto
//! and no multiplexing. Two of them chained make the same three loopback hops as a tunnel, so
//! `interop/bench/tunnel.py` can say how close each real path is to the cost of moving the bytes.
//!
//! Usage: tcp_floor --to 127.0.0.1:PORT   (prints `{"port":N}` once listening on 127.0.0.1)

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

/// Bytes per read/write: the tunnel pipe's own size (`tunnel::pipe::PIPE_BUFFER`), so the floor
/// does the same system calls per byte as the pipe at each end of a tunnel.
const COPY_BUFFER: usize = 64 * 1024;

fn target() -> Result<SocketAddr, String> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (Some("--to"), Some(addr)) => addr.parse().map_err(|e| format!("--to {addr}: {e}")),
        _ => Err("usage: tcp_floor --to 127.0.0.1:PORT".into()),
    }
}

async fn relay(mut client: TcpStream, to: SocketAddr) -> std::io::Result<()> {
    let mut server = TcpStream::connect(to).await?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    tokio::io::copy_bidirectional_with_sizes(&mut client, &mut server, COPY_BUFFER, COPY_BUFFER)
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let to = target()?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    println!("{{\"port\":{port}}}");
    loop {
        let (client, _) = listener.accept().await.map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            if let Err(e) = relay(client, to).await {
                eprintln!("tcp_floor: {e}");
            }
        });
    }
}
