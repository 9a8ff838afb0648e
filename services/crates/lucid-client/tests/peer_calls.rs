//! PeerClient against real sockets on loopback: what it retries, what it calls a failure,
//! and how streamed calls are timed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lucid_client::{ClientConfig, ClientError, Environment, PeerClient, ServiceUrl};
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(lookup: &[(&str, &str)]) -> ClientConfig {
    let vars: Vec<(String, String)> = lookup
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ClientConfig::from_lookup("test", move |k| {
        vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    })
    .unwrap()
}

fn client(port: u16, cfg: ClientConfig) -> PeerClient {
    let url = ServiceUrl::parse(
        "peer",
        &format!("http://127.0.0.1:{port}"),
        Environment::Development,
    )
    .unwrap();
    PeerClient::new("peer", url, cfg).unwrap()
}

/// A server that answers every request with `response` (raw HTTP) and counts them.
async fn raw_server(response: &'static [u8]) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = s.read(&mut buf).await;
                seen.fetch_add(1, Ordering::SeqCst);
                let _ = s.write_all(response).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (port, count)
}

const UNAVAILABLE: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

#[tokio::test]
async fn only_idempotent_calls_are_retried() {
    let cfg = config(&[
        ("SERVICE_RETRY_COUNT", "2"),
        ("SERVICE_RETRY_DELAY_SECONDS", "0"),
    ]);
    let (port, count) = raw_server(UNAVAILABLE).await;
    let c = client(port, cfg);
    assert!(c.send(Method::POST, "/sessions", None, None).await.is_err());
    assert_eq!(count.swap(0, Ordering::SeqCst), 1, "a POST is sent once");
    assert!(
        c.send(
            Method::PUT,
            "/chunks/x",
            Some(Bytes::from_static(b"x")),
            None
        )
        .await
        .is_err()
    );
    assert_eq!(count.swap(0, Ordering::SeqCst), 3, "a PUT is retried");
    assert!(
        c.send_idempotent(Method::POST, "/finalize", None, None)
            .await
            .is_err()
    );
    assert_eq!(
        count.load(Ordering::SeqCst),
        3,
        "an idempotent POST is retried"
    );
    assert_eq!(c.retries(), 4);
}

#[tokio::test]
async fn a_2xx_whose_body_is_cut_is_an_error_not_an_empty_success() {
    let cfg = config(&[("SERVICE_RETRY_COUNT", "0")]);
    let (port, _) = raw_server(
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\nconnection: close\r\n\r\nonly ten b",
    )
    .await;
    let err = client(port, cfg)
        .send(Method::GET, "/x", None, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Unavailable { .. }), "{err}");
}

/// A server that reads a whole body slowly-or-not and answers 200 with its length.
async fn counting_server() -> u16 {
    let app = axum::Router::new().route(
        "/upload",
        axum::routing::put(|body: axum::body::Bytes| async move { body.len().to_string() }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

#[tokio::test]
async fn a_streamed_call_outlives_the_total_timeout_while_it_moves_and_fails_when_it_stalls() {
    let cfg = config(&[
        ("SERVICE_TIMEOUT_SECONDS", "1"),
        ("SERVICE_IDLE_TIMEOUT_SECONDS", "1"),
    ]);
    let c = client(counting_server().await, cfg);
    // 8 pieces 400 ms apart: 3.2 s in all, three times the total timeout.
    let slow = futures::stream::unfold(0, |i| async move {
        if i == 8 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        Some((Ok(Bytes::from(vec![7u8; 1000])), i + 1))
    });
    let started = Instant::now();
    let (status, body) = c
        .send_stream(Method::PUT, "/upload", Box::pin(slow))
        .await
        .unwrap();
    assert!(started.elapsed() > Duration::from_secs(3));
    assert_eq!((status.as_u16(), &body[..]), (200, &b"8000"[..]));

    let stalled = futures::stream::unfold(0, |i| async move {
        if i == 1 {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Some((Ok(Bytes::from(vec![7u8; 1000])), i + 1))
    });
    let started = Instant::now();
    let err = c
        .send_stream(Method::PUT, "/upload", Box::pin(stalled))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Body { stalled: true, .. }),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cut after the idle timeout"
    );
}
