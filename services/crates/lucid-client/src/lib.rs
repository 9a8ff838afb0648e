//! lucid-client: how one Lucid service calls another.
//!
//! - [`ServiceUrl`]: peer base URLs, validated (service names, never loopback, in production);
//! - [`RetryPolicy`]: exponential backoff with full jitter, from the templates' variables;
//! - [`PeerClient`]: one peer, with connect/total timeouts, retries on transient failures only
//!   (never on 4xx), 404 as its own error, and signed service tokens;
//! - [`token`]: short-lived HS256 service tokens. The Python template sent `JWT_SECRET_KEY`
//!   itself as the bearer token, so any peer (or log) saw the key; here the key only signs;
//! - [`redact`]: passwords in URLs replaced before anything is logged or answered;
//! - [`IntegrationManager`]: clients built lazily from `<NAME>_URL`, and concurrent peer
//!   health with a deadline.

mod client;
mod config;
mod error;
mod manager;
pub mod redact;
pub mod request_id;
mod retry;
pub mod token;
mod url;

pub use client::{BodyStream, PeerClient, acting_for};
pub use config::{ClientConfig, Environment, MIN_KEY_BYTES, check_key};
pub use error::ClientError;
pub use manager::{IntegrationManager, PeerHealth};
pub use retry::RetryPolicy;
pub use url::ServiceUrl;
