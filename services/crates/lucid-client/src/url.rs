//! Peer base URLs. In production a peer is reached by its service name (`http://lucid-redis:6379`);
//! a loopback address there means a copied development setting that will fail in a pod.

use crate::config::Environment;
use crate::error::ClientError;

#[derive(Clone, PartialEq)]
pub struct ServiceUrl(url::Url);

/// Never the password a peer URL may carry.
impl std::fmt::Debug for ServiceUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServiceUrl({})", crate::redact::text(self.0.as_str()))
    }
}

impl ServiceUrl {
    pub fn parse(peer: &str, raw: &str, environment: Environment) -> Result<Self, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidUrl {
            peer: peer.into(),
            url: crate::redact::text(raw),
            reason: reason.into(),
        };
        let url = url::Url::parse(raw.trim()).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        let host = url.host_str().ok_or_else(|| invalid("there is no host"))?;
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host.starts_with("127.")
            || host == "[::1]"
            || host == "::1"
            || host == "0.0.0.0";
        if loopback && environment == Environment::Production {
            return Err(invalid(
                "loopback addresses are not allowed in production: use the service name (e.g. http://session-storage:8081), or set LUCID_ENV=development",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a base URL has no query or fragment"));
        }
        Ok(Self(url))
    }

    /// `base` + `path`, with exactly one slash between them.
    pub fn join(&self, path: &str) -> String {
        format!(
            "{}/{}",
            self.0.as_str().trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_rejected_only_in_production() {
        for raw in [
            "http://localhost:8081",
            "http://127.0.0.1:8081",
            "http://[::1]:8081",
        ] {
            let err =
                ServiceUrl::parse("session-storage", raw, Environment::Production).unwrap_err();
            assert!(err.to_string().contains("service name"), "{err}");
            assert!(ServiceUrl::parse("session-storage", raw, Environment::Development).is_ok());
        }
        assert!(
            ServiceUrl::parse("s", "http://session-storage:8081", Environment::Production).is_ok()
        );
    }

    #[test]
    fn nonsense_is_rejected_with_the_reason() {
        for raw in ["session-storage:8081", "ftp://x", "http://x/?q=1", ""] {
            assert!(
                ServiceUrl::parse("s", raw, Environment::Development).is_err(),
                "{raw}"
            );
        }
    }

    #[test]
    fn a_password_in_a_peer_url_is_never_shown() {
        let err = ServiceUrl::parse(
            "session-recorder",
            "http://svc:PW-123@127.0.0.1:8090",
            Environment::Production,
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("PW-123") && err.contains("***@"), "{err}");
        let url = ServiceUrl::parse("s", "http://svc:PW-123@a:1", Environment::Production).unwrap();
        assert!(!format!("{url:?}").contains("PW-123"));
    }

    #[test]
    fn join_puts_one_slash() {
        let u = ServiceUrl::parse("s", "http://a:1/base/", Environment::Production).unwrap();
        assert_eq!(u.join("/chunks/x"), "http://a:1/base/chunks/x");
    }
}
