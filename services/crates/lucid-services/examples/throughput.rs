//! Recorder throughput against raw blake3, on the same bytes, in one run (BENCHMARKS.md).
//! Needs a running session-recorder (RECORDER_URL) wired to session-storage, and the
//! JWT_SECRET_KEY they share; with GATEWAY_URL (and AUTH_SIGNING_KEY, the bench's own
//! client-token key whose public half the gateway holds) also one upload through the
//! api-gateway and BENCH_PARALLEL (default 8) uploads at once through it, under the
//! services' limits.
//! Prints one Markdown table row per measurement.

use std::time::Instant;

use lucid_client::token::{self, Claims};

use lucid_services::sample::session_bytes as seeded;

fn data(len: usize) -> Vec<u8> {
    seeded(len, 0x9e3779b97f4a7c15)
}

/// Opens a session at `sessions` (the recorder's `/sessions` or the gateway's
/// `/api/sessions`) and uploads `data` in one streamed PUT; the upload's duration.
async fn timed_upload(
    http: &reqwest::Client,
    sessions: &str,
    token: &str,
    data: &[u8],
) -> Result<std::time::Duration, Box<dyn std::error::Error + Send + Sync>> {
    let id = http
        .post(sessions)
        .bearer_auth(token)
        .send()
        .await?
        .json::<serde_json::Value>()
        .await?["session_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(256 << 10).map(|c| Ok(c.to_vec())).collect();
    let started = Instant::now();
    let response = http
        .put(format!("{sessions}/{id}/data"))
        .bearer_auth(token)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
        .send()
        .await?;
    let status = response.status();
    let body = response.text().await?;
    if !status.is_success() {
        return Err(format!("upload to {sessions} failed: {status} {body}").into());
    }
    Ok(started.elapsed())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("RECORDER_URL")?;
    let key = std::env::var("JWT_SECRET_KEY")?;
    let mib: usize = std::env::var("BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let bytes = data(mib << 20);

    let started = Instant::now();
    let hash = blake3::hash(&bytes);
    let raw = started.elapsed();
    std::hint::black_box(hash);

    let now = token::now();
    let auth = token::sign(
        // As the gateway signs it, acting for a user (the recorder checks both).
        &Claims {
            iss: "api-gateway".into(),
            sub: "api-gateway".into(),
            aud: "session-recorder".into(),
            iat: now,
            nbf: None,
            exp: now + 300,
            user: Some("bench".into()),
        },
        key.as_bytes(),
    )?;
    let http = reqwest::Client::new();
    let recorded = timed_upload(&http, &format!("{url}/sessions"), &auth, &bytes)
        .await
        .map_err(|e| e.to_string())?;
    let mbps = |d: std::time::Duration| (mib as f64 * 1.048576) / d.as_secs_f64();
    if let Ok(gateway) = std::env::var("GATEWAY_URL") {
        let signing = lucid_services::client_token::SigningKey::from_pem(&std::env::var(
            "AUTH_SIGNING_KEY",
        )?)?;
        let client = signing.sign(&lucid_services::client_token::ClientClaims {
            iss: "lucid-auth-service".into(),
            sub: "bench".into(),
            aud: "api-gateway".into(),
            iat: now,
            exp: now + 300,
            nbf: None,
            name: "bench".into(),
            admin: false,
            sid: String::new(),
        })?;
        // Fresh bytes for every gateway upload: deduplicated chunks would skip the fsyncs.
        let fresh = seeded(bytes.len(), 0x2545f4914f6cdd1d);
        let sessions = format!("{gateway}/api/sessions");
        let one = timed_upload(&http, &sessions, &client, &fresh)
            .await
            .map_err(|e| e.to_string())?;
        let parallel: usize = std::env::var("BENCH_PARALLEL")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(8);
        let part = bytes.len() / parallel;
        let started = Instant::now();
        let uploads: Vec<_> = (0..parallel)
            .map(|i| {
                let (http, sessions, client) = (http.clone(), sessions.clone(), client.clone());
                let slice = seeded(part, 0x5851f42d4c957f2d ^ (i as u64 + 1));
                tokio::spawn(async move {
                    timed_upload(&http, &sessions, &client, &slice)
                        .await
                        .is_ok()
                })
            })
            .collect();
        let mut ok = 0;
        for u in uploads {
            ok += usize::from(u.await.unwrap_or(false));
        }
        let all = started.elapsed();
        println!(
            "| gateway -> recorder -> storage, one upload | {mib} MiB | {:.0} MB/s |",
            mbps(one)
        );
        println!(
            "| gateway, {parallel} uploads at once ({ok} accepted) | {mib} MiB in all | {:.0} MB/s |",
            (ok * part) as f64 / 1e6 / all.as_secs_f64()
        );
    }
    println!(
        "| recorder: chunk (1 MiB) + zstd 3 + blake3 + store (fsync) via session-storage, loopback | {mib} MiB | {:.0} MB/s |",
        mbps(recorded)
    );
    println!(
        "| raw blake3 of the same bytes (one thread) | {mib} MiB | {:.0} MB/s |",
        mbps(raw)
    );
    Ok(())
}
