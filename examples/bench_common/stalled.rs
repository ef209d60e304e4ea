//! Stalled readers against one relay (issue 21): clients that ask for the whole store in one
//! REQ and never read; the relay's RSS meanwhile, how many it cut, and an honest client's REQ
//! time beside them. Used by `relay_bench --stalled N`.

use std::time::{Duration, Instant};

use futures::SinkExt;
use nostr::prelude::*;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

use crate::bench_common::{Relay, client};

/// How long the stalled readers are held: past our relay's 5 s patience for a reply that finds
/// no room, so that both relays have had the time to cut them.
const STALL: Duration = Duration::from_secs(12);
/// RSS and the honest client are sampled this often while the readers stall.
const TICK: Duration = Duration::from_millis(250);
/// A stalled reader's socket receive buffer: small, so that what a relay has sent sits in the
/// relay (where the bound applies), not in the kernel on the client's side.
const RECV_BUFFER: u32 = 16 * 1024;
/// Filters in each stalled REQ (strfry's and our `max_filters`): 200 time windows that cover
/// the whole store, each at the 500-event limit of both relays.
const WINDOWS: u64 = 200;
/// A cut connection answers the final drain with EOF or a reset within this time; a live one
/// sends nothing more once its REQ is answered.
const DRAIN_QUIET: Duration = Duration::from_secs(2);

/// What one relay did with the stalled readers.
pub struct Stalled {
    /// `VmRSS` (heap plus the pages of mapped files: our database, strfry's LMDB).
    pub rss_before_mib: f64,
    pub rss_peak_mib: f64,
    pub rss_after_mib: f64,
    /// `RssAnon`: the heap alone, where the queued bytes are.
    pub anon_before_mib: f64,
    pub anon_peak_mib: f64,
    pub anon_after_mib: f64,
    pub cut: usize,
    pub honest_ms_max: f64,
    pub honest_answered: usize,
    pub honest_asked: usize,
}

/// `VmRSS` and `RssAnon` of `pid`, in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kib| kib.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("RssAnon:"))
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A REQ of [`WINDOWS`] filters that together match every event of the `spread` seconds
/// before `now`.
fn everything(now: u64, spread: u64) -> String {
    let width = spread / WINDOWS + 1;
    let filters: Vec<String> = (0..WINDOWS)
        .map(|k| {
            let since = now - spread + k * width;
            Filter::new()
                .since(Timestamp::from(since))
                .until(Timestamp::from(since + width - 1))
                .limit(500)
                .as_json()
        })
        .collect();
    format!(r#"["REQ","all",{}]"#, filters.join(","))
}

async fn stalled_reader(url: &str, req: &str) -> Socket {
    let addr = url.trim_start_matches("ws://");
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(RECV_BUFFER).expect("SO_RCVBUF");
    let tcp = socket
        .connect(addr.parse().expect("relay address"))
        .await
        .expect("connect");
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp)
        .await
        .expect("websocket");
    ws.send(Message::text(req)).await.expect("send REQ");
    ws
}

/// True when the relay closed `ws`: what it still holds is read, then EOF or an error.
async fn was_cut(ws: Socket) -> bool {
    use futures::StreamExt;
    let mut ws = ws;
    loop {
        match tokio::time::timeout(DRAIN_QUIET, ws.next()).await {
            Err(_) => return false,
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// `n` stalled readers against `relay` for [`STALL`], the honest client asking `honest` every
/// [`TICK`] meanwhile.
pub async fn run(relay: &Relay, n: usize, now: u64, spread: u64, honest: &Filter) -> Stalled {
    let pid = relay.pid();
    let (rss_before_mib, anon_before_mib) = rss_mib(pid);
    let req = everything(now, spread);
    let mut readers = Vec::with_capacity(n);
    for _ in 0..n {
        readers.push(stalled_reader(&relay.url, &req).await);
    }
    let mut honest_client = client(&relay.url).await;
    let (mut rss_peak_mib, mut anon_peak_mib, mut honest_ms_max) = (0.0f64, 0.0f64, 0.0f64);
    let (mut honest_asked, mut honest_answered) = (0, 0);
    let start = Instant::now();
    while start.elapsed() < STALL {
        let (rss, anon) = rss_mib(pid);
        rss_peak_mib = rss_peak_mib.max(rss);
        anon_peak_mib = anon_peak_mib.max(anon);
        honest_asked += 1;
        let t = Instant::now();
        let answer = tokio::time::timeout(STALL, honest_client.query(honest.clone())).await;
        if matches!(answer, Ok(Ok(ref events)) if !events.is_empty()) {
            honest_answered += 1;
            honest_ms_max = honest_ms_max.max(t.elapsed().as_secs_f64() * 1000.0);
        }
        tokio::time::sleep(TICK).await;
    }
    honest_client.close().await;
    let cut = futures::future::join_all(readers.into_iter().map(was_cut))
        .await
        .into_iter()
        .filter(|&c| c)
        .count();
    tokio::time::sleep(TICK).await;
    let (rss_after_mib, anon_after_mib) = rss_mib(pid);
    Stalled {
        rss_before_mib,
        rss_peak_mib,
        rss_after_mib,
        anon_before_mib,
        anon_peak_mib,
        anon_after_mib,
        cut,
        honest_ms_max,
        honest_answered,
        honest_asked,
    }
}
