//! What checking a client token costs the api-gateway per request, and what one password
//! hash costs the auth service, on this machine (BENCHMARKS.md): EdDSA verification through
//! `client_token::Verifier` (what the gateway does now) beside HS256 through
//! `lucid_client::token::verify` (what it did), and Argon2id with the default parameters.
//! Prints Markdown table rows.

use std::time::Instant;

use lucid_services::auth::password::{Cost, Passwords};
use lucid_services::client_token::{ClientClaims, SigningKey, Verifier};

fn per_call(n: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..n / 10 {
        f();
    }
    let started = Instant::now();
    for _ in 0..n {
        f();
    }
    started.elapsed().as_secs_f64() / f64::from(n)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = SigningKey::from_pem(&SigningKey::generate_pem()?)?;
    let verifier = Verifier::from_jwks(&serde_json::to_string(&key.jwks())?, 3600)?;
    let now = lucid_client::token::now();
    let claims = ClientClaims {
        iss: "lucid-auth-service".into(),
        sub: "0123456789abcdef0123456789abcdef".into(),
        aud: "api-gateway".into(),
        iat: now,
        exp: now + 300,
        nbf: None,
        name: "bench".into(),
        admin: false,
        sid: "0123456789abcdef0123456789abcdef".into(),
    };
    let token = key.sign(&claims)?;
    let eddsa = per_call(20_000, || {
        std::hint::black_box(verifier.verify(&token, now).is_ok());
    });
    let sign = per_call(20_000, || {
        std::hint::black_box(key.sign(&claims).is_ok());
    });
    let hs_key = b"bench-key-0123456789abcdef-0123456789";
    let hs_claims = lucid_client::token::Claims {
        iss: "lucid-auth-service".into(),
        sub: claims.sub.clone(),
        aud: "api-gateway".into(),
        iat: now,
        exp: now + 300,
        nbf: None,
        user: None,
    };
    let hs_token = lucid_client::token::sign(&hs_claims, hs_key)?;
    let expect = lucid_client::token::Expect {
        audience: Some("api-gateway".into()),
        issuers: vec!["lucid-auth-service".into()],
        max_lifetime: 3600,
    };
    let hs256 = per_call(20_000, || {
        std::hint::black_box(lucid_client::token::verify(&hs_token, hs_key, &expect, now).is_ok());
    });
    let passwords = Passwords::new(Cost::default(), 1)?;
    let stored = passwords.hash("bench-password".into()).await?;
    let mut hashes = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        passwords
            .verify("bench-password".into(), Some(stored.clone()))
            .await?;
        hashes.push(started.elapsed().as_secs_f64());
    }
    hashes.sort_by(f64::total_cmp);
    let us = |s: f64| format!("{:.1} µs", s * 1e6);
    println!(
        "| client token check at the gateway: EdDSA (Ed25519) verify + claims, one core | {} |",
        us(eddsa)
    );
    println!(
        "| the old check: HS256 verify + claims, one core | {} |",
        us(hs256)
    );
    println!(
        "| signing one access token (auth service), one core | {} |",
        us(sign)
    );
    println!(
        "| one Argon2id check, m=19 MiB t=2 p=1, one core (median of 20; min {:.1} ms) | {:.1} ms |",
        hashes[0] * 1e3,
        hashes[hashes.len() / 2] * 1e3
    );
    Ok(())
}
