//! Short-lived HS256 tokens (JWT) for service-to-service calls and client sessions.
//!
//! The signing key never travels: a token carries who signed it (`iss`), for whom (`aud`),
//! and when it expires (`exp`, seconds). Verification checks the signature in constant time
//! and the expiry, and rejects any algorithm but HS256.

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
    pub iat: u64,
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

/// Verifies signature, algorithm, expiry and (when given) audience.
pub fn verify(
    token: &str,
    key: &[u8],
    audience: Option<&str>,
    now: u64,
) -> Result<Claims, TokenError> {
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
    mac.update(token[..token.len() - token.rsplit('.').next().map_or(0, str::len) - 1].as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| TokenError::BadSignature)?;
    let claims: Claims = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?,
    )
    .map_err(|_| TokenError::Malformed)?;
    if claims.exp <= now {
        return Err(TokenError::Expired);
    }
    if let Some(audience) = audience {
        if claims.aud != audience {
            return Err(TokenError::WrongAudience(claims.aud));
        }
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
            iat: 0,
        }
    }

    #[test]
    fn a_signed_token_verifies_and_never_contains_the_key() {
        let key = b"super-secret-signing-key";
        let t = sign(&claims(100), key).unwrap();
        assert!(!t.contains("super-secret"));
        assert_eq!(
            verify(&t, key, Some("session-recorder"), 50).unwrap(),
            claims(100)
        );
    }

    #[test]
    fn expired_forged_and_misaddressed_tokens_are_rejected() {
        let key = b"k1";
        let t = sign(&claims(100), key).unwrap();
        assert_eq!(verify(&t, key, None, 100), Err(TokenError::Expired));
        assert_eq!(verify(&t, b"k2", None, 50), Err(TokenError::BadSignature));
        assert_eq!(
            verify(&t, key, Some("session-storage"), 50),
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
            verify(&forged.join("."), key, None, 50),
            Err(TokenError::BadSignature)
        );
        // alg: none
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            t.split('.').nth(1).unwrap()
        );
        assert_eq!(
            verify(&none, key, None, 50),
            Err(TokenError::WrongAlgorithm)
        );
        assert_eq!(verify("garbage", key, None, 50), Err(TokenError::Malformed));
    }
}
