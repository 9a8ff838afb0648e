//! The request id of the request being served, carried through peer calls.
//!
//! lucid-kit's middleware sets it for the handler's task (accepted from `X-Request-Id` or
//! made); [`PeerClient`](crate::PeerClient) sends it on to peers, so one id follows a
//! request through every service's log lines.

pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request this task serves, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `f` with `id` as the current request id.
pub async fn scope<F: std::future::Future>(id: String, f: F) -> F::Output {
    CURRENT.scope(id, f).await
}

/// An id a client sent, if it is one we can log safely: 1..=128 visible ASCII characters
/// from a small set (no spaces, quotes or control characters that could forge log lines).
pub fn accept(raw: &str) -> Option<String> {
    let ok = !raw.is_empty()
        && raw.len() <= 128
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| raw.to_string())
}

/// A fresh id: 16 random bytes in hex.
pub fn new() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_ids_are_accepted() {
        assert_eq!(accept("abc-123_x.y:z").as_deref(), Some("abc-123_x.y:z"));
        for bad in ["", "a b", "x\"y", "line\nbreak", &"x".repeat(129)] {
            assert_eq!(accept(bad), None, "{bad:?}");
        }
        assert_eq!(new().len(), 32);
    }
}
