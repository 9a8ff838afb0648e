//! lucid-auth-service on loopback with real redis-server and nx-27017, reached as clients
//! reach it: through the api-gateway's `/auth/*`.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use lucid_services::client_token::ClientClaims;
use serde_json::{Value, json};

async fn login(
    http: &reqwest::Client,
    base: &str,
    user: &str,
    password: &str,
) -> reqwest::Response {
    http.post(format!("{base}/auth/login"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
}

/// Logs in and answers the token pair, failing the test otherwise.
async fn tokens(http: &reqwest::Client, base: &str, user: &str, password: &str) -> Value {
    let r = login(http, base, user, password).await;
    assert_eq!(r.status(), 200, "login {user}: {:?}", r.text().await);
    r.json().await.unwrap()
}

async fn refresh(http: &reqwest::Client, base: &str, token: &str) -> reqwest::Response {
    http.post(format!("{base}/auth/refresh"))
        .json(&json!({"refresh_token": token}))
        .send()
        .await
        .unwrap()
}

async fn create_user(
    http: &reqwest::Client,
    p: &Pipeline,
    admin: &str,
    user: &str,
    password: &str,
) -> Value {
    let r = http
        .post(format!("{}/auth/users", p.gateway))
        .bearer_auth(admin)
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    r.json().await.unwrap()
}

/// The initial administrator's access token (the pipeline waited for `/ready`, which
/// holds until the administrator exists).
async fn admin_token(http: &reqwest::Client, p: &Pipeline) -> String {
    let v = tokens(http, &p.gateway, ADMIN.0, ADMIN.1).await;
    v["access_token"].as_str().unwrap().to_string()
}

async fn open(http: &reqwest::Client, p: &Pipeline, token: &str) -> u16 {
    http.post(format!("{}/api/sessions", p.gateway))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_user_logs_in_through_the_gateway_refreshes_and_logs_out() {
    let p = Pipeline::start();
    let http = reqwest::Client::new();
    let admin = admin_token(&http, &p).await;
    let made = create_user(&http, &p, &admin, "Ann", "ann-password-1").await;
    assert!(made.get("password_hash").is_none(), "{made}");

    // The name as typed another way (case, full width) is the same user.
    let pair = tokens(&http, &p.gateway, "ＡＮＮ", "ann-password-1").await;
    assert_eq!(pair["token_type"], "Bearer");
    assert!(pair["expires_in"].as_u64().unwrap() <= 3600);
    let access = pair["access_token"].as_str().unwrap();
    // A token from the auth service opens a session at the gateway, owned by the user's id.
    assert_eq!(open(&http, &p, access).await, 201);
    let me: Value = http
        .get(format!("{}/auth/me", p.gateway))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "Ann");
    assert_eq!(me["user_id"], made["user_id"]);
    assert_eq!(me["admin"], false);

    // Refresh: a new pair; the old refresh token is spent.
    let first = pair["refresh_token"].as_str().unwrap().to_string();
    let r = refresh(&http, &p.gateway, &first).await;
    assert_eq!(r.status(), 200);
    let second: Value = r.json().await.unwrap();
    let second_refresh = second["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(second_refresh, first);
    assert_eq!(
        open(&http, &p, second["access_token"].as_str().unwrap()).await,
        201
    );
    let third: Value = refresh(&http, &p.gateway, &second_refresh)
        .await
        .json()
        .await
        .unwrap();
    let third_refresh = third["refresh_token"].as_str().unwrap().to_string();

    // The stolen-token case: a spent token comes back. The whole login is revoked, so the
    // legitimate holder's current token dies too.
    let r = refresh(&http, &p.gateway, &first).await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("already used"));
    assert_eq!(
        refresh(&http, &p.gateway, &third_refresh).await.status(),
        401
    );
    assert_eq!(refresh(&http, &p.gateway, "made-up").await.status(), 401);

    // Logout ends the login; another login of the same user is untouched.
    let a = tokens(&http, &p.gateway, "ann", "ann-password-1").await;
    let b = tokens(&http, &p.gateway, "ann", "ann-password-1").await;
    let r = http
        .post(format!("{}/auth/logout", p.gateway))
        .json(&json!({"refresh_token": a["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        refresh(&http, &p.gateway, a["refresh_token"].as_str().unwrap())
            .await
            .status(),
        401
    );
    let r = refresh(&http, &p.gateway, b["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);
    // Logout with the access token alone (its login).
    let b2: Value = r.json().await.unwrap();
    let r = http
        .post(format!("{}/auth/logout", p.gateway))
        .bearer_auth(b2["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        refresh(&http, &p.gateway, b2["refresh_token"].as_str().unwrap())
            .await
            .status(),
        401
    );

    // Only the hash of a refresh token is stored.
    let mut redis = redis::Client::open(format!("redis://127.0.0.1:{}", p.redis_port))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut redis)
        .await
        .unwrap();
    for k in &keys {
        let v: String = redis::cmd("TYPE")
            .arg(k)
            .query_async(&mut redis)
            .await
            .unwrap();
        let value: String = if v == "string" {
            redis::cmd("GET")
                .arg(k)
                .query_async(&mut redis)
                .await
                .unwrap()
        } else {
            String::new()
        };
        for t in [&first, &second_refresh, &third_refresh] {
            assert!(
                !k.contains(t.as_str()) && !value.contains(t.as_str()),
                "{k}"
            );
        }
    }
    assert!(keys.iter().any(|k| k.starts_with("auth:rt:")), "{keys:?}");
}

#[tokio::test]
async fn unknown_users_and_wrong_passwords_get_one_answer_in_similar_time() {
    let p = Pipeline::start();
    let http = reqwest::Client::new();
    let admin = admin_token(&http, &p).await;
    create_user(&http, &p, &admin, "bob", "bob-password-1").await;
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    let mut answers = Vec::new();
    for i in 0..3 {
        let t = Instant::now();
        let r = login(&http, &p.gateway, "bob", &format!("not-it-{i}")).await;
        wrong.push(t.elapsed());
        assert_eq!(r.status(), 401);
        answers.push(r.json::<Value>().await.unwrap()["error"].clone());
        let t = Instant::now();
        let r = login(&http, &p.gateway, &format!("ghost{i}"), "whatever-1").await;
        unknown.push(t.elapsed());
        assert_eq!(r.status(), 401);
        answers.push(r.json::<Value>().await.unwrap()["error"].clone());
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    wrong.sort();
    unknown.sort();
    // Medians: an unknown name is checked against a dummy hash of the same cost, so it
    // takes as long as a wrong password (within a factor two on a busy machine).
    let (w, u) = (wrong[1].as_secs_f64(), unknown[1].as_secs_f64());
    assert!(
        u > w / 2.0 && u < w * 2.0,
        "wrong password {w:.3}s, unknown user {u:.3}s"
    );
}

#[tokio::test]
async fn failed_logins_are_slowed_then_locked_and_the_lock_expires() {
    let p = Pipeline::start_with(&[
        ("LOGIN_FREE_FAILURES", "1"),
        ("LOGIN_MAX_FAILURES_PER_USER", "3"),
        ("LOGIN_LOCK_SECONDS", "5"),
        ("LOGIN_MAX_FAILURES_PER_ADDRESS", "1000"),
    ]);
    let http = reqwest::Client::new();
    let admin = admin_token(&http, &p).await;
    create_user(&http, &p, &admin, "carol", "carol-password").await;

    // The same sequence of answers for a real user and a name nobody has.
    for name in ["carol", "nobody"] {
        let mut trail = Vec::new();
        for _ in 0..2 {
            trail.push(
                login(&http, &p.gateway, name, "wrong-password")
                    .await
                    .status()
                    .as_u16(),
            );
        }
        // Past the free failure: the next try must wait (slowed), told how long.
        let r = login(&http, &p.gateway, name, "wrong-password").await;
        assert_eq!(r.status(), 429, "{name} slowed");
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=2).contains(&retry), "{retry}");
        trail.push(429);
        // Once the wait passed, the third failure locks the name.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = login(&http, &p.gateway, name, "wrong-password")
                .await
                .status();
            if status == 401 {
                break;
            }
            assert_eq!(status, 429);
            assert!(Instant::now() < deadline, "still slowed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        trail.push(401);
        assert_eq!(trail, [401, 401, 429, 401], "{name}");
        // Locked: even the right password waits.
        let r = login(&http, &p.gateway, name, "carol-password").await;
        assert_eq!(r.status(), 429, "{name} locked");
        assert!(r.headers().contains_key("retry-after"));
    }
    // Other users are not locked.
    assert_eq!(
        login(&http, &p.gateway, ADMIN.0, ADMIN.1).await.status(),
        200
    );
    // The lock expires.
    eventually(Duration::from_secs(20), "the lock expires", || async {
        login(&http, &p.gateway, "carol", "carol-password")
            .await
            .status()
            == 200
    })
    .await;
}

#[tokio::test]
async fn one_address_is_locked_after_its_failures_whatever_it_claims_to_be() {
    let p = Pipeline::start_with(&[
        ("LOGIN_MAX_FAILURES_PER_ADDRESS", "3"),
        ("LOGIN_LOCK_SECONDS", "60"),
    ]);
    let http = reqwest::Client::new();
    let admin = admin_token(&http, &p).await;
    create_user(&http, &p, &admin, "dave", "dave-password").await;
    for i in 0..3 {
        // A different name each time: only the address's count grows. The client's own
        // X-Forwarded-For is not believed.
        let r = http
            .post(format!("{}/auth/login", p.gateway))
            .header("x-forwarded-for", format!("10.0.0.{i}"))
            .json(&json!({"username": format!("guess{i}"), "password": "password-x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = http
        .post(format!("{}/auth/login", p.gateway))
        .header("x-forwarded-for", "10.9.9.9")
        .json(&json!({"username": "dave", "password": "dave-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "the address is locked");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 30 && retry <= 60, "{retry}");
    // Straight to the auth service, a made-up forwarding token does not help either.
    let r = http
        .post(format!("{}/auth/login", p.auth))
        .header("x-forwarded-for", "10.9.9.9")
        .header("x-lucid-gateway-token", service_token("lucid-auth-service"))
        .json(&json!({"username": "dave", "password": "dave-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        429,
        "session-recorder's token vouches for nothing"
    );
}

#[tokio::test]
async fn disabled_users_and_reset_passwords_end_their_logins() {
    let p = Pipeline::start();
    let http = reqwest::Client::new();
    let admin = admin_token(&http, &p).await;
    let erin = create_user(&http, &p, &admin, "erin", "erin-password").await;
    let id = erin["user_id"].as_str().unwrap();
    let pair = tokens(&http, &p.gateway, "erin", "erin-password").await;
    let access = pair["access_token"].as_str().unwrap();

    // Only an administrator manages users.
    let r = http
        .post(format!("{}/auth/users/{id}/disable", p.gateway))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .get(format!("{}/auth/users", p.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A name that folds to an existing one is taken.
    let r = http
        .post(format!("{}/auth/users", p.gateway))
        .bearer_auth(&admin)
        .json(&json!({"username": "ERIN", "password": "another-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);

    let r = http
        .post(format!("{}/auth/users/{id}/disable", p.gateway))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["disabled"], true);
    let r = login(&http, &p.gateway, "erin", "erin-password").await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "unknown user or wrong password"
    );
    assert_eq!(
        refresh(&http, &p.gateway, pair["refresh_token"].as_str().unwrap())
            .await
            .status(),
        401
    );
    let r = http
        .get(format!("{}/auth/me", p.gateway))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Enabled again and its password reset: the new password works, the old does not.
    for (path, body) in [
        ("enable", json!(null)),
        ("password", json!({"password": "erin-new-password"})),
    ] {
        let mut r = http
            .post(format!("{}/auth/users/{id}/{path}", p.gateway))
            .bearer_auth(&admin);
        if !body.is_null() {
            r = r.json(&body);
        }
        assert_eq!(r.send().await.unwrap().status(), 200, "{path}");
    }
    assert_eq!(
        login(&http, &p.gateway, "erin", "erin-password")
            .await
            .status(),
        401
    );
    let fresh = tokens(&http, &p.gateway, "erin", "erin-new-password").await;
    assert_eq!(
        open(&http, &p, fresh["access_token"].as_str().unwrap()).await,
        201
    );
    let list: Vec<Value> = http
        .get(format!("{}/auth/users", p.gateway))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(list.iter().any(|u| u["username"] == "erin"));
    assert!(list.iter().all(|u| u.get("password_hash").is_none()));
}

/// `header.claims.signature` from parts, for tokens no library would make.
fn forge(header: Value, claims: &ClientClaims, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

#[tokio::test]
async fn every_refused_token_form_is_refused_at_the_gateway_and_the_auth_service() {
    let p = Pipeline::start();
    let http = reqwest::Client::new();
    let key = signing_key();
    let kid = key.kid().to_string();
    let good = client_claims("frank", 300);
    let public = URL_SAFE_NO_PAD.decode(&key.jwks().keys[0].x).unwrap();
    let hs256_with_public_key = {
        use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        encode(&header, &good, &EncodingKey::from_secret(&public)).unwrap()
    };
    let foreign = lucid_services::client_token::SigningKey::from_pem(
        &lucid_services::client_token::SigningKey::generate_pem().unwrap(),
    )
    .unwrap();
    let mut foreign_kid_named_ours: Vec<String> = foreign
        .sign(&good)
        .unwrap()
        .split('.')
        .map(String::from)
        .collect();
    foreign_kid_named_ours[0] =
        URL_SAFE_NO_PAD.encode(json!({"alg": "EdDSA", "kid": kid}).to_string());
    let now = lucid_client::token::now();
    let refused = [
        (
            "alg none",
            forge(json!({"alg": "none", "kid": kid}), &good, b""),
        ),
        ("HS256 signed with the public key", hs256_with_public_key),
        ("a kid naming another key", foreign.sign(&good).unwrap()),
        (
            "another key's token naming our kid",
            foreign_kid_named_ours.join("."),
        ),
        ("expired", sign_client(&client_claims("frank", -60))),
        (
            "not yet valid",
            sign_client(&ClientClaims {
                nbf: Some(now + 300),
                exp: now + 600,
                ..good.clone()
            }),
        ),
        (
            "for another audience",
            sign_client(&ClientClaims {
                aud: "session-storage".into(),
                ..good.clone()
            }),
        ),
        ("a service token", service_token("api-gateway")),
        (
            "the gateway's own service token",
            gateway_token_for("frank"),
        ),
    ];
    for (why, token) in &refused {
        assert_eq!(open(&http, &p, token).await, 401, "gateway: {why}");
        let r = http
            .get(format!("{}/auth/me", p.gateway))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "auth service: {why}");
        assert!(r.headers().contains_key("www-authenticate"), "{why}");
    }
    assert_eq!(
        open(&http, &p, &sign_client(&good)).await,
        201,
        "the good one"
    );
}

#[tokio::test]
async fn oversized_and_malformed_bodies_are_refused_in_json_and_change_nothing() {
    let p = Pipeline::start();
    let http = reqwest::Client::new();
    let admin = admin_token(&http, &p).await;
    let huge = json!({"username": "x", "password": "p".repeat(40_000)}).to_string();
    for base in [&p.gateway, &p.auth] {
        for path in ["/auth/login", "/auth/refresh"] {
            let r = http
                .post(format!("{base}{path}"))
                .header("content-type", "application/json")
                .body(huge.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 413, "{base}{path}");
            let v: Value = r.json().await.unwrap();
            assert!(v["error"].as_str().unwrap().contains("larger"), "{v}");
            for bad in [
                "{",
                "[]",
                r#"{"username": 1}"#,
                r#"{"refresh_token":"a","extra":1}"#,
                "",
            ] {
                let r = http
                    .post(format!("{base}{path}"))
                    .body(bad)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 400, "{base}{path} {bad:?}");
                assert!(r.json::<Value>().await.unwrap()["error"].is_string());
            }
        }
    }
    // A streamed (chunked) oversized body, no Content-Length.
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..40).map(|_| Ok(vec![b' '; 1024])).collect();
    let r = http
        .post(format!("{}/auth/login", p.gateway))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // A user with a bad name or a short password is not made.
    for (name, password) in [
        ("a b", "long-enough-pw"),
        ("ok-name", "short"),
        ("", "long-enough-pw"),
    ] {
        let r = http
            .post(format!("{}/auth/users", p.gateway))
            .bearer_auth(&admin)
            .json(&json!({"username": name, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{name:?}");
    }
    let list: Vec<Value> = http
        .get(format!("{}/auth/users", p.gateway))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 1, "only the administrator: {list:?}");
}

#[tokio::test]
async fn the_initial_admin_password_is_never_logged_and_the_api_is_documented() {
    let p = Pipeline::start();
    let http = reqwest::Client::new();
    // Another auth service on a fresh database: it makes the administrator, logging.
    let (port, admin_port) = (free_port(), free_port());
    let log = p.dir.join("auth.log");
    let mut cmd = p.command("lucid-auth-service");
    cmd.env("LUCID_AUTH_SERVICE_PORT", port.to_string())
        .env("LUCID_AUTH_SERVICE_ADMIN_PORT", admin_port.to_string())
        .env("MONGODB_DATABASE", "fresh")
        .env("LOG_LEVEL", "debug")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(p.dir.join("auth.err")).unwrap());
    let _auth = Proc(cmd.spawn().unwrap());
    wait_port(port);
    let base = format!("http://127.0.0.1:{port}");
    // Ready once the administrator exists.
    eventually(
        Duration::from_secs(30),
        "the new auth service is ready",
        || async { http_status(admin_port, "/ready") == Some(200) },
    )
    .await;
    assert_eq!(login(&http, &base, ADMIN.0, ADMIN.1).await.status(), 200);
    let _ = login(&http, &base, ADMIN.0, "a-wrong-password").await;
    let text = std::fs::read_to_string(&log).unwrap()
        + &std::fs::read_to_string(p.dir.join("auth.err")).unwrap();
    assert!(text.contains("initial administrator created"), "{text}");
    assert!(
        !text.contains(ADMIN.1) && !text.contains("a-wrong-password"),
        "{text}"
    );
    assert!(!text.contains("PRIVATE KEY"), "{text}");

    // The OpenAPI document (the auth service's, and the gateway's, which relays /auth/*)
    // and request ids, as in the other services.
    for base in [&p.auth, &p.gateway] {
        let doc: Value = http
            .get(format!("{base}/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for path in [
            "/auth/login",
            "/auth/refresh",
            "/auth/logout",
            "/auth/me",
            "/auth/users",
        ] {
            assert!(doc["paths"][path].is_object(), "{base} {path}");
        }
    }
    let r = http
        .post(format!("{}/auth/login", p.gateway))
        .header("x-request-id", "req-auth-1")
        .json(&json!({"username": "nobody", "password": "password-x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "req-auth-1");
}

#[tokio::test]
async fn without_their_keys_or_with_weak_hashing_the_auth_service_and_gateway_refuse_to_start() {
    let p = Pipeline::start();
    let run = |name: &str, env: &[(&str, Option<&str>)]| {
        let mut cmd = p.command(name);
        for (k, v) in env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, err) = run("lucid-auth-service", &[("AUTH_SIGNING_KEY", None)]);
    assert!(!ok && err.contains("AUTH_SIGNING_KEY"), "{err}");
    let garbage =
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----";
    let (ok, err) = run("lucid-auth-service", &[("AUTH_SIGNING_KEY", Some(garbage))]);
    assert!(!ok && err.contains("Ed25519"), "{err}");
    assert!(!err.contains("c2VjcmV0"), "printed the key: {err}");
    let (ok, err) = run("lucid-auth-service", &[("ARGON2_MEMORY_KIB", Some("4096"))]);
    assert!(!ok && err.contains("OWASP"), "{err}");
    let (ok, err) = run(
        "lucid-auth-service",
        &[("ACCESS_TOKEN_SECONDS", Some("86400"))],
    );
    assert!(!ok && err.contains("ACCESS_TOKEN_SECONDS"), "{err}");
    let (ok, err) = run("api-gateway", &[("AUTH_PUBLIC_KEYS", None)]);
    assert!(!ok && err.contains("AUTH_PUBLIC_KEYS"), "{err}");
    // The private key where the public one belongs is refused too.
    let (ok, err) = run("api-gateway", &[("AUTH_PUBLIC_KEYS", Some(signing_pem()))]);
    assert!(!ok && err.contains("AUTH_PUBLIC_KEYS"), "{err}");
    assert!(!err.contains("PRIVATE"), "printed the key: {err}");
}
