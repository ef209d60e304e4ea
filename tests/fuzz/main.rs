//! Property fuzzing of every parser on stable Rust (proptest): random and mutated inputs seeded
//! from real samples, and a live fuzz of the running daemon's control socket. No input panics,
//! errors stay errors, bounded parsers allocate within bounds.
//! Long run: `PROPTEST_CASES=200000 cargo test --release --test fuzz -- --nocapture`.

#[path = "../it/common/mod.rs"]
mod common;
mod files;
mod harness;
mod live;
mod swarm;
mod wire;
