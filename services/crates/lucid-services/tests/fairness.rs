//! No user can lock the others out: per-user shares of the limits, bodies held to a pace,
//! idle connections making room, and nothing internal in public answers. On loopback with
//! real redis-server and nx-27017 (see `common`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use lucid_services::client_token::ClientClaims;
use serde_json::Value;

/// One byte every `every`, `count` times: a body that never stalls long enough for an
/// idle timeout.
fn trickle(count: usize, every: Duration) -> reqwest::Body {
    reqwest::Body::wrap_stream(futures::stream::unfold(0, move |i| async move {
        if i == count {
            return None;
        }
        tokio::time::sleep(every).await;
        Some((Ok::<_, std::io::Error>(Bytes::from_static(b"x")), i + 1))
    }))
}

/// The status of the response a raw connection gets, if one comes within `within`.
fn status_of(c: &mut TcpStream, within: Duration) -> Option<u16> {
    c.set_read_timeout(Some(within)).ok()?;
    let mut head = [0u8; 12];
    c.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

fn addr(base: &str) -> String {
    base.trim_start_matches("http://").to_string()
}

#[tokio::test]
async fn a_trickling_user_holds_no_upload_slot_from_others_and_is_cut_at_the_minimum_rate() {
    // Default upload slots (16) and default per-user shares; the rate measured over 6 s.
    let p = Pipeline::start_with(&[
        ("HTTP_BODY_MIN_BYTES_PER_SECOND", "1000"),
        ("HTTP_BODY_RATE_WINDOW_SECONDS", "6"),
    ]);
    let http = reqwest::Client::new();
    let mallory = user_token("mallory", 300);
    let mut attack = Vec::new();
    for _ in 0..16 {
        let id = open_session(&http, &p, &mallory).await;
        let (http, url, token) = (
            http.clone(),
            format!("{}/api/sessions/{id}/data", p.gateway),
            mallory.clone(),
        );
        attack.push(tokio::spawn(async move {
            let started = Instant::now();
            // A byte every 500 ms for a minute: never idle for the 75 s idle timeout.
            let r = http
                .put(url)
                .bearer_auth(token)
                .body(trickle(120, Duration::from_millis(500)))
                .send()
                .await;
            (r.map(|r| r.status().as_u16()).ok(), started.elapsed())
        }));
    }
    let recorder_admin = p.admin("session-recorder");
    eventually(
        Duration::from_secs(10),
        "mallory's uploads hold recorder slots",
        || {
            let (http, admin) = (http.clone(), recorder_admin.clone());
            async move {
                metric(&http, &admin, "lucid_uploads_in_flight")
                    .await
                    .is_some_and(|n| n >= 1.0)
            }
        },
    )
    .await;
    // While the attack runs, another user's upload goes through.
    let alice = user_token("alice", 300);
    let id = open_session(&http, &p, &alice).await;
    let started = Instant::now();
    let r = http
        .put(format!("{}/api/sessions/{id}/data", p.gateway))
        .bearer_auth(&alice)
        .body(pseudo_random(300_000, 9))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let held = metric(&http, &recorder_admin, "lucid_uploads_in_flight").await;
    println!("alice's 300 kB upload took {took:?} during the attack ({held:?} slots held after)");
    assert!(
        held.is_some_and(|n| n >= 1.0),
        "the attack still ran when alice's upload ended: {held:?}"
    );
    assert!(
        held.is_some_and(|n| n <= 4.0),
        "mallory holds at most MAX_CONCURRENT_UPLOADS_PER_USER (4): {held:?}"
    );
    // The trickles that got a slot end with 408 at the first rate window, the others were
    // refused at once; none is recorded.
    let mut statuses = Vec::new();
    for a in attack {
        let (status, elapsed) = a.await.unwrap();
        assert!(
            elapsed < Duration::from_secs(20),
            "{status:?} after {elapsed:?}"
        );
        statuses.push(status);
    }
    println!("mallory's uploads: {statuses:?}");
    assert!(statuses.iter().all(|s| *s != Some(200)), "{statuses:?}");
    assert!(statuses.contains(&Some(408)), "{statuses:?}");
    assert!(statuses.contains(&Some(429)), "{statuses:?}");
}

#[tokio::test]
async fn open_sessions_are_capped_per_user_and_a_huge_subject_is_refused() {
    let p = Pipeline::start_with(&[("MAX_OPEN_SESSIONS_PER_USER", "3")]);
    let http = reqwest::Client::new();
    let mallory = user_token("mallory", 300);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(open_session(&http, &p, &mallory).await);
    }
    let r = http
        .post(format!("{}/api/sessions", p.gateway))
        .bearer_auth(&mallory)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("MAX_OPEN_SESSIONS_PER_USER"),
        "{body}"
    );
    // Another user is not affected.
    open_session(&http, &p, &user_token("alice", 300)).await;
    // A finalized session no longer counts.
    let r = http
        .post(format!("{}/api/sessions/{}/finalize", p.gateway, ids[0]))
        .bearer_auth(&mallory)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    open_session(&http, &p, &mallory).await;
    // A 250 kB subject would be stored with every session: refused. (Its `name` kept
    // short: both in one header would pass hyper's header size, 431 before the check.)
    let huge = sign_client(&ClientClaims {
        name: "mallory".into(),
        ..client_claims(&"u".repeat(250_000), 300)
    });
    let r = http
        .post(format!("{}/api/sessions", p.gateway))
        .bearer_auth(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "{:?}", r.text().await);
}

#[tokio::test]
async fn slow_session_bodies_of_one_user_leave_the_gateway_to_the_others() {
    let p = Pipeline::start_with(&[("HTTP_BODY_READ_TIMEOUT_SECONDS", "10")]);
    let mallory = user_token("mallory", 300);
    // 64 POSTs (the gateway's whole HTTP_MAX_CONCURRENT_REQUESTS) that send one byte of
    // a 100-byte body and stop.
    let attack = Instant::now();
    let mut slow: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut c = TcpStream::connect(addr(&p.gateway)).unwrap();
            write!(
                c,
                "POST /api/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {mallory}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
            )
            .unwrap();
            c
        })
        .collect();
    // Beyond mallory's share they are answered 429 at once, without reading the body.
    let mut answered = Vec::new();
    for c in &mut slow {
        answered.push(status_of(c, Duration::from_millis(200)));
    }
    let refused = answered.iter().filter(|s| **s == Some(429)).count();
    assert_eq!(refused, 56, "{answered:?}");
    // Meanwhile (the held ones wait for their body for 10 s) another user opens a
    // session at once.
    let started = Instant::now();
    let r = reqwest::Client::new()
        .post(format!("{}/api/sessions", p.gateway))
        .bearer_auth(user_token("alice", 300))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        attack.elapsed() < Duration::from_secs(10),
        "alice came during the attack"
    );
    // The held ones end with 408 at the body deadline, not the 60 s request timeout.
    let mut timed_out = 0;
    for (c, status) in slow.iter_mut().zip(&answered) {
        let status = match status {
            Some(429) => continue,
            None => status_of(c, Duration::from_secs(15)),
            Some(s) => Some(*s),
        };
        assert_eq!(status, Some(408));
        timed_out += 1;
    }
    assert_eq!(timed_out, 8);
    assert!(
        attack.elapsed() < Duration::from_secs(20),
        "{:?}",
        attack.elapsed()
    );
}

#[tokio::test]
async fn idle_connections_make_room_at_the_cap_and_refusals_are_logged_sparingly() {
    let p = Pipeline::start_with(&[("HTTP_MAX_CONNECTIONS", "4")]);
    let storage = format!("127.0.0.1:{}", p.storage_port);
    // Four connections that never send a request hold the whole cap...
    let silent: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(&storage).unwrap())
        .collect();
    // ...and a client still gets its answer: the longest-idle one is closed for it.
    let r = reqwest::get(format!("http://{storage}/health"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut closed = 0;
    eventually(
        Duration::from_secs(5),
        "an idle connection was closed",
        || {
            closed = silent
                .iter()
                .filter(|c| {
                    let mut c: &TcpStream = c;
                    c.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
                    let mut b = [0u8; 1];
                    !matches!(c.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                })
                .count();
            let done = closed > 0;
            async move { done }
        },
    )
    .await;
    assert_eq!(closed, 1, "one made room, the others stay");
    assert!(
        metric(
            &reqwest::Client::new(),
            &p.admin("session-storage"),
            "lucid_http_connections_evicted_total"
        )
        .await
        .is_some_and(|n| n >= 1.0)
    );

    // Every connection busy: new ones are closed, with one log line for many.
    let log = p.dir.join("gateway-cap.log");
    let admin_port = free_port().to_string();
    let (_gateway, gateway) = p.another_gateway(
        &[
            ("HTTP_MAX_CONNECTIONS", "2"),
            ("HTTP_BODY_READ_TIMEOUT_SECONDS", "60"),
            ("API_GATEWAY_ADMIN_PORT", &admin_port),
        ],
        Some(&log),
    );
    let admin = format!("http://127.0.0.1:{admin_port}");
    let token = client_token(300);
    let http = reqwest::Client::new();
    let mut busy = Vec::new();
    for n in 1..=2 {
        let mut c = TcpStream::connect(addr(&gateway)).unwrap();
        write!(
            c,
            "POST /api/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 100\r\n\r\n{{"
        )
        .unwrap();
        busy.push(c);
        eventually(Duration::from_secs(10), "the request in a handler", || {
            let (http, admin) = (http.clone(), admin.clone());
            async move {
                metric(&http, &admin, "lucid_http_requests_in_flight").await == Some(n as f64)
            }
        })
        .await;
    }
    for _ in 0..200 {
        let mut c = TcpStream::connect(addr(&gateway)).unwrap();
        let _ = c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(status_of(&mut c, Duration::from_secs(5)), None, "refused");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let lines = text
        .lines()
        .filter(|l| l.contains("connection limit"))
        .count();
    assert!(
        (1..=2).contains(&lines),
        "{lines} lines for 200 refusals:\n{text}"
    );
}

#[tokio::test]
async fn chunk_reads_beyond_the_limit_are_shed() {
    let p = Pipeline::start();
    let http = reqwest::Client::new();
    let token = client_token(300);
    let id = open_session(&http, &p, &token).await;
    let r = http
        .put(format!("{}/api/sessions/{id}/data", p.gateway))
        .bearer_auth(&token)
        .body(pseudo_random(1000, 3))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let manifest: Value = http
        .post(format!("{}/api/sessions/{id}/finalize", p.gateway))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let address = manifest["chunks"][0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    // A storage that accepts and never answers: the first read holds the only slot.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let (_gateway, gateway) = p.another_gateway(
        &[
            ("SESSION_STORAGE_URL", &silent_url),
            ("MAX_CONCURRENT_CHUNK_READS", "1"),
            ("SERVICE_TIMEOUT_SECONDS", "30"),
        ],
        None,
    );
    let url = format!("{gateway}/api/chunks/{address}");
    let first = tokio::spawn({
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        async move { http.get(url).bearer_auth(token).send().await }
    });
    silent.set_nonblocking(true).unwrap();
    let mut held = Vec::new();
    eventually(
        Duration::from_secs(10),
        "the first read reached storage",
        || {
            if let Ok((c, _)) = silent.accept() {
                held.push(c);
            }
            let reached = !held.is_empty();
            async move { reached }
        },
    )
    .await;
    let r = http
        .get(&url)
        .bearer_auth(&token)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("answered at once, not queued behind the first read");
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_some());
    first.abort();
}

#[tokio::test]
async fn the_first_redis_command_after_a_redis_restart_succeeds() {
    let mut p = Pipeline::start();
    let http = reqwest::Client::new();
    let token = client_token(300);
    open_session(&http, &p, &token).await;
    p.stop_redis();
    p.start_redis();
    // No probe in between: the recorder's first command after the restart.
    let r = http
        .post(format!("{}/api/sessions", p.gateway))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
}

#[tokio::test]
async fn a_password_in_a_peer_url_is_printed_nowhere() {
    let p = Pipeline::start();
    // At start: a recorder refusing a peer URL does not print its password.
    let out = p
        .command("session-recorder")
        .env_remove("LUCID_ENV")
        .env("SESSION_STORAGE_URL", "http://svc:PW-s3cret@127.0.0.1:8081")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.contains("SESSION_STORAGE") || printed.contains("session-storage"),
        "{printed}"
    );
    assert!(!printed.contains("PW-s3cret"), "{printed}");

    // In the JSON log: a peer URL with a password that nobody answers.
    let log = p.dir.join("gateway-redact.log");
    let nobody = format!("http://svc:PW-s3cret@127.0.0.1:{}", free_port());
    let (_gateway, gateway) = p.another_gateway(
        &[
            ("SESSION_RECORDER_URL", &nobody),
            ("SERVICE_RETRY_COUNT", "0"),
        ],
        Some(&log),
    );
    let http = reqwest::Client::new();
    let token = client_token(300);
    let r = http
        .post(format!("{gateway}/api/sessions"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let mut text = String::new();
    eventually(Duration::from_secs(5), "the failure is logged", || {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        let done = text.contains("request failed");
        async move { done }
    })
    .await;
    assert!(!text.contains("PW-s3cret"), "{text}");
}

#[tokio::test]
async fn a_relayed_4xx_names_no_internal_route() {
    let p = Pipeline::start();
    let http = reqwest::Client::new();
    let token = client_token(300);
    let unknown = "0123456789abcdef0123456789abcdef";
    let r = http
        .get(format!("{}/api/sessions/{unknown}/manifest", p.gateway))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body = r.text().await.unwrap();
    assert!(
        !body.contains("session-recorder") && !body.contains("/sessions/"),
        "{body}"
    );
}

#[tokio::test]
async fn the_public_ready_names_no_dependency_error() {
    let mut p = Pipeline::start();
    let http = reqwest::Client::new();
    p.stop_redis();
    let recorder = format!("http://127.0.0.1:{}", p.recorder_port);
    eventually(
        Duration::from_secs(10),
        "/ready fails without Redis",
        || {
            let (http, url) = (http.clone(), format!("{recorder}/ready"));
            async move { http.get(url).send().await.is_ok_and(|r| r.status() == 503) }
        },
    )
    .await;
    let public = http
        .get(format!("{recorder}/ready"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(public.contains("redis"), "{public}");
    assert!(
        !public.contains("127.0.0.1") && !public.to_lowercase().contains("refused"),
        "{public}"
    );
    let admin = http
        .get(format!("{}/ready", p.admin("session-recorder")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_ne!(admin, public, "the admin port gives the detail");
}

#[tokio::test]
async fn openapi_documents_give_id_patterns_and_the_common_answers() {
    let p = Pipeline::start();
    let http = reqwest::Client::new();
    for base in [
        p.gateway.clone(),
        format!("http://127.0.0.1:{}", p.recorder_port),
        format!("http://127.0.0.1:{}", p.storage_port),
        p.auth.clone(),
    ] {
        let doc: Value = http
            .get(format!("{base}/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut patterns = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                // A login or the JWKS needs no token (`security: [{}]`): no 401 for one.
                let public = op["security"].as_array().is_some_and(|s| {
                    s.iter()
                        .any(|r| r.as_object().is_some_and(|r| r.is_empty()))
                });
                for code in ["400", "401"] {
                    if code == "401" && public {
                        continue;
                    }
                    assert!(
                        op["responses"][code].is_object(),
                        "{base} {method} {path} lacks {code}"
                    );
                }
                for param in op["parameters"].as_array().into_iter().flatten() {
                    let pattern = param["schema"]["pattern"].as_str();
                    match param["name"].as_str() {
                        Some("id") => assert_eq!(pattern, Some("^[0-9a-f]{32}$"), "{path}"),
                        Some("address") => assert_eq!(pattern, Some("^[0-9a-f]{64}$"), "{path}"),
                        _ => continue,
                    }
                    patterns += 1;
                }
            }
        }
        assert!(patterns > 0, "{base}: no id or address parameter in {doc}");
    }
}

#[tokio::test]
async fn keep_alive_connections_last_the_idle_timeout_not_the_header_timeout() {
    let p = Pipeline::start_with(&[
        ("HTTP_HEADER_READ_TIMEOUT_SECONDS", "1"),
        ("HTTP_IDLE_TIMEOUT_SECONDS", "4"),
    ]);
    // A keep-alive connection outlives the 1 s header timeout while idle...
    let mut c = TcpStream::connect(("127.0.0.1", p.storage_port)).unwrap();
    let get = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    c.write_all(get).unwrap();
    assert_eq!(status_of(&mut c, Duration::from_secs(5)), Some(200));
    let mut rest = [0u8; 4096];
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let _ = c.read(&mut rest);
    std::thread::sleep(Duration::from_millis(2500));
    c.write_all(get).unwrap();
    assert_eq!(
        status_of(&mut c, Duration::from_secs(5)),
        Some(200),
        "still open after 2.5 s idle"
    );
    // ...and is closed at the idle timeout.
    let started = Instant::now();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut all = Vec::new();
    let _ = c.read_to_end(&mut all);
    let idle = started.elapsed();
    assert!(
        idle > Duration::from_secs(3) && idle < Duration::from_secs(7),
        "closed after {idle:?}"
    );
}

#[tokio::test]
async fn a_lower_case_bearer_scheme_is_accepted() {
    let p = Pipeline::start();
    let http = reqwest::Client::new();
    // RFC 6750: the scheme is case-insensitive.
    let r = http
        .post(format!("{}/api/sessions", p.gateway))
        .header("authorization", format!("bearer {}", client_token(300)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
}

#[tokio::test]
async fn an_oversized_session_body_gets_a_json_413() {
    let p = Pipeline::start();
    // Announced larger than any limit: answered before a byte of it is sent.
    let mut c = TcpStream::connect(addr(&p.gateway)).unwrap();
    write!(
        c,
        "POST /api/sessions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        client_token(300),
        3 << 20
    )
    .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = Vec::new();
    let _ = c.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert!(
        body["error"].is_string() && body["request_id"].is_string(),
        "{body}"
    );
}
