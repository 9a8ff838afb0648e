//! Ownership, tokens, keys, and data safety under faults, on loopback with real
//! redis-server and nx-27017.

mod common;

use std::time::Duration;

use common::*;
use lucid_client::token::{self, Claims};
use lucid_services::client_token::ClientClaims;
use serde_json::Value;

async fn upload(
    http: &reqwest::Client,
    p: &Pipeline,
    id: &str,
    token: &str,
    data: Vec<u8>,
) -> reqwest::Response {
    http.put(format!("{}/api/sessions/{id}/data", p.gateway))
        .bearer_auth(token)
        .body(data)
        .send()
        .await
        .unwrap()
}

async fn post(http: &reqwest::Client, url: String, token: &str) -> reqwest::Response {
    http.post(url).bearer_auth(token).send().await.unwrap()
}

#[tokio::test]
async fn another_users_token_gets_404_on_every_session_endpoint() {
    let p = Pipeline::start();
    let http = reqwest::Client::new();
    let alice = user_token("alice", 300);
    let mallory = user_token("mallory", 300);
    let id = open_session(&http, &p, &alice).await;
    let g = &p.gateway;

    // Open session: mallory can neither append nor finalize it.
    assert_eq!(
        upload(&http, &p, &id, &mallory, b"evil".to_vec())
            .await
            .status(),
        404
    );
    assert_eq!(
        post(&http, format!("{g}/api/sessions/{id}/finalize"), &mallory)
            .await
            .status(),
        404
    );
    assert_eq!(
        upload(&http, &p, &id, &alice, pseudo_random(300_000, 1))
            .await
            .status(),
        200
    );
    let r = post(&http, format!("{g}/api/sessions/{id}/finalize"), &alice).await;
    assert_eq!(r.status(), 200);
    let manifest: Value = r.json().await.unwrap();
    let address = manifest["chunks"][0]["address"]
        .as_str()
        .unwrap()
        .to_string();

    // Finalized: mallory reads neither manifest nor chunk, and cannot finalize it again.
    for (url, method) in [
        (format!("{g}/api/sessions/{id}/manifest"), "GET"),
        (format!("{g}/api/chunks/{address}"), "GET"),
        (format!("{g}/api/sessions/{id}/finalize"), "POST"),
    ] {
        let r = http
            .request(method.parse().unwrap(), &url)
            .bearer_auth(&mallory)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{method} {url}");
        let r = http
            .request(method.parse().unwrap(), &url)
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "alice: {method} {url}");
    }
    // The body's "owner" is not who owns the session.
    let r = http
        .post(format!("{g}/api/sessions"))
        .bearer_auth(&mallory)
        .body(r#"{"owner":"alice"}"#)
        .send()
        .await
        .unwrap();
    let other: Value = r.json().await.unwrap();
    let other = other["session_id"].as_str().unwrap();
    assert_eq!(
        upload(&http, &p, other, &alice, b"x".to_vec())
            .await
            .status(),
        404
    );

    // Straight to the recorder: a service token must say whom it acts for.
    let recorder = format!("http://127.0.0.1:{}", p.recorder_port);
    let r = post(
        &http,
        format!("{recorder}/sessions"),
        &service_token("session-recorder"),
    )
    .await;
    assert_eq!(
        r.status(),
        401,
        "issuer session-recorder is not accepted by the recorder"
    );
    let no_user = {
        let now = token::now();
        token::sign(
            &Claims {
                iss: "api-gateway".into(),
                sub: "api-gateway".into(),
                aud: "session-recorder".into(),
                iat: now,
                nbf: None,
                exp: now + 60,
                user: None,
            },
            KEY.as_bytes(),
        )
        .unwrap()
    };
    assert_eq!(
        post(&http, format!("{recorder}/sessions"), &no_user)
            .await
            .status(),
        403
    );
}

#[tokio::test]
async fn client_tokens_need_the_right_issuer_a_present_date_and_a_short_life() {
    let p = Pipeline::start();
    let http = reqwest::Client::new();
    let now = token::now();
    let base = client_claims("alice", 300);
    for (why, claims) in [
        (
            "foreign issuer",
            ClientClaims {
                iss: "someone-else".into(),
                ..base.clone()
            },
        ),
        (
            "issued in the future",
            ClientClaims {
                iat: now + 120,
                exp: now + 400,
                ..base.clone()
            },
        ),
        (
            "not valid yet",
            ClientClaims {
                nbf: Some(now + 120),
                ..base.clone()
            },
        ),
        (
            "lives two hours",
            ClientClaims {
                exp: now + 7200,
                ..base.clone()
            },
        ),
        (
            "for another audience",
            ClientClaims {
                aud: "session-recorder".into(),
                ..base.clone()
            },
        ),
    ] {
        let t = sign_client(&claims);
        let r = post(&http, format!("{}/api/sessions", p.gateway), &t).await;
        assert_eq!(r.status(), 401, "{why}");
    }
    // The old way to mint a client token: HS256 with JWT_SECRET_KEY, which every service
    // holds. Refused: only the auth service's private key makes client tokens now.
    let hmac_minted = token::sign(
        &Claims {
            iss: "lucid-auth-service".into(),
            sub: "alice".into(),
            aud: "api-gateway".into(),
            iat: now,
            nbf: None,
            exp: now + 300,
            user: None,
        },
        KEY.as_bytes(),
    )
    .unwrap();
    let r = post(&http, format!("{}/api/sessions", p.gateway), &hmac_minted).await;
    assert_eq!(r.status(), 401, "an HMAC-minted client token");
    let skewed = ClientClaims {
        iat: now + 10,
        ..base
    };
    let t = sign_client(&skewed);
    assert_eq!(
        post(&http, format!("{}/api/sessions", p.gateway), &t)
            .await
            .status(),
        201,
        "10 s of clock skew is within the leeway"
    );
}

#[tokio::test]
async fn no_service_starts_in_production_with_a_missing_weak_or_placeholder_key_and_none_prints_it()
{
    let p = Pipeline::start();
    let run = |name: &str, key: Option<&str>| {
        let mut cmd = p.command(name);
        cmd.env("LUCID_ENV", "production");
        match key {
            Some(k) => cmd.env("JWT_SECRET_KEY", k),
            None => cmd.env_remove("JWT_SECRET_KEY"),
        };
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    for name in ["session-storage", "session-recorder", "api-gateway"] {
        let (ok, err) = run(name, None);
        assert!(
            !ok && err.contains("JWT_SECRET_KEY"),
            "{name} without key: {err}"
        );
        let (ok, err) = run(name, Some("123456"));
        assert!(
            !ok && err.contains("JWT_SECRET_KEY"),
            "{name} short key: {err}"
        );
        assert!(!err.contains("123456"), "{name} printed the key: {err}");
        let (ok, err) = run(name, Some("change-me-to-64-random-bytes-but-long-enough"));
        assert!(
            !ok && err.contains("placeholder"),
            "{name} placeholder: {err}"
        );
        assert!(
            !err.contains("change-me-to"),
            "{name} printed the key: {err}"
        );
    }
}

#[tokio::test]
async fn a_redis_restart_mid_session_loses_nothing_and_only_ready_says_so() {
    let mut p = Pipeline::start();
    let http = reqwest::Client::new();
    let token = client_token(300);
    let id = open_session(&http, &p, &token).await;
    let first = pseudo_random(600_000, 1);
    assert_eq!(
        upload(&http, &p, &id, &token, first.clone()).await.status(),
        200
    );

    p.stop_redis();
    let recorder = format!("http://127.0.0.1:{}", p.recorder_port);
    eventually(
        Duration::from_secs(10),
        "/ready fails while Redis is down",
        || {
            let (http, url) = (http.clone(), format!("{recorder}/ready"));
            async move { http.get(url).send().await.is_ok_and(|r| r.status() == 503) }
        },
    )
    .await;
    let health = http.get(format!("{recorder}/health")).send().await.unwrap();
    assert_eq!(
        health.status(),
        200,
        "the process is well: no restart wanted"
    );
    // A client's request id reaches the recorder (its 503 body, relayed, names it) and no
    // detail of the failure reaches the client.
    let r = http
        .put(format!("{}/api/sessions/{id}/data", p.gateway))
        .bearer_auth(&token)
        .header("x-request-id", "trace-me-42")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-request-id"], "trace-me-42");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["request_id"], "trace-me-42", "{body}");
    let text = body.to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.to_lowercase().contains("redis"),
        "{text}"
    );

    p.start_redis();
    eventually(
        Duration::from_secs(20),
        "the recorder is ready again",
        || {
            let (http, url) = (http.clone(), format!("{recorder}/ready"));
            async move { http.get(url).send().await.is_ok_and(|r| r.status() == 200) }
        },
    )
    .await;
    let second = pseudo_random(300_000, 2);
    assert_eq!(
        upload(&http, &p, &id, &token, second.clone())
            .await
            .status(),
        200
    );
    let r = post(
        &http,
        format!("{}/api/sessions/{id}/finalize", p.gateway),
        &token,
    )
    .await;
    assert_eq!(r.status(), 200);
    let manifest: Value = r.json().await.unwrap();
    let raw: u64 = manifest["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["raw_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(
        raw, 900_000,
        "both acknowledged uploads are in the manifest: {manifest}"
    );
}

#[tokio::test]
async fn finalize_is_idempotent_and_never_misses_an_acknowledged_upload() {
    let p = Pipeline::start();
    let http = reqwest::Client::new();
    let token = client_token(300);
    for round in 0..8u64 {
        let id = open_session(&http, &p, &token).await;
        // Uploads racing a finalize: each is either in the manifest or refused.
        let uploads: Vec<_> = (0..4u64)
            .map(|i| {
                let (http, url, token) = (
                    http.clone(),
                    format!("{}/api/sessions/{id}/data", p.gateway),
                    token.clone(),
                );
                tokio::spawn(async move {
                    let data = pseudo_random(100_000 + i as usize, round * 10 + i + 1);
                    let r = http
                        .put(url)
                        .bearer_auth(token)
                        .body(data)
                        .send()
                        .await
                        .unwrap();
                    let status = r.status().as_u16();
                    (status, 100_000 + i, r.text().await.unwrap_or_default())
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(round * 5)).await;
        let first = post(
            &http,
            format!("{}/api/sessions/{id}/finalize", p.gateway),
            &token,
        )
        .await;
        assert_eq!(first.status(), 200);
        let first: Value = first.json().await.unwrap();
        let mut acknowledged = Vec::new();
        for u in uploads {
            let (status, bytes, body) = u.await.unwrap();
            assert!(
                status == 200 || status == 409,
                "upload answered {status}: {body}"
            );
            if status == 200 {
                acknowledged.push(bytes);
            }
        }
        let recorded: Vec<u64> = first["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["raw_bytes"].as_u64().unwrap())
            .collect();
        acknowledged.sort();
        let mut recorded_sorted = recorded.clone();
        recorded_sorted.sort();
        assert_eq!(recorded_sorted, acknowledged, "round {round}");
        // A retried finalize returns the stored manifest.
        let again = post(
            &http,
            format!("{}/api/sessions/{id}/finalize", p.gateway),
            &token,
        )
        .await;
        assert_eq!(again.status(), 200);
        let again: Value = again.json().await.unwrap();
        assert_eq!(again["merkle_root"], first["merkle_root"]);
        assert_eq!(again["chunks"], first["chunks"]);
        if round == 0 {
            // A finalize that died after writing the manifest left the state at
            // `finalizing`: the next one meets the stored manifest (E11000) and returns it.
            let redis = redis::Client::open(format!("redis://127.0.0.1:{}", p.redis_port)).unwrap();
            let mut c = redis.get_multiplexed_async_connection().await.unwrap();
            let _: () = redis::cmd("HSET")
                .arg(format!("lucid:session:{id}"))
                .arg("state")
                .arg("finalizing")
                .query_async(&mut c)
                .await
                .unwrap();
            let retried = post(
                &http,
                format!("{}/api/sessions/{id}/finalize", p.gateway),
                &token,
            )
            .await;
            assert_eq!(retried.status(), 200);
            let retried: Value = retried.json().await.unwrap();
            assert_eq!(retried["merkle_root"], first["merkle_root"]);
        }
    }
}

#[tokio::test]
async fn a_manifest_with_an_unreadable_chunk_entry_is_a_500_without_detail() {
    let p = Pipeline::start();
    let http = reqwest::Client::new();
    let token = client_token(300);
    let id = open_session(&http, &p, &token).await;
    assert_eq!(
        upload(&http, &p, &id, &token, pseudo_random(300_000, 5))
            .await
            .status(),
        200
    );
    assert_eq!(
        post(
            &http,
            format!("{}/api/sessions/{id}/finalize", p.gateway),
            &token
        )
        .await
        .status(),
        200
    );
    let url = &p.env.iter().find(|(k, _)| k == "MONGODB_URL").unwrap().1;
    let mongo = mongodb::Client::with_uri_str(url).await.unwrap();
    mongo
        .database("lucid")
        .collection::<mongodb::bson::Document>("manifests")
        .update_one(
            mongodb::bson::doc! {"_id": &id},
            mongodb::bson::doc! {"$push": {"chunks": {"address": 42}}},
        )
        .await
        .unwrap();
    let r = http
        .get(format!("{}/api/sessions/{id}/manifest", p.gateway))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500, "never a silently shorter manifest");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "internal error", "{body}");
    assert!(
        body["request_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn chunks_are_served_verified_with_etag_and_immutable_caching() {
    let mut p = Pipeline::start();
    let http = reqwest::Client::new();
    let token = client_token(300);
    let id = open_session(&http, &p, &token).await;
    assert_eq!(
        upload(&http, &p, &id, &token, pseudo_random(200_000, 9))
            .await
            .status(),
        200
    );
    let m: Value = post(
        &http,
        format!("{}/api/sessions/{id}/finalize", p.gateway),
        &token,
    )
    .await
    .json()
    .await
    .unwrap();
    let address = m["chunks"][0]["address"].as_str().unwrap().to_string();
    let url = format!("{}/api/chunks/{address}", p.gateway);
    let r = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], format!("\"{address}\""));
    assert_eq!(r.headers()["content-type"], "application/zstd");
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let r = http
        .get(&url)
        .bearer_auth(&token)
        .header("if-none-match", format!("\"{address}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    // A storage that sends other bytes under the address, slowly: the gateway refuses to
    // relay them, and holds no more chunk reads at once than it may.
    let fake = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake_port = fake.local_addr().unwrap().port();
    let app = axum::Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        "not the chunk you asked for"
    });
    tokio::spawn(async move { axum::serve(fake, app).await.unwrap() });
    p.kill("api-gateway");
    let gateway_port: u16 = p.gateway.rsplit(':').next().unwrap().parse().unwrap();
    let mut cmd = p.command("api-gateway");
    cmd.env(
        "SESSION_STORAGE_URL",
        format!("http://127.0.0.1:{fake_port}"),
    );
    let _gateway = spawn(&mut cmd);
    wait_port(gateway_port);
    let fresh = reqwest::Client::new();
    let r = fresh.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 502);
}

#[tokio::test]
async fn settings_out_of_range_stop_the_start_with_the_variable_named() {
    let p = Pipeline::start();
    let run = |name: &str, var: &str, value: &str| {
        let out = p.command(name).env(var, value).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    for (name, var, value) in [
        ("session-recorder", "CHUNK_BYTES", "0"),
        ("session-recorder", "SERVICE_TIMEOUT_SECONDS", "1e300"),
        ("api-gateway", "SERVICE_TIMEOUT_SECONDS", "1e300"),
        ("session-storage", "MAX_CHUNK_BYTES", "0"),
        ("session-storage", "HTTP_IDLE_TIMEOUT_SECONDS", "1e300"),
    ] {
        let (ok, err) = run(name, var, value);
        assert!(!ok && err.contains(var), "{name} {var}={value}: {err}");
        assert!(!err.contains("panicked"), "{name} {var}={value}: {err}");
    }
    // 1 MiB raw can compress to more than storage's 1 MiB limit in this pipeline.
    let (ok, err) = run("session-recorder", "CHUNK_BYTES", &(1 << 20).to_string());
    assert!(!ok && err.contains("MAX_CHUNK_BYTES"), "{err}");
}
