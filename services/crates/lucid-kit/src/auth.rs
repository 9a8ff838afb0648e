//! Accepts a request only with a token signed for this service (see `lucid_client::token`),
//! and hands its claims to the handler as a request extension.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use lucid_client::token::{self, Expect};

#[derive(Clone)]
pub struct TokenCheck {
    pub key: Arc<Vec<u8>>,
    pub expect: Expect,
}

impl TokenCheck {
    /// Service tokens for `service` from the named callers: they live 60 s, so more than
    /// five minutes is refused.
    pub fn service(key: Vec<u8>, service: &str, callers: &[&str]) -> Self {
        Self {
            key: Arc::new(key),
            expect: Expect {
                audience: Some(service.into()),
                issuers: callers.iter().map(|c| c.to_string()).collect(),
                max_lifetime: 300,
            },
        }
    }
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
    mut request: Request<Body>,
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
    match token::verify(bearer, &check.key, &check.expect, token::now()) {
        Ok(claims) => {
            request.extensions_mut().insert(claims);
            next.run(request).await
        }
        Err(e) => unauthorized(&e.to_string()),
    }
}
