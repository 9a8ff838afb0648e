use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// What a request did wrong or what failed, as an HTTP answer. 4xx say what to fix; 5xx
/// are logged with their detail and answered with a generic message and the request id,
/// so peer and database errors (hosts, internals) never reach a client.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the request body did not arrive in time: {0}")]
    Timeout(String),
    #[error("body larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// Over the user's own share of a limit (sessions, uploads, requests).
    #[error("{0}")]
    TooMany(String),
    /// A peer's 4xx, passed on with its status and message.
    #[error("{message}")]
    Rejected { status: u16, message: String },
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    pub fn status(&self) -> StatusCode {
        match self {
            ServiceError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ServiceError::Forbidden(_) => StatusCode::FORBIDDEN,
            ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
            ServiceError::Conflict(_) => StatusCode::CONFLICT,
            ServiceError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ServiceError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ServiceError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            ServiceError::Rejected { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST)
            }
            ServiceError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ServiceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let status = self.status();
        let request_id = lucid_client::request_id::current();
        let message = if status.is_server_error() {
            // Peer errors may quote a URL: never its password.
            let detail = lucid_client::redact::text(&self.to_string());
            tracing::error!(error = %detail, status = status.as_u16(), "request failed");
            match status {
                StatusCode::SERVICE_UNAVAILABLE => {
                    "a dependency is unavailable; retry later".to_string()
                }
                StatusCode::BAD_GATEWAY => "a peer answered wrongly; retry later".to_string(),
                _ => "internal error".to_string(),
            }
        } else {
            self.to_string()
        };
        let body = axum::Json(serde_json::json!({"error": message, "request_id": request_id}));
        if status == StatusCode::TOO_MANY_REQUESTS {
            return (status, [(axum::http::header::RETRY_AFTER, "1")], body).into_response();
        }
        (status, body).into_response()
    }
}

/// The peer's own message (JSON `{"error": ...}`) when it has one: written for the client.
fn peer_message(body: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(String::from))
}

/// A peer's 4xx reaches the client with the peer's own message, never the peer's name,
/// route or address (those are for the log).
impl From<lucid_client::ClientError> for ServiceError {
    fn from(e: lucid_client::ClientError) -> Self {
        match e {
            lucid_client::ClientError::NotFound { ref body, .. } => {
                ServiceError::NotFound(peer_message(body).unwrap_or_else(|| "not found".into()))
            }
            lucid_client::ClientError::Rejected {
                status: status @ 400..=499,
                ref body,
                ..
            } => ServiceError::Rejected {
                status,
                message: peer_message(body).unwrap_or_else(|| "the request was refused".into()),
            },
            lucid_client::ClientError::Body {
                stalled: true,
                reason,
                ..
            } => ServiceError::Timeout(format!("{reason}; nothing was recorded")),
            lucid_client::ClientError::Body { .. } => ServiceError::BadRequest(
                "the body was cut short or unreadable; nothing was recorded".into(),
            ),
            lucid_client::ClientError::Failed { .. } => ServiceError::Internal(e.to_string()),
            _ => ServiceError::Unavailable(e.to_string()),
        }
    }
}
