//! pnet keystream benchmark (issue 15): XSalsa20 XOR throughput on 64 KiB buffers, libp2p-pnet's
//! `salsa20` crate against our libsodium-backed keystream, in interleaved rounds (median, spread).
//! Usage: `cargo run --release --example pnet_bench [-- ROUNDS]` (default 15 rounds of 256 MiB).

use std::time::Instant;

use constellation::node::pnet::xsalsa20::XSalsa20;
use salsa20::cipher::{KeyIvInit, StreamCipher};

/// The buffer size of one XOR call: our read-ahead and write buffers are 64 KiB.
const BUFFER: usize = 64 * 1024;
/// Bytes per implementation per round: long enough (~0.1–0.5 s) to dwarf timer noise.
const ROUND_BYTES: usize = 256 << 20;

fn mb_per_s(bytes: usize, seconds: f64) -> f64 {
    bytes as f64 / seconds / 1e6
}

/// Time XORing [`ROUND_BYTES`] through `xor`, one [`BUFFER`] at a time.
fn round(buf: &mut [u8], mut xor: impl FnMut(&mut [u8])) -> f64 {
    let start = Instant::now();
    for _ in 0..ROUND_BYTES / BUFFER {
        xor(buf);
    }
    std::hint::black_box(&buf);
    mb_per_s(ROUND_BYTES, start.elapsed().as_secs_f64())
}

/// Median, min and max of the rounds.
fn summary(rates: &mut [f64]) -> (f64, f64, f64) {
    rates.sort_by(f64::total_cmp);
    (rates[rates.len() / 2], rates[0], rates[rates.len() - 1])
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(15)
        .max(1);
    let key = [0u8; 32];
    let nonce = [7u8; 24];
    let mut theirs = salsa20::XSalsa20::new(&key.into(), &nonce.into());
    let mut ours = XSalsa20::new(&key, &nonce);
    let mut buf = vec![0u8; BUFFER];
    let (mut crate_rates, mut our_rates) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        crate_rates.push(round(&mut buf, |b| theirs.apply_keystream(b)));
        our_rates.push(round(&mut buf, |b| ours.apply(b)));
    }
    let (cm, clo, chi) = summary(&mut crate_rates);
    let (om, olo, ohi) = summary(&mut our_rates);
    println!("XSalsa20 XOR, {BUFFER} B buffers, {rounds} interleaved rounds of {ROUND_BYTES} B");
    println!("| keystream | median MB/s | min | max |");
    println!("|---|---|---|---|");
    println!("| salsa20 0.11 (libp2p-pnet) | {cm:.0} | {clo:.0} | {chi:.0} |");
    println!("| libsodium (ours) | {om:.0} | {olo:.0} | {ohi:.0} |");
    println!("ours / salsa20: {:.2}×", om / cm);
}
