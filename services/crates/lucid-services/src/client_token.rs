//! Client tokens: what lucid-auth-service signs with its private Ed25519 key and the
//! api-gateway checks with the public half (jsonwebtoken, EdDSA only).
//!
//! Service tokens (`lucid_client::token`, HS256 with `JWT_SECRET_KEY`) cannot pass here:
//! only `alg: EdDSA` is accepted, and only under a `kid` naming one of the configured public
//! keys. So `none`, HS256 signed with the public key as its secret, and a `kid` naming a key
//! this verifier does not hold are all refused before any signature is checked.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::KeyPair;
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// Who signs client tokens.
pub const ISSUER: &str = "lucid-auth-service";
/// Whom client tokens are for: the front door.
pub const AUDIENCE: &str = "api-gateway";
/// Clock skew tolerated, seconds (as for service tokens).
pub const LEEWAY: u64 = lucid_client::token::LEEWAY;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientClaims {
    pub iss: String,
    /// The user's id (stable; a renamed or recreated user is another id).
    pub sub: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// The user's name as they typed it at creation (display only; never an identity).
    #[serde(default)]
    pub name: String,
    /// Whether the user was an administrator when the token was signed. The auth service
    /// checks the stored user again for admin calls; this is a hint for clients.
    #[serde(default)]
    pub admin: bool,
    /// The login (refresh-token family) the token belongs to.
    #[serde(default)]
    pub sid: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error(
        "AUTH_SIGNING_KEY is not an Ed25519 private key in PKCS#8 PEM (`lucid-auth-service --new-signing-key` makes one)"
    )]
    NotEd25519Private,
    #[error(
        "AUTH_PUBLIC_KEYS is not a JWKS of Ed25519 keys ({0}); `lucid-auth-service --public-keys` prints it"
    )]
    BadPublicKeys(String),
    #[error("cannot sign a client token: {0}")]
    Sign(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's algorithm is not EdDSA")]
    WrongAlgorithm,
    #[error("the token names no key this service knows")]
    UnknownKey,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token lives longer than {0} seconds")]
    TooLong(u64),
    #[error("the token's issuer is not accepted here")]
    WrongIssuer,
    #[error("the token is not for this service")]
    WrongAudience,
    #[error("the token names no subject")]
    NoSubject,
}

/// One public key as a JWK (RFC 8037): `kty: OKP`, `crv: Ed25519`, `x` the raw key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub kid: String,
    pub x: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// The key id of an Ed25519 public key: its RFC 7638 thumbprint, so the same key always
/// has the same id and nobody has to invent names.
pub fn key_id(public: &[u8]) -> String {
    let x = URL_SAFE_NO_PAD.encode(public);
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(canonical.as_bytes()))
}

/// The auth service's private key, and what follows from it.
pub struct SigningKey {
    encoding: EncodingKey,
    kid: String,
    public: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// From a PKCS#8 PEM (`openssl genpkey -algorithm ed25519` or `--new-signing-key`).
    pub fn from_pem(pem_text: &str) -> Result<Self, KeyError> {
        let parsed = pem::parse(pem_text.trim()).map_err(|_| KeyError::NotEd25519Private)?;
        if parsed.tag() != "PRIVATE KEY" {
            return Err(KeyError::NotEd25519Private);
        }
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(parsed.contents())
            .map_err(|_| KeyError::NotEd25519Private)?;
        let public = pair.public_key().as_ref().to_vec();
        let encoding = EncodingKey::from_ed_der(parsed.contents());
        Ok(Self {
            encoding,
            kid: key_id(&public),
            public,
        })
    }

    /// A new random key as PKCS#8 PEM.
    pub fn generate_pem() -> Result<String, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let der = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| KeyError::Sign("no randomness".into()))?;
        Ok(pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref())))
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half as a JWKS of one key: what the gateway is given.
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: vec![Jwk {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                kid: self.kid.clone(),
                x: URL_SAFE_NO_PAD.encode(&self.public),
                alg: Some("EdDSA".into()),
                use_: Some("sig".into()),
            }],
        }
    }

    /// A verifier for this key's own tokens (the auth service's `/auth/me`).
    pub fn verifier(&self, max_lifetime: u64) -> Verifier {
        let mut keys = BTreeMap::new();
        keys.insert(self.kid.clone(), DecodingKey::from_ed_der(&self.public));
        Verifier { keys, max_lifetime }
    }

    pub fn sign(&self, claims: &ClientClaims) -> Result<String, KeyError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| KeyError::Sign(e.to_string()))
    }
}

/// Checks client tokens against a set of public keys (more than one while a key rotates).
#[derive(Clone)]
pub struct Verifier {
    keys: BTreeMap<String, DecodingKey>,
    max_lifetime: u64,
}

impl Verifier {
    /// From a JWKS document (`AUTH_PUBLIC_KEYS`): every key must be an Ed25519 OKP key
    /// with a `kid`, and at least one must be there.
    pub fn from_jwks(text: &str, max_lifetime: u64) -> Result<Self, KeyError> {
        let bad = |why: &str| KeyError::BadPublicKeys(why.into());
        let set: Jwks = serde_json::from_str(text.trim()).map_err(|e| bad(&e.to_string()))?;
        if set.keys.is_empty() {
            return Err(bad("no keys"));
        }
        let mut keys = BTreeMap::new();
        for jwk in set.keys {
            if jwk.kty != "OKP" || jwk.crv != "Ed25519" {
                return Err(bad("only kty OKP, crv Ed25519 keys are accepted"));
            }
            if jwk.alg.as_deref().is_some_and(|a| a != "EdDSA") {
                return Err(bad("a key's alg must be EdDSA"));
            }
            let x = URL_SAFE_NO_PAD
                .decode(&jwk.x)
                .map_err(|_| bad("x is not base64url"))?;
            if x.len() != 32 {
                return Err(bad("x is not 32 bytes"));
            }
            if jwk.kid.is_empty() {
                return Err(bad("a key has no kid"));
            }
            keys.insert(jwk.kid, DecodingKey::from_ed_der(&x));
        }
        Ok(Self { keys, max_lifetime })
    }

    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// The claims of a good token: EdDSA under a known `kid`, good signature, issuer
    /// lucid-auth-service, audience api-gateway, times within [`LEEWAY`], `exp - iat` at
    /// most the maximum lifetime, and a subject.
    pub fn verify(&self, token: &str, now: u64) -> Result<ClientClaims, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            // An unknown `alg` (none, HS512 spelt oddly...) fails parsing the header.
            match e.kind() {
                jsonwebtoken::errors::ErrorKind::Json(_) => VerifyError::WrongAlgorithm,
                _ => VerifyError::Malformed,
            }
        })?;
        if header.alg != Algorithm::EdDSA {
            return Err(VerifyError::WrongAlgorithm);
        }
        // Only a key we were given: never one the token carries (`jwk`, `jku`, `x5u`).
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(VerifyError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        // Times are checked below, the same way as service tokens.
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<ClientClaims>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::InvalidSignature => VerifyError::BadSignature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    VerifyError::WrongAlgorithm
                }
                _ => VerifyError::Malformed,
            }
        })?;
        let claims = data.claims;
        if claims.exp.saturating_add(LEEWAY) <= now {
            return Err(VerifyError::Expired);
        }
        if claims.nbf.unwrap_or(0).max(claims.iat) > now.saturating_add(LEEWAY) {
            return Err(VerifyError::NotYetValid);
        }
        if claims.exp.saturating_sub(claims.iat) > self.max_lifetime {
            return Err(VerifyError::TooLong(self.max_lifetime));
        }
        if claims.iss != ISSUER {
            return Err(VerifyError::WrongIssuer);
        }
        if claims.aud != AUDIENCE {
            return Err(VerifyError::WrongAudience);
        }
        if claims.sub.is_empty() {
            return Err(VerifyError::NoSubject);
        }
        Ok(claims)
    }
}

/// The bearer token of an `Authorization` header; the scheme is case-insensitive (RFC 7235),
/// parsed as lucid-kit parses it for service tokens.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()
        .and_then(lucid_kit::auth::bearer_token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: u64) -> ClientClaims {
        ClientClaims {
            iss: ISSUER.into(),
            sub: "u1".into(),
            aud: AUDIENCE.into(),
            iat: now,
            exp: now + 300,
            nbf: None,
            name: "ann".into(),
            admin: false,
            sid: "f".into(),
        }
    }

    fn key() -> SigningKey {
        SigningKey::from_pem(&SigningKey::generate_pem().unwrap()).unwrap()
    }

    fn forge(header: &str, claims: &ClientClaims, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap()),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    #[test]
    fn a_signed_token_verifies_through_its_published_keys() {
        let k = key();
        let jwks = serde_json::to_string(&k.jwks()).unwrap();
        let v = Verifier::from_jwks(&jwks, 3600).unwrap();
        let t = k.sign(&claims(1000)).unwrap();
        assert_eq!(v.verify(&t, 1000).unwrap(), claims(1000));
        assert_eq!(k.verifier(3600).verify(&t, 1000).unwrap(), claims(1000));
    }

    #[test]
    fn algorithm_confusion_is_refused() {
        let k = key();
        let v = k.verifier(3600);
        let c = claims(1000);
        // alg none, with and without a kid.
        let none = forge(&format!(r#"{{"alg":"none","kid":"{}"}}"#, k.kid()), &c, b"");
        assert_eq!(v.verify(&none, 1000), Err(VerifyError::WrongAlgorithm));
        // HS256 with the public key as the HMAC secret: a classic confusion attack.
        let public = URL_SAFE_NO_PAD.decode(&k.jwks().keys[0].x).unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(k.kid().into());
        let hs = jsonwebtoken::encode(&header, &c, &EncodingKey::from_secret(&public)).unwrap();
        assert_eq!(v.verify(&hs, 1000), Err(VerifyError::WrongAlgorithm));
        // Another key's kid, or none.
        let other = key();
        let t = other.sign(&c).unwrap();
        assert_eq!(v.verify(&t, 1000), Err(VerifyError::UnknownKey));
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = None;
        // A token signed by the other key but naming ours: the signature fails.
        let mut parts: Vec<String> = t.split('.').map(String::from).collect();
        parts[0] = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"EdDSA","kid":"{}"}}"#, k.kid()));
        assert_eq!(
            v.verify(&parts.join("."), 1000),
            Err(VerifyError::BadSignature)
        );
        // A service token (HS256, JWT_SECRET_KEY) is not a client token.
        let service = lucid_client::token::sign(
            &lucid_client::token::Claims {
                iss: ISSUER.into(),
                sub: "u1".into(),
                aud: AUDIENCE.into(),
                exp: 1300,
                iat: 1000,
                nbf: None,
                user: None,
            },
            b"0123456789abcdef0123456789abcdef",
        )
        .unwrap();
        assert_eq!(v.verify(&service, 1000), Err(VerifyError::WrongAlgorithm));
        assert_eq!(v.verify("not.a.token", 1000), Err(VerifyError::Malformed));
    }

    #[test]
    fn times_issuer_audience_and_lifetime_are_checked() {
        let k = key();
        let v = k.verifier(3600);
        let now = 10_000;
        let t = |c: ClientClaims| k.sign(&c).unwrap();
        let expired = ClientClaims {
            iat: now - 400,
            exp: now - LEEWAY,
            ..claims(now)
        };
        assert_eq!(v.verify(&t(expired), now), Err(VerifyError::Expired));
        let early = ClientClaims {
            nbf: Some(now + LEEWAY + 1),
            ..claims(now)
        };
        assert_eq!(v.verify(&t(early), now), Err(VerifyError::NotYetValid));
        let future = ClientClaims {
            iat: now + LEEWAY + 1,
            exp: now + 600,
            ..claims(now)
        };
        assert_eq!(v.verify(&t(future), now), Err(VerifyError::NotYetValid));
        let long = ClientClaims {
            exp: now + 3601,
            ..claims(now)
        };
        assert_eq!(v.verify(&t(long), now), Err(VerifyError::TooLong(3600)));
        let aud = ClientClaims {
            aud: "session-recorder".into(),
            ..claims(now)
        };
        assert_eq!(v.verify(&t(aud), now), Err(VerifyError::WrongAudience));
        let iss = ClientClaims {
            iss: "api-gateway".into(),
            ..claims(now)
        };
        assert_eq!(v.verify(&t(iss), now), Err(VerifyError::WrongIssuer));
        let anonymous = ClientClaims {
            sub: String::new(),
            ..claims(now)
        };
        assert_eq!(v.verify(&t(anonymous), now), Err(VerifyError::NoSubject));
    }

    #[test]
    fn public_key_sets_are_checked_and_the_private_key_never_printed() {
        for bad in [
            "",
            "{}",
            r#"{"keys":[]}"#,
            r#"{"keys":[{"kty":"oct","crv":"Ed25519","kid":"a","x":"AAAA"}]}"#,
            r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"AAAA"}]}"#,
        ] {
            assert!(Verifier::from_jwks(bad, 60).is_err(), "{bad}");
        }
        assert_eq!(
            SigningKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
                .unwrap_err(),
            KeyError::NotEd25519Private
        );
        let k = key();
        assert!(!format!("{k:?}").contains("PRIVATE"));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let mut h = axum::http::HeaderMap::new();
        for v in ["Bearer abc", "bearer abc", "BEARER  abc"] {
            h.insert(axum::http::header::AUTHORIZATION, v.parse().unwrap());
            assert_eq!(bearer(&h), Some("abc"), "{v}");
        }
        h.insert(
            axum::http::header::AUTHORIZATION,
            "Basic abc".parse().unwrap(),
        );
        assert_eq!(bearer(&h), None);
    }
}
