//! Content addresses: lower-case hex blake3, 64 characters.

pub fn of(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

pub fn is_valid(address: &str) -> bool {
    address.len() == 64
        && address
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Session ids: 32 lower-case hex characters.
pub fn is_session_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub fn new_session_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A session id from a URL, or a 400 that says what one looks like.
pub fn require_session_id(id: &str) -> Result<(), crate::error::ServiceError> {
    if is_session_id(id) {
        Ok(())
    } else {
        Err(crate::error::ServiceError::BadRequest(format!(
            "{id:?} is not a session id (32 hex characters)"
        )))
    }
}
