//! Accepts a request only with a service token signed for this service (see
//! `lucid_client::token`). Without a configured key the check is off, and says so at start.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use lucid_client::token;

#[derive(Clone)]
pub struct TokenCheck {
    pub key: Arc<Vec<u8>>,
    /// The `aud` tokens must name; None accepts any audience (client tokens).
    pub audience: Option<String>,
}

pub fn unauthorized(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(serde_json::json!({"error": message})),
    )
        .into_response()
}

pub async fn require_token(
    State(check): State<TokenCheck>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let Some(bearer) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return unauthorized("missing bearer token");
    };
    match token::verify(bearer, &check.key, check.audience.as_deref(), token::now()) {
        Ok(_) => next.run(request).await,
        Err(e) => unauthorized(&e.to_string()),
    }
}
