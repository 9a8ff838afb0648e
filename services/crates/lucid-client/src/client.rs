//! One peer service.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::request_id;
use crate::token::{self, Claims};
use crate::url::ServiceUrl;

/// How long a service token lives: long enough for one call with retries, short enough that
/// a leaked one is soon useless.
const TOKEN_LIFETIME: Duration = Duration::from_secs(60);

tokio::task_local! {
    /// The end user a service acts for while serving a request (the gateway's client
    /// token's `sub`); signed into every service token sent meanwhile as the `user` claim.
    static ACTING_FOR: String;
}

/// Runs `f` acting for `user`: peer calls made inside carry `user` in their signed token.
pub async fn acting_for<F: std::future::Future>(user: String, f: F) -> F::Output {
    ACTING_FOR.scope(user, f).await
}

/// A streamed body's pieces.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

#[derive(Clone, Debug)]
pub struct PeerClient {
    name: String,
    base: ServiceUrl,
    /// Buffered calls: the whole attempt is bounded by `total_timeout`.
    http: reqwest::Client,
    /// Streamed calls: no total bound (a long upload is fine while it moves); every piece
    /// of the request body must come within `idle_timeout`, and the answer within the
    /// total timeout once the body is sent.
    streaming: reqwest::Client,
    config: ClientConfig,
    retries: Arc<AtomicU64>,
}

impl PeerClient {
    pub fn new(name: &str, base: ServiceUrl, config: ClientConfig) -> Result<Self, ClientError> {
        let build = |b: reqwest::ClientBuilder| {
            b.connect_timeout(config.connect_timeout)
                .build()
                .map_err(|e| ClientError::InvalidSetting {
                    variable: "http client".into(),
                    value: String::new(),
                    reason: e.to_string(),
                })
        };
        let http = build(reqwest::Client::builder().timeout(config.total_timeout))?;
        // No read timeout either: reqwest's runs while the body is still being sent.
        let streaming = build(reqwest::Client::builder())?;
        Ok(Self {
            name: name.into(),
            base,
            http,
            streaming,
            config,
            retries: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Retries made so far (for the peer-retries metric).
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
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
            nbf: None,
            exp: now + TOKEN_LIFETIME.as_secs(),
            user: ACTING_FOR.try_with(Clone::clone).ok(),
        };
        token::sign(&claims, key)
            .map(|t| Some(format!("Bearer {t}")))
            .map_err(|e| ClientError::Token(e.to_string()))
    }

    fn request(
        &self,
        client: &reqwest::Client,
        method: Method,
        path: &str,
    ) -> Result<reqwest::RequestBuilder, ClientError> {
        let mut request = client.request(method, self.base.join(path));
        if let Some(auth) = self.authorization()? {
            request = request.header(reqwest::header::AUTHORIZATION, auth);
        }
        if let Some(id) = request_id::current() {
            request = request.header(request_id::HEADER, id);
        }
        Ok(request)
    }

    /// Sends a request with a body that can be sent again, retrying transient failures
    /// (connection errors, timeouts, 502/503/504 and 429) only when the method is idempotent: a
    /// retried POST could create a second session. 4xx are answers, not failures.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        content_type: Option<&str>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let retry = method.is_idempotent();
        self.send_inner(method, path, body, content_type, retry)
            .await
    }

    /// As [`send`](Self::send), retried whatever the method: for calls the peer makes
    /// idempotent itself (a finalize that returns the stored manifest when repeated).
    pub async fn send_idempotent(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        content_type: Option<&str>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        self.send_inner(method, path, body, content_type, true)
            .await
    }

    async fn send_inner(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        content_type: Option<&str>,
        retry: bool,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let mut last = String::new();
        let attempts = if retry {
            self.config.retry.retries + 1
        } else {
            1
        };
        for attempt in 1..=attempts {
            if attempt > 1 {
                self.retries.fetch_add(1, Ordering::Relaxed);
                if let Some(hook) = &self.config.on_retry {
                    hook();
                }
                tokio::time::sleep(self.config.retry.delay(attempt - 1)).await;
            }
            let mut request = self.request(&self.http, method.clone(), path)?;
            if let Some(ct) = content_type {
                request = request.header(reqwest::header::CONTENT_TYPE, ct);
            }
            if let Some(body) = &body {
                request = request.body(body.clone());
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    // A body cut mid-read is a failure, never an empty success.
                    let bytes = match response.bytes().await {
                        Ok(b) => b,
                        Err(e) => {
                            last = format!("HTTP {status}, body unreadable: {}", e.without_url());
                            tracing::debug!(peer = %self.name, attempt, error = %last, "call failed");
                            continue;
                        }
                    };
                    if status.is_success() {
                        return Ok((status, bytes));
                    }
                    if status == StatusCode::NOT_FOUND {
                        return Err(ClientError::NotFound {
                            peer: self.name.clone(),
                            path: path.into(),
                            body: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
                        });
                    }
                    // Only overload and gateway trouble pass: a 500 is this request's fault.
                    let transient = matches!(
                        status,
                        StatusCode::TOO_MANY_REQUESTS
                            | StatusCode::BAD_GATEWAY
                            | StatusCode::SERVICE_UNAVAILABLE
                            | StatusCode::GATEWAY_TIMEOUT
                    );
                    if status.is_server_error() && !transient {
                        return Err(ClientError::Failed {
                            peer: self.name.clone(),
                            status: status.as_u16(),
                        });
                    }
                    // A 429 that retrying did not (or may not) clear is the answer: the
                    // peer holds the caller's user to its share, the client should know.
                    let last_try = attempt == attempts;
                    if status.is_client_error() && (!transient || last_try) {
                        return Err(ClientError::Rejected {
                            peer: self.name.clone(),
                            status: status.as_u16(),
                            body: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
                        });
                    }
                    last = format!("HTTP {status}");
                }
                // Never the URL: it may carry a password.
                Err(e) => last = e.without_url().to_string(),
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

    /// Streams `body` to the peer, once (a stream cannot be replayed). No total timeout: a
    /// slow upload that keeps moving succeeds. A body piece that does not come within the
    /// idle timeout fails the call; so does an answer that takes longer than the total
    /// timeout after the body was sent.
    pub async fn send_stream(
        &self,
        method: Method,
        path: &str,
        body: BodyStream,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let idle = self.config.idle_timeout;
        let failed = Arc::new(std::sync::Mutex::new(None));
        let sent = Arc::new(tokio::sync::Notify::new());
        let body = idle_bounded(body, idle, failed.clone(), sent.clone());
        let request = self
            .request(&self.streaming, method, path)?
            .body(reqwest::Body::wrap_stream(body));
        let error = |e: reqwest::Error| {
            // Our own body's failure, if that is what ended the call.
            match failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
                Some((stalled, reason)) => ClientError::Body {
                    peer: self.name.clone(),
                    stalled,
                    reason,
                },
                None => ClientError::Unavailable {
                    peer: self.name.clone(),
                    attempts: 1,
                    last: e.without_url().to_string(),
                },
            }
        };
        let total = self.config.total_timeout;
        let late = || ClientError::Unavailable {
            peer: self.name.clone(),
            attempts: 1,
            last: format!("no answer within {total:?} after the body was sent"),
        };
        let response = tokio::select! {
            // An answer that is there wins over a deadline passing in the same poll.
            biased;
            r = request.send() => r.map_err(error)?,
            () = async { sent.notified().await; tokio::time::sleep(total).await } => {
                return Err(late());
            }
        };
        let status = response.status();
        let bytes = tokio::time::timeout(total, response.bytes())
            .await
            .map_err(|_| late())?
            .map_err(error)?;
        Ok((status, bytes))
    }
}

/// Why our body failed: (stalled, reason).
type BodyFailure = Arc<std::sync::Mutex<Option<(bool, String)>>>;

/// Fails the stream when no piece comes within `idle`; notes why the body failed, or
/// that it was sent whole.
fn idle_bounded(
    body: BodyStream,
    idle: Duration,
    failed: BodyFailure,
    sent: Arc<tokio::sync::Notify>,
) -> BodyStream {
    Box::pin(futures::stream::unfold(
        (body, false),
        move |(mut body, done)| {
            let (failed, sent) = (failed.clone(), sent.clone());
            async move {
                if done {
                    return None;
                }
                let note = |stalled: bool, reason: String| {
                    *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some((stalled, reason));
                };
                match tokio::time::timeout(idle, body.next()).await {
                    Ok(Some(Ok(piece))) => Some((Ok(piece), (body, false))),
                    Ok(Some(Err(e))) => {
                        // The caller's body pacing (too slow) is a timeout too: 408.
                        note(e.kind() == std::io::ErrorKind::TimedOut, e.to_string());
                        Some((Err(e), (body, true)))
                    }
                    Ok(None) => {
                        sent.notify_one();
                        None
                    }
                    Err(_) => {
                        let reason = format!("no body data for {idle:?}");
                        note(true, reason.clone());
                        Some((
                            Err(std::io::Error::new(std::io::ErrorKind::TimedOut, reason)),
                            (body, true),
                        ))
                    }
                }
            }
        },
    ))
}
