//! The XSalsa20 keystream of our pnet layer, on libsodium's Salsa20 (SSE2/AVX2/AVX-512, chosen at
//! run time by `sodium_init`): libp2p-pnet's `salsa20` crate has only a portable backend and was half
//! our CPU with a swarm key. The only `unsafe` of the pnet layer is here, around three C calls.

use std::sync::OnceLock;

use libsodium_sys as sodium;

/// Salsa20's block: the keystream position advances the block counter every 64 bytes.
const BLOCK: usize = 64;
/// XSalsa20's key and nonce sizes (HSalsa20 takes the first 16 nonce bytes, Salsa20 the last 8).
pub const KEY_SIZE: usize = 32;
pub const NONCE_SIZE: usize = 24;

/// `sodium_init` once per process: it picks the fastest Salsa20 for this CPU. If it fails (it
/// needs no randomness we use, but it seeds libsodium's generator), the default implementation
/// stays in place, which is slower, not wrong.
fn init() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        // SAFETY: `sodium_init` takes no arguments and is thread-safe (libsodium's documentation).
        if unsafe { sodium::sodium_init() } < 0 {
            tracing::warn!("libsodium failed to initialise: pnet uses its portable Salsa20");
        }
    });
}

/// One direction of an XSalsa20 stream: stateful across calls, so a message may be cut at any
/// byte (partial blocks included) and XORed piece by piece, as a socket delivers it.
pub struct XSalsa20 {
    /// HSalsa20(key, nonce[..16]): XSalsa20 is Salsa20 under this key.
    subkey: [u8; KEY_SIZE],
    /// nonce[16..]: Salsa20's 8-byte nonce.
    nonce: [u8; 8],
    /// Bytes of keystream used so far; the block counter is `position / 64` (64 bits, as in
    /// libsodium and the `salsa20` crate: it cannot wrap within a connection).
    position: u64,
}

impl XSalsa20 {
    pub fn new(key: &[u8; KEY_SIZE], nonce: &[u8; NONCE_SIZE]) -> XSalsa20 {
        init();
        let mut subkey = [0u8; KEY_SIZE];
        // SAFETY: the pointers are to arrays of the sizes libsodium reads or writes: out 32,
        // in 16 (the first 16 bytes of a 24-byte array), k 32; a null constant means Salsa's own.
        unsafe {
            sodium::crypto_core_hsalsa20(
                subkey.as_mut_ptr(),
                nonce.as_ptr(),
                key.as_ptr(),
                std::ptr::null(),
            );
        }
        let mut tail = [0u8; 8];
        tail.copy_from_slice(&nonce[16..]);
        XSalsa20 {
            subkey,
            nonce: tail,
            position: 0,
        }
    }

    /// Start the keystream at byte `position` instead of 0 (the tests check the counter's carry).
    #[cfg(test)]
    pub fn seek(&mut self, position: u64) {
        self.position = position;
    }

    /// XOR the next `data.len()` bytes of the keystream into `data`.
    pub fn apply(&mut self, data: &mut [u8]) {
        self.xor(None, data);
    }

    /// Write `src` XOR the next `src.len()` bytes of the keystream into `dst` (as long as `src`):
    /// one pass instead of a copy and then [`apply`](Self::apply), for the write path.
    pub fn apply_into(&mut self, src: &[u8], dst: &mut [u8]) {
        debug_assert_eq!(src.len(), dst.len());
        let len = src.len().min(dst.len());
        self.xor(Some(&src[..len]), &mut dst[..len]);
    }

    /// `dst ^= keystream` in place, or `dst = src ^ keystream` when `src` is given.
    fn xor(&mut self, mut src: Option<&[u8]>, mut dst: &mut [u8]) {
        let offset = (self.position % BLOCK as u64) as usize;
        if offset != 0 {
            // The tail of a block begun by the previous call: make that block again, use its end.
            let mut block = [0u8; BLOCK];
            self.xor_blocks(None, &mut block, self.position / BLOCK as u64);
            let take = dst.len().min(BLOCK - offset);
            let (head, tail) = dst.split_at_mut(take);
            let key = &block[offset..offset + take];
            match src {
                None => head.iter_mut().zip(key).for_each(|(b, k)| *b ^= k),
                Some(from) => {
                    let (from_head, from_tail) = from.split_at(take);
                    for ((b, f), k) in head.iter_mut().zip(from_head).zip(key) {
                        *b = f ^ k;
                    }
                    src = Some(from_tail);
                }
            }
            self.position += take as u64;
            dst = tail;
        }
        if !dst.is_empty() {
            self.xor_blocks(src, dst, self.position / BLOCK as u64);
            self.position += dst.len() as u64;
        }
    }

    /// `dst = (src or dst) ^ keystream`, from the start of block `counter`.
    fn xor_blocks(&self, src: Option<&[u8]>, dst: &mut [u8], counter: u64) {
        let out = dst.as_mut_ptr();
        let input = src.map_or(out as *const u8, <[u8]>::as_ptr);
        debug_assert!(src.is_none_or(|s| s.len() == dst.len()));
        // SAFETY: libsodium allows the output to be the input (c == m, documented) or a separate
        // buffer; both point to `dst.len()` valid bytes (`src` is as long as `dst`, checked by
        // the callers); the nonce is 8 bytes and the key 32, as it reads. Its return value is
        // always 0.
        unsafe {
            sodium::crypto_stream_salsa20_xor_ic(
                out,
                input,
                dst.len() as u64,
                self.nonce.as_ptr(),
                counter,
                self.subkey.as_ptr(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, RngCore, SeedableRng};
    use salsa20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};

    fn reference(key: &[u8; 32], nonce: &[u8; 24]) -> salsa20::XSalsa20 {
        salsa20::XSalsa20::new(key.into(), nonce.into())
    }

    fn random_key_nonce(rng: &mut StdRng) -> ([u8; 32], [u8; 24]) {
        let mut key = [0u8; 32];
        let mut nonce = [0u8; 24];
        rng.fill_bytes(&mut key);
        rng.fill_bytes(&mut nonce);
        (key, nonce)
    }

    /// XOR `data` through `ours` in pieces of random sizes (0 included), as reads deliver it.
    fn apply_in_pieces(ours: &mut XSalsa20, data: &mut [u8], rng: &mut StdRng, max_piece: usize) {
        let mut at = 0;
        while at < data.len() {
            let piece = rng.gen_range(0..=max_piece).min(data.len() - at);
            ours.apply(&mut data[at..at + piece]);
            at += piece;
        }
    }

    #[test]
    fn equals_the_salsa20_crate_for_random_keys_nonces_and_odd_lengths() {
        let mut rng = StdRng::seed_from_u64(0x5a15a20);
        for len in [
            0, 1, 7, 63, 64, 65, 127, 128, 129, 511, 4095, 65_537, 200_003,
        ] {
            let (key, nonce) = random_key_nonce(&mut rng);
            let mut plain = vec![0u8; len];
            rng.fill_bytes(&mut plain);
            let mut expected = plain.clone();
            reference(&key, &nonce).apply_keystream(&mut expected);
            let mut ours = plain.clone();
            XSalsa20::new(&key, &nonce).apply(&mut ours);
            assert!(ours == expected, "one call, {len} bytes");
            // Small pieces cross block edges at every offset; large ones take the SIMD path.
            for max_piece in [3, 70, 5000] {
                let mut cut = plain.clone();
                apply_in_pieces(
                    &mut XSalsa20::new(&key, &nonce),
                    &mut cut,
                    &mut rng,
                    max_piece,
                );
                assert!(cut == expected, "{len} bytes in pieces of ≤{max_piece}");
            }
        }
    }

    #[test]
    fn the_block_counter_carries_past_32_bits_as_the_salsa20_crate_does() {
        let mut rng = StdRng::seed_from_u64(32);
        let (key, nonce) = random_key_nonce(&mut rng);
        // Start 3 blocks and 5 bytes before block 2^32, run 10 blocks past it.
        let start = ((1u64 << 32) - 3) * BLOCK as u64 - 5;
        let mut expected = vec![0u8; 13 * BLOCK];
        let mut theirs = reference(&key, &nonce);
        theirs.seek(start);
        theirs.apply_keystream(&mut expected);
        let mut ours = XSalsa20::new(&key, &nonce);
        ours.seek(start);
        let mut got = vec![0u8; 13 * BLOCK];
        apply_in_pieces(&mut ours, &mut got, &mut rng, 100);
        assert!(got == expected);
        assert!(got.iter().any(|b| *b != 0), "a keystream, not zeros");
    }

    #[test]
    fn the_all_zero_origin_key_matches_too() {
        let nonce = [7u8; 24];
        let mut expected = vec![0u8; 1000];
        reference(&[0; 32], &nonce).apply_keystream(&mut expected);
        let mut ours = vec![0u8; 1000];
        XSalsa20::new(&[0; 32], &nonce).apply(&mut ours);
        assert!(ours == expected);
    }

    /// The write path's one-pass form gives the same bytes as copy-then-XOR, in pieces that
    /// start and end at every offset of a block, and leaves its source untouched.
    #[test]
    fn apply_into_equals_the_salsa20_crate_in_odd_pieces() {
        let mut rng = StdRng::seed_from_u64(0x1a70);
        for len in [1, 63, 64, 65, 4097, 65_536, 200_003] {
            let (key, nonce) = random_key_nonce(&mut rng);
            let mut plain = vec![0u8; len];
            rng.fill_bytes(&mut plain);
            let mut expected = plain.clone();
            reference(&key, &nonce).apply_keystream(&mut expected);
            for max_piece in [1, 70, 5000, 70_000] {
                let mut ours = XSalsa20::new(&key, &nonce);
                let mut out = vec![0u8; len];
                let mut at = 0;
                while at < len {
                    let piece = rng.gen_range(0..=max_piece).min(len - at);
                    ours.apply_into(&plain[at..at + piece], &mut out[at..at + piece]);
                    at += piece;
                }
                assert!(out == expected, "{len} bytes in pieces of ≤{max_piece}");
            }
        }
    }
}
