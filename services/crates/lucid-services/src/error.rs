use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// What a request did wrong or what failed, as an HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let status = match &self {
            ServiceError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
            ServiceError::Conflict(_) => StatusCode::CONFLICT,
            ServiceError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ServiceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        (
            status,
            axum::Json(serde_json::json!({"error": self.to_string()})),
        )
            .into_response()
    }
}

impl From<lucid_client::ClientError> for ServiceError {
    fn from(e: lucid_client::ClientError) -> Self {
        match e {
            lucid_client::ClientError::NotFound { .. } => ServiceError::NotFound(e.to_string()),
            lucid_client::ClientError::Rejected {
                status: 400..=499, ..
            } => ServiceError::BadRequest(e.to_string()),
            _ => ServiceError::Unavailable(e.to_string()),
        }
    }
}
