//! The consumer's port rule (BRIEF §1): POSIX `cksum` and the alternative port
//! `21220 + cksum(node id) mod 500 + cksum(slug) mod 100`, shared by `connect` and `x_<slug>.sh`.

/// First port of the alternative range (Astroport's `ALT_BASE`).
pub const ALT_BASE: u16 = 21220;
/// Ports below this need root to bind: the consumer always uses the alternative port for them.
pub const PRIVILEGED_BELOW: u16 = 1024;

/// One step of CRC-32/CKSUM (polynomial 0x04C11DB7, MSB first, no reflection).
fn crc_step(crc: u32, byte: u8) -> u32 {
    let mut c = crc ^ (u32::from(byte) << 24);
    for _ in 0..8 {
        c = if c & 0x8000_0000 != 0 {
            (c << 1) ^ 0x04C1_1DB7
        } else {
            c << 1
        };
    }
    c
}

/// POSIX `cksum` of `data`: the CRC of the bytes, then of the length (least significant byte
/// first, no trailing zero bytes), complemented. `printf %s DATA | cksum` prints the same number.
pub fn cksum(data: &[u8]) -> u32 {
    let mut crc = data.iter().fold(0u32, |crc, &b| crc_step(crc, b));
    let mut len = data.len() as u64;
    while len != 0 {
        crc = crc_step(crc, (len & 0xff) as u8);
        len >>= 8;
    }
    !crc
}

/// The alternative local port of service `slug` of station `node_id`: unique enough per station
/// and service that two tunnels rarely collide, and the same on every consumer.
pub fn alt_port(node_id: &str, slug: &str) -> u16 {
    // Both remainders are < 500 and < 100, so the sum stays below 21820 and fits a u16.
    ALT_BASE + (cksum(node_id.as_bytes()) % 500) as u16 + (cksum(slug.as_bytes()) % 100) as u16
}

/// The local ports to try, in order: the native port (unless privileged), then the alternative.
pub fn candidates(native: Option<u16>, alt: u16) -> Vec<u16> {
    let mut ports: Vec<u16> = native
        .filter(|&p| p >= PRIVILEGED_BELOW && p != alt)
        .into_iter()
        .collect();
    ports.push(alt);
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cksum_matches_known_values_of_the_posix_command() {
        // `printf '' | cksum` and `printf 123456789 | cksum`.
        assert_eq!(cksum(b""), 4_294_967_295);
        assert_eq!(cksum(b"123456789"), 930_766_865);
        assert_eq!(cksum(b"a"), 1_220_704_766);
        assert_eq!(cksum(b"ssh"), 3_881_108_910);
        assert_eq!(cksum(b"strfry"), 2_045_411_838);
    }

    #[test]
    fn alt_port_stays_in_its_range() {
        for node in [
            "",
            "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
            "QmX",
        ] {
            for slug in ["ssh", "strfry", "x"] {
                let p = alt_port(node, slug);
                assert!((ALT_BASE..ALT_BASE + 600).contains(&p), "{p}");
            }
        }
    }

    #[test]
    fn privileged_native_ports_are_never_tried() {
        assert_eq!(candidates(Some(22), 21300), vec![21300]);
        assert_eq!(candidates(Some(9999), 21300), vec![9999, 21300]);
        assert_eq!(candidates(None, 21300), vec![21300]);
    }
}
