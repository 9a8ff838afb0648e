//! Denial of service on loopback: byte limits, slow and stalled uploads, slowloris,
//! concurrent large bodies, metrics on the admin port.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;

fn finalize_chunks(v: &serde_json::Value) -> usize {
    v["chunks"].as_array().map(Vec::len).unwrap_or(usize::MAX)
}

async fn finalize(
    http: &reqwest::Client,
    p: &Pipeline,
    id: &str,
    token: &str,
) -> serde_json::Value {
    let r = http
        .post(format!("{}/api/sessions/{id}/finalize", p.gateway))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Pieces of `size` bytes, `every` apart, `count` of them.
fn paced(count: usize, size: usize, every: Duration) -> reqwest::Body {
    reqwest::Body::wrap_stream(futures::stream::unfold(0, move |i| async move {
        if i == count {
            return None;
        }
        tokio::time::sleep(every).await;
        Some((
            Ok::<_, std::io::Error>(Bytes::from(pseudo_random(size, i as u64 + 1))),
            i + 1,
        ))
    }))
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_and_record_nothing() {
    let p = Pipeline::start_with(&[("MAX_UPLOAD_BYTES", "300000")]);
    let http = reqwest::Client::new();
    let token = client_token(300);
    let id = open_session(&http, &p, &token).await;
    // Streamed without a length through the gateway: cut at the limit.
    let r = http
        .put(format!("{}/api/sessions/{id}/data", p.gateway))
        .bearer_auth(&token)
        .body(paced(5, 80_000, Duration::from_millis(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413, "{:?}", r.text().await);
    // Straight to the recorder (no gateway to stop it): its own count stops it.
    let recorder = format!("http://127.0.0.1:{}", p.recorder_port);
    let r = http
        .put(format!("{recorder}/sessions/{id}/data"))
        .bearer_auth(gateway_token_for("user-1"))
        .body(paced(5, 80_000, Duration::from_millis(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413, "{:?}", r.text().await);
    // Announced too large: refused before reading.
    let mut conn = std::net::TcpStream::connect(p.gateway.trim_start_matches("http://")).unwrap();
    write!(conn, "PUT /api/sessions/{id}/data HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 300001\r\n\r\n").unwrap();
    let mut head = [0u8; 64];
    let n = conn.read(&mut head).unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 413"));
    let done = finalize(&http, &p, &id, &token).await;
    assert_eq!(
        finalize_chunks(&done),
        0,
        "nothing past the limit recorded: {done}"
    );
}

#[tokio::test]
async fn a_slow_upload_outlives_the_peer_timeout_and_a_stalled_one_is_cut() {
    // Short peer timeouts on a gateway of its own: the recorder and storage keep theirs,
    // so only the gateway's relay is under test. The timeout also covers the recorder's
    // answer once the body is in (its last chunk's fsyncs, to storage and Redis): 5 s
    // leaves a loaded machine's disk room.
    let p = Pipeline::start();
    let (_gateway, gateway) = p.another_gateway(
        &[
            ("SERVICE_TIMEOUT_SECONDS", "5"),
            ("SERVICE_IDLE_TIMEOUT_SECONDS", "5"),
        ],
        None,
    );
    let http = reqwest::Client::new();
    let token = client_token(300);
    let id = open_session(&http, &p, &token).await;
    // 15 s in all, three times the gateway's timeout for a call to the recorder.
    let started = Instant::now();
    let r = http
        .put(format!("{gateway}/api/sessions/{id}/data"))
        .bearer_auth(&token)
        .body(paced(20, 50_000, Duration::from_millis(750)))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() > Duration::from_secs(14));
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["bytes"],
        1_000_000
    );

    let id2 = open_session(&http, &p, &token).await;
    let stalled = reqwest::Body::wrap_stream(futures::stream::unfold(0, |i| async move {
        if i == 1 {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        Some((
            Ok::<_, std::io::Error>(Bytes::from(vec![1u8; 300_000])),
            i + 1,
        ))
    }));
    let started = Instant::now();
    let r = http
        .put(format!("{gateway}/api/sessions/{id2}/data"))
        .bearer_auth(&token)
        .body(stalled)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 408, "{:?}", r.text().await);
    assert!(started.elapsed() < Duration::from_secs(20));
    let done = finalize(&http, &p, &id2, &token).await;
    assert_eq!(
        finalize_chunks(&done),
        0,
        "a stalled upload records nothing: {done}"
    );
}

#[tokio::test]
async fn slowloris_connections_are_closed_and_the_service_keeps_answering() {
    let p = Pipeline::start_with(&[("HTTP_HEADER_READ_TIMEOUT_SECONDS", "1")]);
    let addr = format!("127.0.0.1:{}", p.storage_port);
    let mut slow: Vec<std::net::TcpStream> = (0..50)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(&addr).unwrap();
            c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
            c
        })
        .collect();
    // Still trickling a header line every 300 ms: the whole head's deadline cuts them.
    // A fresh connection per probe: the 1 s head deadline also ends an idle pooled one.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut open = slow.len();
    while open > 0 {
        assert!(
            Instant::now() < deadline,
            "{open} slow connections still open"
        );
        let r = http
            .get(format!("http://{addr}/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "the service answers meanwhile");
        open = 0;
        for c in &mut slow {
            if c.write_all(b"X-Slow: 1\r\n").is_ok() {
                c.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
                let mut b = [0u8; 256];
                match c.read(&mut b) {
                    Ok(0) => {}
                    Ok(_) => {} // the 408 hyper sends before closing
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => open += 1,
                    Err(_) => {}
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn concurrent_large_puts_are_shed_with_503_within_the_memory_limit() {
    let p = Pipeline::start_with(&[("MAX_CHUNK_BYTES", &(8 << 20).to_string())]);
    let pid = p.pid("session-storage");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{}", p.storage_port);
    let auth = service_token("session-storage");
    let chunks: Vec<Bytes> = (0..4u64)
        .map(|i| Bytes::from(pseudo_random(8 << 20, i + 1)))
        .collect();
    let puts: Vec<_> = (0..40usize)
        .map(|i| {
            let (http, url, auth) = (http.clone(), url.clone(), auth.clone());
            let chunk = chunks[i % chunks.len()].clone();
            tokio::spawn(async move {
                let address = blake3::hash(&chunk).to_hex().to_string();
                match http
                    .put(format!("{url}/chunks/{address}"))
                    .bearer_auth(&auth)
                    .body(chunk)
                    .send()
                    .await
                {
                    Ok(r) => Some(r.status().as_u16()),
                    // Refused before its body was read: the client may see the reset first.
                    Err(_) => None,
                }
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for put in puts {
        statuses.push(put.await.unwrap());
    }
    let stored = statuses
        .iter()
        .filter(|s| matches!(s, Some(200 | 201)))
        .count();
    let shed = statuses
        .iter()
        .filter(|s| matches!(s, Some(503) | None))
        .count();
    assert!(stored > 0 && shed > 0, "{statuses:?}");
    assert_eq!(stored + shed, 40, "only stored or shed: {statuses:?}");
    let hwm = vm_hwm_kib(pid);
    println!("storage peaked at {hwm} KiB ({stored} stored, {shed} shed)");
    assert!(
        hwm < 64 * 1024,
        "storage peaked at {hwm} KiB, over a 64 MiB pod's limit"
    );
    let metrics = scrape(&http, &p.admin("session-storage")).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("lucid_budget_shed_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
    // Still serving.
    let r = http.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn metrics_live_on_the_admin_port_with_bounded_method_labels() {
    let p = Pipeline::start();
    let http = reqwest::Client::new();
    let main = format!("http://127.0.0.1:{}", p.storage_port);
    for m in ["FOO", "BAR", "BAZ"] {
        http.request(
            reqwest::Method::from_bytes(m.as_bytes()).unwrap(),
            format!("{main}/x"),
        )
        .send()
        .await
        .unwrap();
    }
    assert_eq!(
        http.get(format!("{main}/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        404,
        "not on the main port"
    );
    let metrics = scrape(&http, &p.admin("session-storage")).await;
    assert!(metrics.contains("method=\"other\""), "{metrics}");
    for m in ["FOO", "BAR", "BAZ"] {
        assert!(!metrics.contains(m), "{m} became a label");
    }
    // Business metrics after one session's upload.
    let token = client_token(300);
    let id = open_session(&http, &p, &token).await;
    let r = http
        .put(format!("{}/api/sessions/{id}/data", p.gateway))
        .bearer_auth(&token)
        .body(pseudo_random(300_000, 4))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let value = |text: &str, name: &str| -> f64 {
        sample(text, name).unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    let storage = scrape(&http, &p.admin("session-storage")).await;
    assert_eq!(
        value(&storage, "lucid_chunks_stored_total"),
        2.0,
        "{storage}"
    );
    assert!(value(&storage, "lucid_stored_bytes_total") > 0.0);
    assert_eq!(
        value(
            &scrape(&http, &p.admin("session-recorder")).await,
            "lucid_received_bytes_total"
        ),
        300_000.0
    );
    assert_eq!(
        value(
            &scrape(&http, &p.admin("api-gateway")).await,
            "lucid_received_bytes_total"
        ),
        300_000.0
    );
    // Histogram buckets reach slow uploads.
    assert!(storage.contains("le=\"600.0\""), "{storage}");
}

#[tokio::test]
async fn every_service_serves_its_openapi_document_without_a_token() {
    let p = Pipeline::start();
    let http = reqwest::Client::new();
    for (base, path) in [
        (p.gateway.clone(), "/api/sessions/{id}/data"),
        (
            format!("http://127.0.0.1:{}", p.recorder_port),
            "/sessions/{id}/finalize",
        ),
        (
            format!("http://127.0.0.1:{}", p.storage_port),
            "/chunks/{address}",
        ),
    ] {
        let doc: serde_json::Value = http
            .get(format!("{base}/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
        assert!(doc["paths"][path].is_object(), "{base}: {path} in {doc}");
    }
}

#[tokio::test]
async fn a_request_id_is_in_every_log_line_of_its_request() {
    let p = Pipeline::start();
    let log = p.dir.join("gateway.log");
    // A recorder nobody listens on: the request fails and says so in the log.
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let (_gateway, gateway) = p.another_gateway(
        &[
            ("SESSION_RECORDER_URL", &nobody),
            ("SERVICE_RETRY_COUNT", "0"),
        ],
        Some(&log),
    );
    let r = reqwest::Client::new()
        .post(format!("{gateway}/api/sessions"))
        .bearer_auth(client_token(300))
        .header("x-request-id", "log-me-7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("log-me-7") && !body.contains("127.0.0.1"),
        "{body}"
    );
    let mut lines = Vec::new();
    eventually(
        Duration::from_secs(5),
        "the access log line is written",
        || {
            lines = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>();
            let done = lines.iter().any(|l| l.contains("\"access\""));
            async move { done }
        },
    )
    .await;
    let of_request: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("request failed") || l.contains("\"access\""))
        .collect();
    assert_eq!(of_request.len(), 2, "{lines:#?}");
    for l in of_request {
        assert!(l.contains("log-me-7"), "{l}");
    }
}

/// A PUT that sends its head and part of its body, then holds the connection.
fn held_put(addr: &str, path: &str, auth: &str) -> std::net::TcpStream {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    write!(
        c,
        "PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {auth}\r\nContent-Length: 1000000\r\n\r\n"
    )
    .unwrap();
    c.write_all(&[0u8; 1000]).unwrap();
    c
}

#[tokio::test]
async fn requests_beyond_the_concurrency_limits_are_shed_with_503_while_probes_answer() {
    let p = Pipeline::start_with(&[
        ("HTTP_MAX_CONCURRENT_REQUESTS", "2"),
        ("MAX_CONCURRENT_UPLOADS", "1"),
    ]);
    let http = reqwest::Client::new();
    // Storage: two PUTs in flight hold both slots; a third request is shed at once.
    // Waiting for the server to count both first: a request sent before a held PUT
    // reached the gate would take its slot and shed the PUT instead.
    let storage = format!("127.0.0.1:{}", p.storage_port);
    let auth = service_token("session-storage");
    let address = blake3::hash(b"x").to_hex().to_string();
    let _held: Vec<_> = (0..2)
        .map(|_| held_put(&storage, &format!("/chunks/{address}"), &auth))
        .collect();
    let storage_admin = p.admin("session-storage");
    eventually(Duration::from_secs(30), "both PUTs in flight", || {
        let (http, admin) = (http.clone(), storage_admin.clone());
        async move { metric(&http, &admin, "lucid_http_requests_in_flight").await == Some(2.0) }
    })
    .await;
    let r = http
        .get(format!("http://{storage}/chunks/{address}"))
        .bearer_auth(&auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "a third request is shed");
    assert!(r.headers().get("retry-after").is_some());
    let r = http
        .get(format!("http://{storage}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "probes are not counted");

    // Recorder: one upload in flight takes the only upload slot.
    let recorder = format!("127.0.0.1:{}", p.recorder_port);
    let token = client_token(300);
    let a = open_session(&http, &p, &token).await;
    let b = open_session(&http, &p, &token).await;
    let gateway_token = gateway_token_for("user-1");
    let _upload = held_put(&recorder, &format!("/sessions/{a}/data"), &gateway_token);
    let recorder_admin = p.admin("session-recorder");
    eventually(
        Duration::from_secs(30),
        "the first upload in flight",
        || {
            let (http, admin) = (http.clone(), recorder_admin.clone());
            async move { metric(&http, &admin, "lucid_uploads_in_flight").await == Some(1.0) }
        },
    )
    .await;
    // Another user (the first one's own share would answer 429 first).
    let r = http
        .put(format!("http://{recorder}/sessions/{b}/data"))
        .bearer_auth(gateway_token_for("user-2"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "a second upload is shed");
    assert_eq!(
        metric(&http, &recorder_admin, "lucid_uploads_in_flight").await,
        Some(1.0),
        "the shed upload never counted"
    );
}

#[tokio::test]
async fn idle_connections_and_slow_handlers_are_bounded_in_time() {
    let p = Pipeline::start_with(&[("HTTP_IDLE_TIMEOUT_SECONDS", "1")]);
    // An idle keep-alive connection is closed after the idle timeout.
    let mut c = std::net::TcpStream::connect(("127.0.0.1", p.storage_port)).unwrap();
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut all = Vec::new();
    let _ = c.read_to_end(&mut all);
    assert!(String::from_utf8_lossy(&all).starts_with("HTTP/1.1 200"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after about a second, not held open"
    );

    // A body that stops coming, straight to the recorder: 408 after the idle timeout, and
    // the session records nothing. (No pooled connections: the services close them after
    // the one-second idle timeout, racing a client that reuses one.)
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let token = client_token(300);
    let id = open_session(&http, &p, &token).await;
    let mut held = held_put(
        &format!("127.0.0.1:{}", p.recorder_port),
        &format!("/sessions/{id}/data"),
        &gateway_token_for("user-1"),
    );
    held.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = [0u8; 12];
    held.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 408");
    let r = http
        .post(format!("{}/api/sessions/{id}/finalize", p.gateway))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let done: serde_json::Value = r.json().await.unwrap();
    assert_eq!(finalize_chunks(&done), 0, "{done}");

    // A peer that accepts and never answers: the request timeout answers 503 long before
    // the peer timeout would.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let silent_url = format!("http://127.0.0.1:{silent_port}");
    let (_gateway, gateway) = p.another_gateway(
        &[
            ("SESSION_RECORDER_URL", &silent_url),
            ("SERVICE_TIMEOUT_SECONDS", "60"),
            ("HTTP_REQUEST_TIMEOUT_SECONDS", "1"),
        ],
        None,
    );
    let started = Instant::now();
    let r = reqwest::Client::new()
        .post(format!("{gateway}/api/sessions"))
        .bearer_auth(client_token(300))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}
