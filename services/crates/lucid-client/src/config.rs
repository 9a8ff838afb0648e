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

#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub environment: Environment,
    pub connect_timeout: Duration,
    /// One attempt's whole time (`SERVICE_TIMEOUT_SECONDS`, default 30).
    pub total_timeout: Duration,
    pub retry: RetryPolicy,
    /// Signs service tokens (`JWT_SECRET_KEY`); without it calls are unauthenticated.
    pub signing_key: Option<Vec<u8>>,
    /// This service's name, the `iss` of its tokens.
    pub caller: String,
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
                Some(v) => match v.trim().parse::<f64>() {
                    Ok(s) if s.is_finite() && s >= 0.0 => Ok(s),
                    _ => Err(ClientError::InvalidSetting {
                        variable: var.into(),
                        value: v,
                        reason: "expected a number of seconds >= 0".into(),
                    }),
                },
            }
        };
        let retries = match get("SERVICE_RETRY_COUNT") {
            None => 3,
            Some(v) => v
                .trim()
                .parse::<u32>()
                .map_err(|_| ClientError::InvalidSetting {
                    variable: "SERVICE_RETRY_COUNT".into(),
                    value: v.clone(),
                    reason: "expected a whole number".into(),
                })?,
        };
        let total = seconds("SERVICE_TIMEOUT_SECONDS", 30.0)?;
        Ok(Self {
            environment: Environment::parse(get("LUCID_ENV").as_deref()),
            connect_timeout: Duration::from_secs_f64(total.min(5.0)),
            total_timeout: Duration::from_secs_f64(total),
            retry: RetryPolicy {
                retries,
                base_delay: Duration::from_secs_f64(seconds("SERVICE_RETRY_DELAY_SECONDS", 1.0)?),
                max_delay: Duration::from_secs(30),
            },
            signing_key: get("JWT_SECRET_KEY")
                .filter(|k| !k.is_empty())
                .map(String::into_bytes),
            caller: caller.to_string(),
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
