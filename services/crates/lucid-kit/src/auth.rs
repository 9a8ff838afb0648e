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

/// The token of an `Authorization: Bearer <token>` header; the scheme is
/// case-insensitive (RFC 7235, RFC 6750).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
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
        .and_then(bearer_token)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for v in ["Bearer abc", "bearer abc", "BEARER abc", "bEaReR  abc"] {
            assert_eq!(bearer_token(v), Some("abc"), "{v}");
        }
        for v in ["Basic abc", "Bearer", "Bearer ", "Bearerabc", "abc"] {
            assert_eq!(bearer_token(v), None, "{v}");
        }
    }
}
