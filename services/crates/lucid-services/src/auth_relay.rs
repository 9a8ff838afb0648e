//! The api-gateway's `/auth/*`: relayed to lucid-auth-service as they come (method, path,
//! JSON body, the client's bearer), so clients need one address. Not a `PeerClient` call:
//! the answer's status and its `Retry-After` and `WWW-Authenticate` headers must reach the
//! client unchanged, and nothing here is retried (a login is not idempotent).
//!
//! The client's address goes along in `X-Forwarded-For` (set here, never passed on from the
//! client), vouched for by a 60-second service token in `X-Lucid-Gateway-Token`: the auth
//! service counts failed logins per address and must not trust an address a client names.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use lucid_client::token::{self, Claims};
use lucid_client::{ClientConfig, ClientError, IntegrationManager, ServiceUrl};

use crate::auth::{FORWARDED_FOR, FORWARDED_TOKEN, MAX_BODY_BYTES, SERVICE};
use crate::error::ServiceError;

/// The auth service's answers are small (a user list is the largest).
const MAX_ANSWER_BYTES: usize = 4 << 20;

pub struct AuthRelay {
    base: Option<ServiceUrl>,
    http: reqwest::Client,
    key: Option<Vec<u8>>,
}

impl AuthRelay {
    /// From `LUCID_AUTH_SERVICE_URL`; unset, `/auth/*` answers 503.
    pub fn from_env(config: &ClientConfig) -> Result<Self, ClientError> {
        let variable = IntegrationManager::variable(SERVICE);
        let base = match std::env::var(&variable) {
            Ok(raw) if !raw.trim().is_empty() => {
                Some(ServiceUrl::parse(SERVICE, &raw, config.environment)?)
            }
            _ => None,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.total_timeout)
            .build()
            .map_err(|e| ClientError::InvalidSetting {
                variable: "http client".into(),
                value: String::new(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            base,
            http,
            key: config.signing_key.clone(),
        })
    }

    pub fn configured(&self) -> bool {
        self.base.is_some()
    }

    fn forwarding_token(&self) -> Option<String> {
        let key = self.key.as_ref()?;
        let now = token::now();
        let claims = Claims {
            iss: "api-gateway".into(),
            sub: "api-gateway".into(),
            aud: SERVICE.into(),
            iat: now,
            nbf: None,
            exp: now + 60,
            user: None,
        };
        token::sign(&claims, key).ok()
    }
}

pub fn routes(relay: Arc<AuthRelay>) -> Router {
    Router::new()
        .route("/auth/{*rest}", any(forward))
        .with_state(relay)
}

async fn forward(
    State(relay): State<Arc<AuthRelay>>,
    request: Request,
) -> Result<Response, ServiceError> {
    let Some(base) = &relay.base else {
        return Err(ServiceError::Unavailable(format!(
            "{SERVICE} is not configured: set {}",
            IntegrationManager::variable(SERVICE)
        )));
    };
    let (parts, body) = request.into_parts();
    let body = crate::auth::read_limited(&parts.headers, body, MAX_BODY_BYTES).await?;
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/auth");
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes())
        .map_err(|_| ServiceError::BadRequest("unknown method".into()))?;
    let mut outgoing = relay.http.request(method, base.join(path)).body(body);
    for name in [header::CONTENT_TYPE, header::AUTHORIZATION, header::ACCEPT] {
        if let Some(v) = parts.headers.get(&name) {
            outgoing = outgoing.header(name.as_str(), v.as_bytes());
        }
    }
    if let Some(id) = lucid_client::request_id::current() {
        outgoing = outgoing.header(lucid_client::request_id::HEADER, id);
    }
    if let (Some(peer), Some(vouch)) = (
        parts.extensions.get::<ConnectInfo<SocketAddr>>(),
        relay.forwarding_token(),
    ) {
        outgoing = outgoing
            .header(FORWARDED_FOR, peer.0.ip().to_string())
            .header(FORWARDED_TOKEN, vouch);
    }
    let answer = outgoing
        .send()
        .await
        .map_err(|e| ServiceError::Unavailable(format!("{SERVICE}: {e}")))?;
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    // Its 5xx says "internal error" with its request id (ours, passed on): no detail to
    // add, and none to leak.
    if status == StatusCode::SERVICE_UNAVAILABLE {
        return Err(ServiceError::Unavailable(format!(
            "{SERVICE} answered {status}"
        )));
    }
    if status.is_server_error() {
        return Err(ServiceError::BadGateway(format!(
            "{SERVICE} answered {status}"
        )));
    }
    let mut headers = axum::http::HeaderMap::new();
    for name in [
        header::CONTENT_TYPE,
        header::RETRY_AFTER,
        header::WWW_AUTHENTICATE,
    ] {
        if let Some(v) = answer.headers().get(name.as_str())
            && let Ok(v) = HeaderValue::from_bytes(v.as_bytes())
        {
            headers.insert(name, v);
        }
    }
    if answer
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err(ServiceError::BadGateway(format!(
            "{SERVICE} answered too much"
        )));
    }
    let bytes = answer
        .bytes()
        .await
        .map_err(|e| ServiceError::Unavailable(format!("{SERVICE}: {e}")))?;
    Ok((status, headers, bytes).into_response())
}
