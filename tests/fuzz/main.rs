//! Property fuzzing of every parser on stable Rust (proptest): random and mutated inputs seeded
//! from real samples. No input panics, errors stay errors, bounded parsers allocate within bounds.
//! Long run: `PROPTEST_CASES=200000 cargo test --release --test fuzz -- --nocapture`.

mod files;
mod harness;
mod swarm;
mod wire;
