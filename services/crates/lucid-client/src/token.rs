//! Short-lived HS256 tokens (JWT) for service-to-service calls and client sessions.
//!
//! The signing key never travels: a token carries who signed it (`iss`), for whom (`aud`),
//! and when it expires (`exp`, seconds). Verification checks the signature in constant time,
//! rejects any algorithm but HS256, and checks issuer, audience, `iat`/`nbf`/`exp` with
//! [`LEEWAY`] seconds of clock skew, and a maximum lifetime (`exp - iat`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who signed: a service name, or `lucid-auth-service` for client tokens.
    pub iss: String,
    /// Subject: the user, or the calling service.
    pub sub: String,
    /// Audience: the service meant to accept it.
    pub aud: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Not before, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// In a service token: the end user the calling service acts for (the gateway's
    /// client's `sub`), so the callee can check ownership.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// Clock skew tolerated between signer and verifier, seconds: pods' clocks are NTP-synced
/// to well under a second; 30 s absorbs a lagging node without keeping tokens alive long.
pub const LEEWAY: u64 = 30;

/// What a verifier expects of a token besides a good signature.
#[derive(Clone, Debug)]
pub struct Expect {
    /// The `aud` tokens must name; None accepts any audience.
    pub audience: Option<String>,
    /// The `iss` values accepted; empty accepts any issuer.
    pub issuers: Vec<String>,
    /// The longest `exp - iat` accepted, seconds.
    pub max_lifetime: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's algorithm is not HS256")]
    WrongAlgorithm,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token expired")]
    Expired,
    #[error("the token is not valid yet (iat or nbf in the future)")]
    NotYetValid,
    #[error("the token lives longer than {0} seconds")]
    TooLong(u64),
    #[error("the token's issuer is not accepted here")]
    WrongIssuer,
    #[error("the token is for {0}, not for this service")]
    WrongAudience(String),
    #[error("the signing key is empty")]
    EmptyKey,
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn sign(claims: &Claims, key: &[u8]) -> Result<String, TokenError> {
    if key.is_empty() {
        return Err(TokenError::EmptyKey);
    }
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload =
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).map_err(|_| TokenError::Malformed)?);
    let signing_input = format!("{header}.{payload}");
    let mut mac = HmacSha256::new_from_slice(key).map_err(|_| TokenError::EmptyKey)?;
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Ok(format!("{signing_input}.{signature}"))
}

/// Verifies signature, algorithm, times, lifetime, issuer and audience.
pub fn verify(token: &str, key: &[u8], expect: &Expect, now: u64) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| TokenError::Malformed)?,
    )
    .map_err(|_| TokenError::Malformed)?;
    if header["alg"] != "HS256" {
        return Err(TokenError::WrongAlgorithm);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed)?;
    let mut mac = HmacSha256::new_from_slice(key).map_err(|_| TokenError::EmptyKey)?;
    mac.update(&token.as_bytes()[..token.len() - token.rsplit('.').next().map_or(0, str::len) - 1]);
    mac.verify_slice(&signature)
        .map_err(|_| TokenError::BadSignature)?;
    let claims: Claims = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?,
    )
    .map_err(|_| TokenError::Malformed)?;
    if claims.exp.saturating_add(LEEWAY) <= now {
        return Err(TokenError::Expired);
    }
    let not_before = claims.nbf.unwrap_or(0).max(claims.iat);
    if not_before > now.saturating_add(LEEWAY) {
        return Err(TokenError::NotYetValid);
    }
    if claims.exp.saturating_sub(claims.iat) > expect.max_lifetime {
        return Err(TokenError::TooLong(expect.max_lifetime));
    }
    if !expect.issuers.is_empty() && !expect.issuers.contains(&claims.iss) {
        return Err(TokenError::WrongIssuer);
    }
    if let Some(audience) = &expect.audience
        && claims.aud != *audience
    {
        return Err(TokenError::WrongAudience(claims.aud));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            iss: "api-gateway".into(),
            sub: "api-gateway".into(),
            aud: "session-recorder".into(),
            exp,
            iat: exp.saturating_sub(60),
            nbf: None,
            user: None,
        }
    }

    fn any() -> Expect {
        Expect {
            audience: None,
            issuers: Vec::new(),
            max_lifetime: 300,
        }
    }

    fn aud(a: &str) -> Expect {
        Expect {
            audience: Some(a.into()),
            ..any()
        }
    }

    #[test]
    fn a_signed_token_verifies_and_never_contains_the_key() {
        let key = b"super-secret-signing-key";
        let t = sign(&claims(100), key).unwrap();
        assert!(!t.contains("super-secret"));
        assert_eq!(
            verify(&t, key, &aud("session-recorder"), 50).unwrap(),
            claims(100)
        );
    }

    #[test]
    fn expired_forged_and_misaddressed_tokens_are_rejected() {
        let key = b"k1";
        let t = sign(&claims(100), key).unwrap();
        assert_eq!(
            verify(&t, key, &any(), 100 + LEEWAY),
            Err(TokenError::Expired)
        );
        assert!(
            verify(&t, key, &any(), 100 + LEEWAY - 1).is_ok(),
            "within the leeway"
        );
        assert_eq!(verify(&t, b"k2", &any(), 50), Err(TokenError::BadSignature));
        assert_eq!(
            verify(&t, key, &aud("session-storage"), 50),
            Err(TokenError::WrongAudience("session-recorder".into()))
        );
        // Payload swapped, signature kept.
        let mut forged: Vec<&str> = t.split('.').collect();
        let other = sign(
            &Claims {
                sub: "admin".into(),
                ..claims(100)
            },
            b"attacker",
        )
        .unwrap();
        forged[1] = other.split('.').nth(1).unwrap();
        assert_eq!(
            verify(&forged.join("."), key, &any(), 50),
            Err(TokenError::BadSignature)
        );
        // alg: none
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            t.split('.').nth(1).unwrap()
        );
        assert_eq!(
            verify(&none, key, &any(), 50),
            Err(TokenError::WrongAlgorithm)
        );
        assert_eq!(
            verify("garbage", key, &any(), 50),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn future_too_long_and_foreign_tokens_are_rejected() {
        let key = b"k1";
        let now = 10_000;
        let future = |iat, nbf| Claims {
            iat,
            nbf,
            ..claims(now + 60)
        };
        let t = sign(&future(now + LEEWAY + 1, None), key).unwrap();
        assert_eq!(verify(&t, key, &any(), now), Err(TokenError::NotYetValid));
        let t = sign(&future(now, Some(now + LEEWAY + 1)), key).unwrap();
        assert_eq!(verify(&t, key, &any(), now), Err(TokenError::NotYetValid));
        let t = sign(&future(now + LEEWAY, None), key).unwrap();
        assert!(
            verify(&t, key, &any(), now).is_ok(),
            "skew within the leeway"
        );
        let long = Claims {
            iat: now,
            ..claims(now + 301)
        };
        let t = sign(&long, key).unwrap();
        assert_eq!(verify(&t, key, &any(), now), Err(TokenError::TooLong(300)));
        let t = sign(&claims(now + 60), key).unwrap();
        let only_auth = Expect {
            issuers: vec!["lucid-auth-service".into()],
            ..any()
        };
        assert_eq!(
            verify(&t, key, &only_auth, now),
            Err(TokenError::WrongIssuer)
        );
    }
}
