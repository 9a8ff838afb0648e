//! Client settings from the templates' environment variables.

use std::time::Duration;

use crate::error::ClientError;
use crate::retry::RetryPolicy;

/// `LUCID_ENV`: production unless it says development (or dev/test/local).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Environment {
    Production,
    Development,
}

impl Environment {
    pub fn from_env() -> Self {
        Self::parse(std::env::var("LUCID_ENV").ok().as_deref())
    }

    pub fn parse(value: Option<&str>) -> Self {
        match value.map(str::to_ascii_lowercase).as_deref() {
            Some("development" | "dev" | "test" | "local") => Environment::Development,
            _ => Environment::Production,
        }
    }
}

/// The longest timeout or delay a setting may ask for: an hour.
const MAX_SECONDS: f64 = 3600.0;

#[derive(Clone)]
pub struct ClientConfig {
    pub environment: Environment,
    pub connect_timeout: Duration,
    /// One buffered attempt's whole time (`SERVICE_TIMEOUT_SECONDS`, default 30).
    pub total_timeout: Duration,
    /// Streamed calls: the longest wait for one read or one body piece
    /// (`SERVICE_IDLE_TIMEOUT_SECONDS`, default the total timeout).
    pub idle_timeout: Duration,
    pub retry: RetryPolicy,
    /// Signs service tokens (`JWT_SECRET_KEY`); without it calls are unauthenticated.
    pub signing_key: Option<Vec<u8>>,
    /// This service's name, the `iss` of its tokens.
    pub caller: String,
    /// Called on every retry (the peer-retries metric).
    pub on_retry: Option<std::sync::Arc<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for ClientConfig {
    // By hand: the signing key must never reach a log line or a panic message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("environment", &self.environment)
            .field("connect_timeout", &self.connect_timeout)
            .field("total_timeout", &self.total_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("retry", &self.retry)
            .field(
                "signing_key",
                &self.signing_key.as_ref().map(|_| "<redacted>"),
            )
            .field("caller", &self.caller)
            .finish()
    }
}

/// Shortest signing key accepted in production: HS256's own strength (RFC 7518 §3.2).
pub const MIN_KEY_BYTES: usize = 32;

/// The key of the published examples (`crds/examples/environment.yaml`): known to everyone.
const PLACEHOLDER_MARKERS: &[&str] = &["change-me", "changeme"];

/// The signing key a service must run with: in production it must be set, at least
/// [`MIN_KEY_BYTES`] long and not the examples' placeholder; in development a missing key
/// is allowed (calls are then unauthenticated) but a set one is still checked.
pub fn check_key(key: Option<&[u8]>, environment: Environment) -> Result<(), ClientError> {
    let Some(key) = key else {
        return match environment {
            Environment::Production => Err(ClientError::InvalidKey(
                "is unset: every service needs the signing key in production (from the lucid-secrets Secret); set LUCID_ENV=development to run without it",
            )),
            Environment::Development => Ok(()),
        };
    };
    let lower = String::from_utf8_lossy(key).to_ascii_lowercase();
    if PLACEHOLDER_MARKERS.iter().any(|m| lower.contains(m)) {
        return Err(ClientError::InvalidKey(
            "is the examples' placeholder: use a random value (openssl rand -hex 32)",
        ));
    }
    if key.len() < MIN_KEY_BYTES && environment == Environment::Production {
        return Err(ClientError::InvalidKey(
            "is shorter than 32 bytes: use a random value (openssl rand -hex 32)",
        ));
    }
    Ok(())
}

impl ClientConfig {
    /// From `LUCID_ENV`, `SERVICE_TIMEOUT_SECONDS`, `SERVICE_RETRY_COUNT`,
    /// `SERVICE_RETRY_DELAY_SECONDS` and `JWT_SECRET_KEY`.
    pub fn from_env(caller: &str) -> Result<Self, ClientError> {
        Self::from_lookup(caller, |k| std::env::var(k).ok())
    }

    pub fn from_lookup(
        caller: &str,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ClientError> {
        let seconds = |var: &str, default: f64| -> Result<f64, ClientError> {
            match get(var) {
                None => Ok(default),
                // Bounded: Duration::from_secs_f64 panics past u64 seconds (1e300).
                Some(v) => match v.trim().parse::<f64>() {
                    Ok(s) if s.is_finite() && (0.0..=MAX_SECONDS).contains(&s) => Ok(s),
                    _ => Err(ClientError::InvalidSetting {
                        variable: var.into(),
                        value: v,
                        reason: format!("expected a number of seconds from 0 to {MAX_SECONDS}"),
                    }),
                },
            }
        };
        let retries = match get("SERVICE_RETRY_COUNT") {
            None => 3,
            Some(v) => v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= 20)
                .ok_or_else(|| ClientError::InvalidSetting {
                    variable: "SERVICE_RETRY_COUNT".into(),
                    value: v.clone(),
                    reason: "expected a whole number from 0 to 20".into(),
                })?,
        };
        let total = seconds("SERVICE_TIMEOUT_SECONDS", 30.0)?;
        if total < 0.1 {
            return Err(ClientError::InvalidSetting {
                variable: "SERVICE_TIMEOUT_SECONDS".into(),
                value: total.to_string(),
                reason: "a call needs at least 0.1 seconds".into(),
            });
        }
        let idle = seconds("SERVICE_IDLE_TIMEOUT_SECONDS", total)?.max(0.1);
        Ok(Self {
            environment: Environment::parse(get("LUCID_ENV").as_deref()),
            connect_timeout: Duration::from_secs_f64(total.min(5.0)),
            total_timeout: Duration::from_secs_f64(total),
            idle_timeout: Duration::from_secs_f64(idle),
            retry: RetryPolicy {
                retries,
                base_delay: Duration::from_secs_f64(seconds("SERVICE_RETRY_DELAY_SECONDS", 1.0)?),
                max_delay: Duration::from_secs(30),
            },
            signing_key: get("JWT_SECRET_KEY")
                .filter(|k| !k.is_empty())
                .map(String::into_bytes),
            caller: caller.to_string(),
            on_retry: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_template() {
        let c = ClientConfig::from_lookup("x", |_| None).unwrap();
        assert_eq!(c.total_timeout, Duration::from_secs(30));
        assert_eq!(
            (c.retry.retries, c.retry.base_delay),
            (3, Duration::from_secs(1))
        );
        assert_eq!(c.environment, Environment::Production);
    }

    #[test]
    fn weak_or_missing_keys_are_refused_in_production_without_showing_them() {
        let p = Environment::Production;
        assert!(check_key(None, p).is_err());
        assert!(check_key(None, Environment::Development).is_ok());
        let short = b"0123456789abcdef0123456789abcde"; // 31 bytes
        let err = check_key(Some(short), p).unwrap_err().to_string();
        assert!(
            err.contains("32 bytes") && !err.contains("0123456789"),
            "{err}"
        );
        let placeholder = b"change-me-to-64-random-bytes-0123456789";
        assert!(check_key(Some(placeholder), p).is_err());
        assert!(check_key(Some(placeholder), Environment::Development).is_err());
        assert!(check_key(Some(b"real-cluster-test-signing-key-0123456789"), p).is_ok());
    }

    #[test]
    fn absurd_timeouts_are_refused_not_a_panic() {
        for v in ["1e300", "inf", "NaN", "0", "3601"] {
            let err = ClientConfig::from_lookup("x", |k| {
                (k == "SERVICE_TIMEOUT_SECONDS").then(|| v.to_string())
            })
            .err()
            .unwrap_or_else(|| panic!("{v} accepted"));
            assert!(err.to_string().contains("SERVICE_TIMEOUT_SECONDS"), "{err}");
        }
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let c = ClientConfig::from_lookup("x", |k| {
            (k == "JWT_SECRET_KEY").then(|| "very-secret-signing-key".to_string())
        })
        .unwrap();
        assert!(!format!("{c:?}").contains("very-secret"));
    }

    #[test]
    fn bad_numbers_say_which_variable() {
        let err = ClientConfig::from_lookup("x", |k| {
            (k == "SERVICE_RETRY_COUNT").then(|| "three".to_string())
        })
        .unwrap_err();
        assert!(err.to_string().contains("SERVICE_RETRY_COUNT"), "{err}");
        let err = ClientConfig::from_lookup("x", |k| {
            (k == "SERVICE_TIMEOUT_SECONDS").then(|| "-1".to_string())
        })
        .unwrap_err();
        assert!(err.to_string().contains("SERVICE_TIMEOUT_SECONDS"), "{err}");
    }
}
