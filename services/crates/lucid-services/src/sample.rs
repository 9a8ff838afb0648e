//! Sample session bytes for the examples, tests and benchmarks: half text, half noise, the
//! way a screen recording compresses somewhere in between. Other seeds give other noise,
//! which storage cannot deduplicate.

/// `len` bytes from `seed` (xorshift64): the same seed, the same bytes.
pub fn session_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if (i / 4096) % 2 == 0 {
                b"lucid session "[i % 14]
            } else {
                x as u8
            }
        })
        .collect()
}
