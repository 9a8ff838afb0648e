//! The session pipeline end to end on loopback (see `common` for the servers it starts).

mod common;

use std::time::Duration;

use common::*;
use lucid_client::token::{self, Claims};

#[tokio::test]
async fn a_session_recorded_through_the_gateway_reads_back_with_its_merkle_root() {
    let p = Pipeline::start();
    let http = reqwest::Client::new();
    let token = client_token(300);
    let id = open_session(&http, &p, &token).await;
    let data = pseudo_random(3 * 1024 * 1024 + 12345, 7);
    // Streamed in pieces, as a recorder client would.
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let r = http
        .put(format!("{}/api/sessions/{id}/data", p.gateway))
        .bearer_auth(&token)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let r = http
        .post(format!("{}/api/sessions/{id}/finalize", p.gateway))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let finalized: serde_json::Value = r.json().await.unwrap();

    let manifest: serde_json::Value = http
        .get(format!("{}/api/sessions/{id}/manifest", p.gateway))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(manifest["merkle_root"], finalized["merkle_root"]);
    let chunks = manifest["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), data.len().div_ceil(256 * 1024));
    let mut rebuilt = Vec::new();
    let mut addresses = Vec::new();
    for c in chunks {
        let address = c["address"].as_str().unwrap();
        let stored = http
            .get(format!("{}/api/chunks/{address}", p.gateway))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(blake3::hash(&stored).to_hex().as_str(), address);
        rebuilt.extend(zstd::bulk::decompress(&stored, 1 << 20).unwrap());
        addresses.push(address.to_string());
    }
    assert_eq!(rebuilt, data, "the chunks reassemble the session");
    assert_eq!(
        Some(manifest["merkle_root"].as_str().unwrap().to_string()),
        lucid_services::merkle::root_hex(&addresses)
    );

    // A finalized session takes no more data.
    let r = http
        .put(format!("{}/api/sessions/{id}/data", p.gateway))
        .bearer_auth(&token)
        .body("more")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    // The gateway sees both peers.
    let health: serde_json::Value = http
        .get(format!("{}/api/health/peers", p.gateway))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "healthy", "{health}");
}

#[tokio::test]
async fn killing_storage_mid_upload_loses_no_acknowledged_chunk_and_leaves_no_bad_one() {
    let mut p = Pipeline::start();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{}", p.storage_port);
    let auth = service_token("session-storage");
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let uploads: Vec<_> = (0..200u64)
        .map(|i| {
            let (http, url, auth, acked) = (
                http.clone(),
                url.clone(),
                auth.clone(),
                acknowledged.clone(),
            );
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(i * 10)).await;
                let chunk = pseudo_random(200 * 1024, i + 1);
                let address = blake3::hash(&chunk).to_hex().to_string();
                if let Ok(r) = http
                    .put(format!("{url}/chunks/{address}"))
                    .bearer_auth(&auth)
                    .body(chunk)
                    .send()
                    .await
                    && r.status().is_success()
                {
                    acked.lock().unwrap().push(address);
                }
            })
        })
        .collect();
    // The kill lands once a few chunks are acknowledged (not after a fixed time: on a
    // loaded machine the first fsyncs may take longer than any guess), with most of the
    // uploads, spread over 2 s, still to come or in flight.
    eventually(Duration::from_secs(30), "five chunks acknowledged", || {
        let acked = acknowledged.clone();
        async move { acked.lock().unwrap().len() >= 5 }
    })
    .await;
    p.kill("session-storage");
    for u in uploads {
        let _ = u.await;
    }
    let acked = acknowledged.lock().unwrap().clone();
    assert!(
        !acked.is_empty() && acked.len() < 200,
        "the kill should land mid-way ({} acknowledged)",
        acked.len()
    );

    p.start_service("session-storage");
    p.wait_ready("session-storage");
    let store = lucid_services::chunk_store::ChunkStore::open(&p.dir.join("data")).unwrap();
    let on_disk = store.verify_all().unwrap();
    assert!(
        on_disk.iter().all(|(_, ok)| *ok),
        "a chunk on disk fails its hash"
    );
    // Temp files the kill left are young: kept at start (a write may be in flight), never
    // seen as chunks, removed by age.
    store.clean_tmp(Duration::ZERO).unwrap();
    assert_eq!(
        std::fs::read_dir(p.dir.join("data/chunks/tmp"))
            .unwrap()
            .count(),
        0,
        "temp files removed by age"
    );
    for address in &acked {
        let r = http
            .get(format!("{url}/chunks/{address}"))
            .bearer_auth(&auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "acknowledged chunk {address} is gone");
        assert_eq!(
            blake3::hash(&r.bytes().await.unwrap()).to_hex().as_str(),
            address
        );
    }
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_nothing_half_written() {
    let p = Pipeline::start();
    let http = reqwest::Client::new();
    let storage = format!("http://127.0.0.1:{}", p.storage_port);
    let auth = service_token("session-storage");

    let wrong = blake3::hash(b"something else").to_hex().to_string();
    let r = http
        .put(format!("{storage}/chunks/{wrong}"))
        .bearer_auth(&auth)
        .body("data")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("hashes to"));
    let r = http
        .put(format!("{storage}/chunks/not-a-hash"))
        .bearer_auth(&auth)
        .body("data")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Oversized: announced by Content-Length, refused before the body is read. Sent by hand
    // so the answer is read before any body is written (a client still writing when the
    // server answers and closes may see a reset instead of the 413).
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", p.storage_port)).unwrap();
    {
        use std::io::{Read, Write};
        write!(conn, "PUT /chunks/{wrong} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {auth}\r\nContent-Length: {}\r\n\r\n", (1 << 20) + 1).unwrap();
        let mut head = [0u8; 64];
        let n = conn.read(&mut head).unwrap();
        let status_line = String::from_utf8_lossy(&head[..n]).to_string();
        assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    }
    let r = http
        .put(format!("{storage}/chunks/{wrong}"))
        .body("data")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no token");
    let r = http
        .put(format!("{storage}/chunks/{wrong}"))
        .bearer_auth(service_token("session-recorder"))
        .body("data")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "token for another service");
    let store = lucid_services::chunk_store::ChunkStore::open(&p.dir.join("data")).unwrap();
    assert!(
        store.verify_all().unwrap().is_empty(),
        "nothing was written"
    );

    // Client tokens at the gateway.
    let r = http
        .post(format!("{}/api/sessions", p.gateway))
        .bearer_auth(client_token(-60))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("expired"));
    let forged = {
        let now = token::now();
        token::sign(
            &Claims {
                iss: "lucid-auth-service".into(),
                sub: "x".into(),
                aud: "api-gateway".into(),
                iat: now,
                nbf: None,
                exp: now + 60,
                user: None,
            },
            b"not-the-key",
        )
        .unwrap()
    };
    assert_eq!(
        http.post(format!("{}/api/sessions", p.gateway))
            .bearer_auth(forged)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let token = client_token(300);
    let r = http
        .post(format!("{}/api/sessions", p.gateway))
        .bearer_auth(&token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("invalid JSON"));

    // A body cut short: the session gains no chunk.
    let id = open_session(&http, &p, &token).await;
    let gateway_addr = p.gateway.trim_start_matches("http://").to_string();
    let mut conn = std::net::TcpStream::connect(&gateway_addr).unwrap();
    use std::io::Write;
    write!(conn, "PUT /api/sessions/{id}/data HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 1000000\r\n\r\n").unwrap();
    conn.write_all(&pseudo_random(600_000, 3)).unwrap();
    drop(conn);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = http
        .post(format!("{}/api/sessions/{id}/finalize", p.gateway))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let finalized: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        finalized["chunks"].as_array().map(Vec::len),
        Some(0),
        "a truncated upload recorded chunks: {finalized}"
    );
    let r = http
        .put(format!("{}/api/sessions/not-an-id/data", p.gateway))
        .bearer_auth(&token)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn a_recorder_with_unset_or_loopback_urls_in_production_refuses_to_start() {
    let p = Pipeline::start();
    let run = |overrides: &[(&str, Option<&str>)]| {
        let mut cmd = p.command("session-recorder");
        for (k, v) in overrides {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, err) = run(&[("LUCID_ENV", Some("production"))]);
    assert!(
        !ok && err.contains("loopback") && err.contains("session-storage"),
        "{err}"
    );
    let (ok, err) = run(&[("SESSION_STORAGE_URL", None)]);
    assert!(!ok && err.contains("SESSION_STORAGE_URL"), "{err}");
    let (ok, err) = run(&[("REDIS_URL", None)]);
    assert!(!ok && err.contains("REDIS_URL"), "{err}");
}
