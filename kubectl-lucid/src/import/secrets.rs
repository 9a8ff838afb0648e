//! Which values go to a Secret: those the seeds keep in `.env.secrets`, and any whose name or
//! value says it is one.

/// `*_PASSWORD`, `*_SECRET*`, `*_KEY`, `*_TOKEN` and their bare forms (`PASSWORD`, `SECRET`).
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    n.ends_with("PASSWORD")
        || n.ends_with("_PASS")
        || n.contains("SECRET")
        || n.ends_with("_KEY")
        || n == "KEY"
        || n.ends_with("TOKEN")
        || n.ends_with("CREDENTIALS")
}

/// A secret name, or a URL carrying a password (`mongodb://user:pass@host`).
pub fn looks_secret(name: &str, value: &str) -> bool {
    is_secret_name(name) || url_with_password(value)
}

fn url_with_password(value: &str) -> bool {
    let Some((_, rest)) = value.split_once("://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    authority.rsplit_once('@').is_some_and(|(userinfo, _)| {
        userinfo
            .split_once(':')
            .is_some_and(|(_, pw)| !pw.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls_that_hold_secrets() {
        for n in [
            "MONGODB_PASSWORD",
            "JWT_SECRET_KEY",
            "SECRET",
            "API_KEY",
            "GITHUB_TOKEN",
            "client_secret",
        ] {
            assert!(is_secret_name(n), "{n}");
        }
        for n in ["LUCID_ENV", "KEYBOARD", "MONGODB_URL"] {
            assert!(!is_secret_name(n), "{n}");
        }
        assert!(looks_secret(
            "MONGODB_URL",
            "mongodb://lucid:s3cret@lucid-mongodb:27017/lucid"
        ));
        assert!(!looks_secret(
            "MONGODB_URL",
            "mongodb://lucid-mongodb:27017/lucid"
        ));
        assert!(!looks_secret("API_URL", "http://user@host/x"));
    }
}
