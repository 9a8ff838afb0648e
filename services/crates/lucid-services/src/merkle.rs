//! A session's Merkle root over its chunk addresses, in order.
//!
//! Leaves are the chunks' blake3 hashes; a parent is blake3(0x01 || left || right); an odd
//! node is carried up unchanged. The 0x01 prefix keeps parents from being mistaken for
//! leaves. No chunks: blake3 of nothing.

pub fn root(addresses: &[[u8; 32]]) -> [u8; 32] {
    if addresses.is_empty() {
        return *blake3::hash(b"").as_bytes();
    }
    let mut level: Vec<[u8; 32]> = addresses.to_vec();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => {
                    let mut h = blake3::Hasher::new();
                    h.update(&[1]);
                    h.update(left);
                    h.update(right);
                    *h.finalize().as_bytes()
                }
                [single] => *single,
                _ => unreachable!("chunks(2) yields one or two"),
            })
            .collect();
    }
    level[0]
}

/// Parses hex addresses; None if any is not a 64-character hex string.
pub fn parse(addresses: &[String]) -> Option<Vec<[u8; 32]>> {
    addresses
        .iter()
        .map(|a| blake3::Hash::from_hex(a).ok().map(|h| *h.as_bytes()))
        .collect()
}

pub fn root_hex(addresses: &[String]) -> Option<String> {
    parse(addresses).map(|a| blake3::Hash::from_bytes(root(&a)).to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_depends_on_every_leaf_and_their_order() {
        let leaves: Vec<[u8; 32]> = (0..5u8).map(|i| *blake3::hash(&[i]).as_bytes()).collect();
        let r = root(&leaves);
        let mut swapped = leaves.clone();
        swapped.swap(0, 1);
        assert_ne!(r, root(&swapped));
        assert_ne!(r, root(&leaves[..4]));
        assert_eq!(root(&leaves[..1]), leaves[0]);
        assert_eq!(root(&[]), *blake3::hash(b"").as_bytes());
    }
}
