//! One peer service.

use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::token::{self, Claims};
use crate::url::ServiceUrl;

/// How long a service token lives: long enough for one call with retries, short enough that
/// a leaked one is soon useless.
const TOKEN_LIFETIME: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct PeerClient {
    name: String,
    base: ServiceUrl,
    http: reqwest::Client,
    config: ClientConfig,
}

impl PeerClient {
    pub fn new(name: &str, base: ServiceUrl, config: ClientConfig) -> Result<Self, ClientError> {
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
            name: name.into(),
            base,
            http,
            config,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `Authorization: Bearer <token>` signed for this peer, or None without a key.
    fn authorization(&self) -> Result<Option<String>, ClientError> {
        let Some(key) = &self.config.signing_key else {
            return Ok(None);
        };
        let now = token::now();
        let claims = Claims {
            iss: self.config.caller.clone(),
            sub: self.config.caller.clone(),
            aud: self.name.clone(),
            iat: now,
            exp: now + TOKEN_LIFETIME.as_secs(),
        };
        token::sign(&claims, key)
            .map(|t| Some(format!("Bearer {t}")))
            .map_err(|e| ClientError::Token(e.to_string()))
    }

    /// Sends a request with a body that can be sent again, retrying transient failures:
    /// connection errors, timeouts, 5xx and 429. 4xx are answers, not failures.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        content_type: Option<&str>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let url = self.base.join(path);
        let mut last = String::new();
        let attempts = self.config.retry.retries + 1;
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(self.config.retry.delay(attempt - 1)).await;
            }
            let mut request = self.http.request(method.clone(), &url);
            if let Some(auth) = self.authorization()? {
                request = request.header(reqwest::header::AUTHORIZATION, auth);
            }
            if let Some(ct) = content_type {
                request = request.header(reqwest::header::CONTENT_TYPE, ct);
            }
            if let Some(body) = &body {
                request = request.body(body.clone());
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let bytes = response.bytes().await.unwrap_or_default();
                    if status.is_success() {
                        return Ok((status, bytes));
                    }
                    if status == StatusCode::NOT_FOUND {
                        return Err(ClientError::NotFound {
                            peer: self.name.clone(),
                            path: path.into(),
                        });
                    }
                    if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
                        return Err(ClientError::Rejected {
                            peer: self.name.clone(),
                            status: status.as_u16(),
                            body: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
                        });
                    }
                    last = format!("HTTP {status}");
                }
                Err(e) => last = e.to_string(),
            }
            tracing::debug!(peer = %self.name, attempt, error = %last, "call failed");
        }
        Err(ClientError::Unavailable {
            peer: self.name.clone(),
            attempts,
            last,
        })
    }

    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let (_, bytes) = self.send(Method::GET, path, None, None).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Rejected {
            peer: self.name.clone(),
            status: 200,
            body: format!("unreadable JSON: {e}"),
        })
    }

    /// A streamed body cannot be replayed, so it is sent once (no retry).
    pub async fn send_stream(
        &self,
        method: Method,
        path: &str,
        body: reqwest::Body,
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self.http.request(method, self.base.join(path)).body(body);
        if let Some(auth) = self.authorization()? {
            request = request.header(reqwest::header::AUTHORIZATION, auth);
        }
        request.send().await.map_err(|e| ClientError::Unavailable {
            peer: self.name.clone(),
            attempts: 1,
            last: e.to_string(),
        })
    }
}
