//! lucid-auth-service (port 8089, foundation phase): users in MongoDB, passwords hashed with
//! Argon2id, logins as refresh-token families in Redis, and the only service that can mint
//! a client token (Ed25519, `client_token`). Clients reach it through the api-gateway's
//! `/auth/*` (or on its own port).
//!
//! - `POST /auth/login` {username, password} → access token (minutes, for the gateway) and
//!   an opaque refresh token;
//! - `POST /auth/refresh` {refresh_token} → the next pair; the presented token is spent,
//!   and presenting a spent one revokes the whole login;
//! - `POST /auth/logout` {refresh_token} or a bearer access token → ends the login;
//! - `GET /auth/me` (bearer) → the user;
//! - admin only: `GET/POST /auth/users`, `POST /auth/users/{id}/disable|enable|password`.
//!
//! The initial administrator comes from a Secret (`LUCID_ADMIN_PASSWORD` or
//! `LUCID_ADMIN_PASSWORD_FILE`) on the first start that finds none; its password is never
//! logged.

pub mod kv;
pub mod password;
pub mod sessions;
pub mod throttle;
pub mod username;
pub mod users;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mongodb::bson::doc;
use prometheus_client::metrics::counter::Counter;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::client_token::{self, ClientClaims, SigningKey, Verifier};
use crate::error::ServiceError;
use crate::openapi::NO_USERS;
use kv::Kv;
use password::{Cost, Passwords};
use sessions::{Lifetimes, Rotated, Sessions};
use throttle::{Policy, Throttle};
use users::{User, UserView, Users};

/// The service's name: its tokens' `iss`, its settings' prefix.
pub const SERVICE: &str = "lucid-auth-service";

/// Largest request body: a login is well under 1 KiB; nothing here needs more.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Longest password accepted (bytes): bounds the work one request can ask of Argon2.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Shortest password accepted (characters), as NIST SP 800-63B's minimum.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Set by the api-gateway, with [`FORWARDED_TOKEN`]: the client's address.
pub const FORWARDED_FOR: &str = "x-forwarded-for";
/// A service token (HS256, `iss: api-gateway`, `aud: lucid-auth-service`) proving that
/// [`FORWARDED_FOR`] was set by the gateway and not by a client.
pub const FORWARDED_TOKEN: &str = "x-lucid-gateway-token";

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct Settings {
    #[serde(default = "default_port")]
    pub lucid_auth_service_port: u16,
    pub redis_url: String,
    pub mongodb_url: String,
    #[serde(default = "default_db")]
    pub mongodb_database: String,
    /// The private Ed25519 key (PKCS#8 PEM) client tokens are signed with; from a Secret.
    #[serde(default)]
    pub auth_signing_key: Option<lucid_kit::settings::Secret>,
    /// A file holding it instead (a mounted Secret).
    #[serde(default)]
    pub auth_signing_key_file: Option<String>,
    /// Checks the api-gateway's forwarding tokens (client addresses); optional in development.
    #[serde(default)]
    pub jwt_secret_key: Option<lucid_kit::settings::Secret>,
    #[serde(default = "default_admin")]
    pub lucid_admin_username: String,
    #[serde(default)]
    pub lucid_admin_password: Option<lucid_kit::settings::Secret>,
    #[serde(default)]
    pub lucid_admin_password_file: Option<String>,
    /// Access tokens' lifetime, seconds (at most an hour: the gateway refuses longer ones).
    #[serde(default = "default_access")]
    pub access_token_seconds: u64,
    #[serde(default = "default_refresh")]
    pub refresh_token_seconds: u64,
    #[serde(default = "default_session")]
    pub session_max_seconds: u64,
    #[serde(default = "default_memory")]
    pub argon2_memory_kib: u32,
    #[serde(default = "default_iterations")]
    pub argon2_iterations: u32,
    #[serde(default = "default_parallelism")]
    pub argon2_parallelism: u32,
    /// Password hashes at once (each holds `ARGON2_MEMORY_KIB`).
    #[serde(default = "default_hash_concurrency")]
    pub password_hash_concurrency: usize,
    #[serde(default = "default_window")]
    pub login_failure_window_seconds: u64,
    #[serde(default = "default_free")]
    pub login_free_failures: u64,
    #[serde(default = "default_max_user")]
    pub login_max_failures_per_user: u64,
    #[serde(default = "default_max_address")]
    pub login_max_failures_per_address: u64,
    #[serde(default = "default_lock")]
    pub login_lock_seconds: u64,
}

fn default_port() -> u16 {
    8089
}
fn default_db() -> String {
    "lucid".into()
}
fn default_admin() -> String {
    "admin".into()
}
fn default_access() -> u64 {
    300
}
fn default_refresh() -> u64 {
    14 * 24 * 3600
}
fn default_session() -> u64 {
    30 * 24 * 3600
}
fn default_memory() -> u32 {
    Cost::default().memory_kib
}
fn default_iterations() -> u32 {
    Cost::default().iterations
}
fn default_parallelism() -> u32 {
    Cost::default().parallelism
}
fn default_hash_concurrency() -> usize {
    2
}
fn default_window() -> u64 {
    Policy::default().window
}
fn default_free() -> u64 {
    Policy::default().free
}
fn default_max_user() -> u64 {
    Policy::default().max_per_user
}
fn default_max_address() -> u64 {
    Policy::default().max_per_address
}
fn default_lock() -> u64 {
    Policy::default().lock
}

impl Settings {
    pub fn validate(&self) -> Result<(), String> {
        if !(30..=client_token_max_lifetime()).contains(&self.access_token_seconds) {
            return Err(format!(
                "ACCESS_TOKEN_SECONDS={} must be from 30 to 3600 (the gateway refuses longer tokens)",
                self.access_token_seconds
            ));
        }
        if self.refresh_token_seconds < 60 || self.session_max_seconds < self.refresh_token_seconds
        {
            return Err("REFRESH_TOKEN_SECONDS must be at least 60 and SESSION_MAX_SECONDS at least REFRESH_TOKEN_SECONDS".into());
        }
        if !(1..=64).contains(&self.password_hash_concurrency) {
            return Err("PASSWORD_HASH_CONCURRENCY must be from 1 to 64".into());
        }
        let p = self.policy();
        if p.window == 0 || p.lock == 0 || p.max_per_user == 0 || p.max_per_address == 0 {
            return Err("LOGIN_FAILURE_WINDOW_SECONDS, LOGIN_LOCK_SECONDS and LOGIN_MAX_FAILURES_* must be at least 1".into());
        }
        self.cost().check().map_err(|e| e.to_string())
    }

    pub fn cost(&self) -> Cost {
        Cost {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: self.argon2_parallelism,
        }
    }

    pub fn policy(&self) -> Policy {
        Policy {
            window: self.login_failure_window_seconds,
            free: self.login_free_failures,
            max_per_user: self.login_max_failures_per_user,
            max_per_address: self.login_max_failures_per_address,
            lock: self.login_lock_seconds,
        }
    }

    pub fn lifetimes(&self) -> Lifetimes {
        Lifetimes {
            refresh: self.refresh_token_seconds,
            session: self.session_max_seconds,
        }
    }

    /// The signing key from the setting or its file; its text is never in an error.
    pub fn signing_key(&self) -> Result<SigningKey, String> {
        let text = match (&self.auth_signing_key, &self.auth_signing_key_file) {
            (Some(k), _) if !k.expose().trim().is_empty() => k.expose().to_string(),
            (_, Some(path)) if !path.is_empty() => std::fs::read_to_string(path)
                .map_err(|e| format!("AUTH_SIGNING_KEY_FILE {path}: {e}"))?,
            _ => {
                return Err(
                    "AUTH_SIGNING_KEY (or AUTH_SIGNING_KEY_FILE) is unset: the auth service signs client tokens with it (`lucid-auth-service --new-signing-key` makes one)".into(),
                );
            }
        };
        SigningKey::from_pem(&text).map_err(|e| e.to_string())
    }

    /// The initial administrator's password, if the Secret gives one.
    pub fn admin_password(&self) -> Result<Option<String>, String> {
        if let Some(p) = &self.lucid_admin_password
            && !p.expose().is_empty()
        {
            return Ok(Some(p.expose().to_string()));
        }
        match &self.lucid_admin_password_file {
            Some(path) if !path.is_empty() => std::fs::read_to_string(path)
                .map(|t| Some(t.trim_end_matches(['\r', '\n']).to_string()))
                .map_err(|e| format!("LUCID_ADMIN_PASSWORD_FILE {path}: {e}")),
            _ => Ok(None),
        }
    }
}

fn client_token_max_lifetime() -> u64 {
    crate::gateway::CLIENT_TOKEN_MAX_LIFETIME
}

#[derive(Clone, Debug, Default)]
pub struct AuthMetrics {
    pub logins: Counter,
    pub login_failures: Counter,
    pub throttled: Counter,
    pub refresh_reuse: Counter,
    pub redis_errors: Counter,
    pub mongo_errors: Counter,
}

impl AuthMetrics {
    pub fn register(&self, app: lucid_kit::App) -> lucid_kit::App {
        [
            ("auth_logins", "Successful logins", &self.logins),
            (
                "auth_login_failures",
                "Logins refused for an unknown user, a wrong password or a disabled user",
                &self.login_failures,
            ),
            (
                "auth_login_throttled",
                "Logins answered 429 (slowed or locked)",
                &self.throttled,
            ),
            (
                "auth_refresh_reuse",
                "Spent refresh tokens presented again (their login was revoked)",
                &self.refresh_reuse,
            ),
            ("redis_errors", "Failed Redis commands", &self.redis_errors),
            (
                "mongodb_errors",
                "Failed MongoDB operations",
                &self.mongo_errors,
            ),
        ]
        .into_iter()
        .fold(app, |app, (name, help, counter)| {
            app.register(name, help, counter.clone())
        })
    }
}

pub struct AuthState {
    pub users: Users,
    pub kv: Kv,
    pub passwords: Passwords,
    pub key: SigningKey,
    pub verifier: Verifier,
    pub access_seconds: u64,
    pub lifetimes: Lifetimes,
    pub policy: Policy,
    /// Checks the gateway's forwarding token; None: `X-Forwarded-For` is never trusted.
    pub forwarding: Option<lucid_kit::auth::TokenCheck>,
    pub metrics: AuthMetrics,
}

impl AuthState {
    fn sessions(&self) -> Sessions<'_> {
        Sessions {
            kv: &self.kv,
            lifetimes: self.lifetimes,
        }
    }

    fn throttle(&self) -> Throttle<'_> {
        Throttle {
            kv: &self.kv,
            policy: self.policy,
        }
    }
}

/// The address brute-force limits count against.
#[derive(Clone, Debug)]
pub struct ClientAddress(pub String);

pub fn routes(state: Arc<AuthState>) -> Router {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .route("/auth/me", get(me))
        .route("/auth/users", get(list_users).post(create_user))
        .route("/auth/users/{id}/disable", post(disable_user))
        .route("/auth/users/{id}/enable", post(enable_user))
        .route("/auth/users/{id}/password", post(reset_password))
        .route("/auth/jwks.json", get(jwks))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            client_address,
        ))
        .with_state(state)
}

/// The client's address: the TCP peer's, or, on a request the api-gateway forwarded with a
/// good forwarding token, the one it names. A client's own `X-Forwarded-For` counts for
/// nothing (it would let one address pose as many).
async fn client_address(
    State(s): State<Arc<AuthState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into());
    let forwarded = s.forwarding.as_ref().and_then(|check| {
        let token = request.headers().get(FORWARDED_TOKEN)?.to_str().ok()?;
        lucid_client::token::verify(token, &check.key, &check.expect, lucid_client::token::now())
            .ok()?;
        let named = request.headers().get(FORWARDED_FOR)?.to_str().ok()?;
        named
            .trim()
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| ip.to_string())
    });
    request
        .extensions_mut()
        .insert(ClientAddress(forwarded.unwrap_or(peer)));
    next.run(request).await
}

/// The body as JSON of `T`: 413 past [`MAX_BODY_BYTES`], 400 naming what is wrong.
async fn json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ServiceError> {
    let bytes = read_limited(headers, body, MAX_BODY_BYTES).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ServiceError::BadRequest(format!("the body is not the JSON expected: {e}")))
}

/// Bodies past their limit but at most this long are read to their end (and dropped)
/// before the 413: a server that answers and closes with the body unread makes the kernel
/// reset the connection, and the client often never sees the answer.
const DRAIN_BYTES: usize = 1 << 20;

/// The body, at most `limit` bytes (413 beyond), kept in memory only up to `limit`.
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<axum::body::Bytes, ServiceError> {
    use futures::StreamExt;
    let too_large = || ServiceError::TooLarge { limit };
    // Too long to be worth reading: answered at once.
    crate::announced_length(headers, DRAIN_BYTES).map_err(|_| too_large())?;
    let mut stream = body.into_data_stream();
    let (mut kept, mut seen) = (Vec::new(), 0usize);
    while let Some(piece) = stream.next().await {
        let piece = piece
            .map_err(|_| ServiceError::BadRequest("the body was cut short or unreadable".into()))?;
        seen += piece.len();
        if seen > DRAIN_BYTES {
            break;
        }
        if seen <= limit {
            kept.extend_from_slice(&piece);
        }
    }
    if seen > limit {
        return Err(too_large());
    }
    Ok(kept.into())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    /// For the api-gateway (`Authorization: Bearer ...`): EdDSA JWT, `aud: api-gateway`.
    pub access_token: String,
    pub token_type: &'static str,
    /// Seconds the access token lives.
    pub expires_in: u64,
    /// Opaque; good once, for `POST /auth/refresh`.
    pub refresh_token: String,
    pub refresh_expires_in: u64,
    pub user: UserView,
}

/// The one answer for an unknown user, a wrong password and a disabled user.
fn bad_credentials() -> Response {
    lucid_kit::auth::unauthorized("unknown user or wrong password")
}

fn too_many(seconds: u64) -> Response {
    let seconds = seconds.max(1);
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(
            header::RETRY_AFTER,
            HeaderValue::from_str(&seconds.to_string()).unwrap_or(HeaderValue::from_static("1")),
        )],
        axum::Json(serde_json::json!({
            "error": format!("too many failed logins; retry in {seconds} s"),
            "request_id": lucid_client::request_id::current(),
        })),
    )
        .into_response()
}

impl AuthState {
    /// Signs an access token and starts (or continues) the login `family`.
    fn pair(
        &self,
        user: &User,
        family: &str,
        refresh_token: String,
    ) -> Result<TokenPair, ServiceError> {
        let now = lucid_client::token::now();
        let claims = ClientClaims {
            iss: client_token::ISSUER.into(),
            sub: user.user_id.clone(),
            aud: client_token::AUDIENCE.into(),
            iat: now,
            exp: now + self.access_seconds,
            nbf: None,
            name: user.username.clone(),
            admin: user.admin,
            sid: family.into(),
        };
        let access_token = self
            .key
            .sign(&claims)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        Ok(TokenPair {
            access_token,
            token_type: "Bearer",
            expires_in: self.access_seconds,
            refresh_token,
            refresh_expires_in: self.lifetimes.refresh,
            user: UserView::from(user),
        })
    }

    /// The caller's claims and stored user, refused (401) unless the token is good and the
    /// user still exists, is enabled and was not reset since the token was signed.
    async fn caller(&self, headers: &HeaderMap) -> Result<(ClientClaims, User), Response> {
        let unauthorized = |m: &str| lucid_kit::auth::unauthorized(m);
        let token =
            client_token::bearer(headers).ok_or_else(|| unauthorized("missing bearer token"))?;
        let claims = self
            .verifier
            .verify(token, lucid_client::token::now())
            .map_err(|e| unauthorized(&e.to_string()))?;
        let user = self
            .users
            .by_id(&claims.sub)
            .await
            .map_err(IntoResponse::into_response)?
            .filter(|u| !u.disabled && claims.iat >= u.sessions_valid_after)
            .ok_or_else(|| unauthorized("the token's user is gone, disabled or was reset"))?;
        Ok((claims, user))
    }

    async fn admin(&self, headers: &HeaderMap) -> Result<User, Response> {
        let (_, user) = self.caller(headers).await?;
        if !user.admin {
            return Err(ServiceError::Forbidden("administrators only".into()).into_response());
        }
        Ok(user)
    }
}

#[utoipa::path(post, path = "/auth/login", request_body = Credentials, security(()),
    responses((status = 200, body = TokenPair), (status = 400, body = crate::openapi::ErrorBody), (status = 401, description = "unknown user, wrong password or disabled user: one answer", body = crate::openapi::ErrorBody), (status = 413, body = crate::openapi::ErrorBody), (status = 429, description = "too many failures: see Retry-After", body = crate::openapi::ErrorBody)))]
pub(crate) async fn login(
    State(s): State<Arc<AuthState>>,
    axum::Extension(address): axum::Extension<ClientAddress>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ServiceError> {
    let credentials: Credentials = json_body(&headers, body).await?;
    if credentials.password.len() > MAX_PASSWORD_BYTES {
        return Err(ServiceError::BadRequest(format!(
            "a password has at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    // A name that cannot be a username still gets the unknown-user answer and counts.
    let name = username::canonical(&credentials.username)
        .unwrap_or_else(|_| format!("invalid-{}", credentials.username.len()));
    let throttle = s.throttle();
    let wait = throttle.wait(&name, &address.0).await?;
    if wait > 0 {
        s.metrics.throttled.inc();
        return Ok(too_many(wait));
    }
    let user = s.users.by_name(&name).await?;
    // Unknown user: the dummy hash, so the answer takes as long as a wrong password.
    let matched = s
        .passwords
        .verify(
            credentials.password,
            user.as_ref().map(|u| u.password_hash.clone()),
        )
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    let user = match user {
        Some(u) if matched && !u.disabled => u,
        _ => {
            s.metrics.login_failures.inc();
            throttle.failed(&name, &address.0).await?;
            return Ok(bad_credentials());
        }
    };
    throttle.succeeded(&name, &address.0).await?;
    let family = sessions::new_family_id();
    let refresh = s
        .sessions()
        .start(&user.user_id, &family, lucid_client::token::now())
        .await?;
    s.metrics.logins.inc();
    Ok(axum::Json(s.pair(&user, &family, refresh)?).into_response())
}

#[utoipa::path(post, path = "/auth/refresh", request_body = RefreshRequest, security(()),
    responses((status = 200, body = TokenPair), (status = 400, body = crate::openapi::ErrorBody), (status = 401, description = "unknown, spent (the login is now revoked), revoked or expired", body = crate::openapi::ErrorBody), (status = 413, body = crate::openapi::ErrorBody)))]
pub(crate) async fn refresh(
    State(s): State<Arc<AuthState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ServiceError> {
    let request: RefreshRequest = json_body(&headers, body).await?;
    let sessions = s.sessions();
    match sessions.rotate(&request.refresh_token).await? {
        Rotated::Next {
            token,
            family,
            user_id,
            created,
        } => {
            let user = s
                .users
                .by_id(&user_id)
                .await?
                .filter(|u| !u.disabled && created >= u.sessions_valid_after);
            match user {
                Some(user) => Ok(axum::Json(s.pair(&user, &family, token)?).into_response()),
                None => {
                    sessions.end(&family).await?;
                    Ok(lucid_kit::auth::unauthorized(
                        "the login's user is gone, disabled or was reset",
                    ))
                }
            }
        }
        Rotated::Reused { family } => {
            s.metrics.refresh_reuse.inc();
            tracing::warn!(%family, "a spent refresh token was presented again: the login is revoked");
            Ok(lucid_kit::auth::unauthorized(
                "the refresh token was already used: the login is revoked, log in again",
            ))
        }
        Rotated::Revoked | Rotated::Unknown => Ok(lucid_kit::auth::unauthorized(
            "unknown, expired or revoked refresh token",
        )),
    }
}

#[derive(Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct LogoutRequest {
    #[serde(default)]
    pub refresh_token: Option<String>,
}

#[utoipa::path(post, path = "/auth/logout", request_body = LogoutRequest,
    responses((status = 204, description = "the login is ended (its refresh tokens are dead; access tokens live out their minutes)"), (status = 401, body = crate::openapi::ErrorBody)))]
pub(crate) async fn logout(
    State(s): State<Arc<AuthState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ServiceError> {
    // The body is optional here: none means "the access token's login".
    let bytes = read_limited(&headers, body, MAX_BODY_BYTES).await?;
    let request: LogoutRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        LogoutRequest::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| {
            ServiceError::BadRequest(format!("the body is not the JSON expected: {e}"))
        })?
    };
    let sessions = s.sessions();
    if let Some(token) = request.refresh_token.filter(|t| !t.is_empty()) {
        if sessions.end_by_token(&token).await? {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        return Ok(lucid_kit::auth::unauthorized("unknown refresh token"));
    }
    match s.caller(&headers).await {
        Ok((claims, _)) if !claims.sid.is_empty() => {
            sessions.end(&claims.sid).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Ok(_) => Ok(lucid_kit::auth::unauthorized("the token names no login")),
        Err(response) => Ok(response),
    }
}

#[utoipa::path(get, path = "/auth/me", responses((status = 200, body = UserView), (status = 401, body = crate::openapi::ErrorBody)))]
pub(crate) async fn me(State(s): State<Arc<AuthState>>, headers: HeaderMap) -> Response {
    match s.caller(&headers).await {
        Ok((_, user)) => axum::Json(UserView::from(&user)).into_response(),
        Err(response) => response,
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub admin: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    pub password: String,
}

fn check_password(password: &str) -> Result<(), ServiceError> {
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(ServiceError::BadRequest(format!(
            "a password has {MIN_PASSWORD_CHARS} characters to {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Makes a user (used by the admin route and the first start).
pub async fn create(
    s: &AuthState,
    name: &str,
    password: String,
    admin: bool,
) -> Result<Option<User>, ServiceError> {
    let canonical =
        username::canonical(name).map_err(|e| ServiceError::BadRequest(e.to_string()))?;
    check_password(&password)?;
    let password_hash = s
        .passwords
        .hash(password)
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    let now = lucid_client::token::now();
    let user = User {
        canonical,
        user_id: users::new_user_id(),
        username: name.trim().to_string(),
        password_hash,
        admin,
        disabled: false,
        sessions_valid_after: 0,
        created_at: now,
    };
    Ok(s.users.create(&user).await?.then_some(user))
}

#[utoipa::path(post, path = "/auth/users", request_body = NewUser,
    responses((status = 201, body = UserView), (status = 400, body = crate::openapi::ErrorBody), (status = 401, body = crate::openapi::ErrorBody), (status = 403, body = crate::openapi::ErrorBody), (status = 409, description = "the name (after normalisation) is taken", body = crate::openapi::ErrorBody)))]
pub(crate) async fn create_user(
    State(s): State<Arc<AuthState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ServiceError> {
    if let Err(r) = s.admin(&headers).await {
        return Ok(r);
    }
    let new: NewUser = json_body(&headers, body).await?;
    match create(&s, &new.username, new.password, new.admin).await? {
        Some(user) => Ok((StatusCode::CREATED, axum::Json(UserView::from(&user))).into_response()),
        None => Err(ServiceError::Conflict(
            "a user of that name (compared after Unicode normalisation and case folding) exists"
                .into(),
        )),
    }
}

#[utoipa::path(get, path = "/auth/users", responses((status = 200, body = Vec<UserView>), (status = 401, body = crate::openapi::ErrorBody), (status = 403, body = crate::openapi::ErrorBody)))]
pub(crate) async fn list_users(
    State(s): State<Arc<AuthState>>,
    headers: HeaderMap,
) -> Result<Response, ServiceError> {
    if let Err(r) = s.admin(&headers).await {
        return Ok(r);
    }
    Ok(axum::Json(s.users.list().await?).into_response())
}

async fn set_user(
    s: &AuthState,
    headers: &HeaderMap,
    id: &str,
    set: mongodb::bson::Document,
) -> Result<Response, ServiceError> {
    if let Err(r) = s.admin(headers).await {
        return Ok(r);
    }
    if !s.users.update(id, set).await? {
        return Err(ServiceError::NotFound(format!("no user {id}")));
    }
    let user = s
        .users
        .by_id(id)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no user {id}")))?;
    Ok(axum::Json(UserView::from(&user)).into_response())
}

/// Ends every login of the user now: families begun before this are refused.
fn sessions_end_now() -> i64 {
    lucid_client::token::now() as i64 + 1
}

#[utoipa::path(post, path = "/auth/users/{id}/disable", params(("id" = String, Path)),
    responses((status = 200, description = "disabled; every login of the user ended", body = UserView), (status = 401, body = crate::openapi::ErrorBody), (status = 403, body = crate::openapi::ErrorBody), (status = 404, body = crate::openapi::ErrorBody)))]
pub(crate) async fn disable_user(
    State(s): State<Arc<AuthState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ServiceError> {
    set_user(
        &s,
        &headers,
        &id,
        doc! {"disabled": true, "sessions_valid_after": sessions_end_now()},
    )
    .await
}

#[utoipa::path(post, path = "/auth/users/{id}/enable", params(("id" = String, Path)),
    responses((status = 200, body = UserView), (status = 401, body = crate::openapi::ErrorBody), (status = 403, body = crate::openapi::ErrorBody), (status = 404, body = crate::openapi::ErrorBody)))]
pub(crate) async fn enable_user(
    State(s): State<Arc<AuthState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ServiceError> {
    set_user(&s, &headers, &id, doc! {"disabled": false}).await
}

#[utoipa::path(post, path = "/auth/users/{id}/password", params(("id" = String, Path)), request_body = NewPassword,
    responses((status = 200, description = "reset; every login of the user ended", body = UserView), (status = 400, body = crate::openapi::ErrorBody), (status = 401, body = crate::openapi::ErrorBody), (status = 403, body = crate::openapi::ErrorBody), (status = 404, body = crate::openapi::ErrorBody)))]
pub(crate) async fn reset_password(
    State(s): State<Arc<AuthState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ServiceError> {
    if let Err(r) = s.admin(&headers).await {
        return Ok(r);
    }
    let new: NewPassword = json_body(&headers, body).await?;
    check_password(&new.password)?;
    let hash = s
        .passwords
        .hash(new.password)
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    set_user(
        &s,
        &headers,
        &id,
        doc! {"password_hash": hash, "sessions_valid_after": sessions_end_now()},
    )
    .await
}

/// The public key set (for operators to compare with the gateway's `AUTH_PUBLIC_KEYS`).
#[utoipa::path(get, path = "/auth/jwks.json", security(()), responses((status = 200, description = "the public keys client tokens are signed with (JWKS, RFC 7517/8037)")))]
pub(crate) async fn jwks(State(s): State<Arc<AuthState>>) -> Response {
    axum::Json(s.key.jwks()).into_response()
}

/// Creates the initial administrator when there is none, from the Secret's password;
/// retried until MongoDB answers, then sets `done` (a `/ready` check: user management is
/// not ready before). The password is never logged.
pub async fn bootstrap_admin(
    s: Arc<AuthState>,
    name: String,
    password: Option<String>,
    done: Arc<std::sync::atomic::AtomicBool>,
) {
    ensure_admin(&s, &name, password).await;
    done.store(true, std::sync::atomic::Ordering::Release);
}

async fn ensure_admin(s: &AuthState, name: &str, password: Option<String>) {
    let mut wait = std::time::Duration::from_millis(200);
    loop {
        match s.users.any_admin().await {
            Ok(true) => return,
            Ok(false) => {
                let Some(password) = password.clone() else {
                    tracing::warn!(
                        "no administrator exists and LUCID_ADMIN_PASSWORD is unset: nobody can manage users until it is set and the service restarted"
                    );
                    return;
                };
                match create(s, name, password, true).await {
                    Ok(Some(_)) => {
                        tracing::info!(username = %name, "initial administrator created");
                        return;
                    }
                    Ok(None) => {
                        tracing::warn!(username = %name, "a user of the initial administrator's name exists but is no administrator; not changed");
                        return;
                    }
                    Err(ServiceError::BadRequest(why)) => {
                        tracing::error!(reason = %why, "the initial administrator's name or password is unusable");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot create the initial administrator yet")
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot look for an administrator yet"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(std::time::Duration::from_secs(10));
    }
}

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "lucid-auth-service", description = "Users, logins and client tokens. Login and refresh need no token; /auth/me, /auth/logout (without a refresh token) and /auth/users* take the access token as Bearer (EdDSA JWT, aud api-gateway, iss lucid-auth-service); /auth/users* need an administrator."),
    paths(login, refresh, logout, me, create_user, list_users, disable_user, enable_user, reset_password, jwks),
    components(schemas(crate::openapi::ErrorBody, Credentials, RefreshRequest, LogoutRequest, TokenPair, UserView, NewUser, NewPassword)),
    modifiers(&BearerScheme, &NO_USERS),
    security(("bearer" = []))
)]
pub struct AuthApi;
