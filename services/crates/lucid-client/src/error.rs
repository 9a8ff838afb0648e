/// Why a call to a peer failed. Each variant says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{peer} URL {url:?} is invalid: {reason}")]
    InvalidUrl {
        peer: String,
        url: String,
        reason: String,
    },
    #[error("{peer} is not configured: set {variable}")]
    NotConfigured { peer: String, variable: String },
    /// `body`: the peer's answer (its own message for the client, if any).
    #[error("{peer} has no {path}")]
    NotFound {
        peer: String,
        path: String,
        body: String,
    },
    #[error("{peer} refused the request ({status}): {body}")]
    Rejected {
        peer: String,
        status: u16,
        body: String,
    },
    /// A 5xx that retrying will not change (500, 501, ...): the peer failed on this request.
    #[error("{peer} failed on the request ({status})")]
    Failed { peer: String, status: u16 },
    #[error("{peer} failed after {attempts} attempt(s): {last}")]
    Unavailable {
        peer: String,
        attempts: u32,
        last: String,
    },
    #[error("invalid setting {variable}={value:?}: {reason}")]
    InvalidSetting {
        variable: String,
        value: String,
        reason: String,
    },
    #[error("cannot sign a service token: {0}")]
    Token(String),
    /// The streamed request body failed on our side (stalled, cut short, over a limit):
    /// the caller's client is at fault, not the peer.
    #[error("the request body to {peer} failed: {reason}")]
    Body {
        peer: String,
        stalled: bool,
        reason: String,
    },
    /// Never carries the key itself.
    #[error("JWT_SECRET_KEY {0}")]
    InvalidKey(&'static str),
}

impl ClientError {
    /// A 4xx from the peer: retrying would get the same answer.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            ClientError::NotFound { .. }
                | ClientError::Rejected {
                    status: 400..=499,
                    ..
                }
        )
    }
}
