//! Records one session through an api-gateway and proves it comes back whole: opens a
//! session, streams data in pieces, finalizes, then reads every chunk back through the
//! gateway, checks each against its content address, reassembles the original bytes and
//! recomputes the Merkle root. The same promise as the loopback pipeline test, for a
//! gateway anywhere (the real-cluster test points it at the api-gateway's Service).
//!
//!   LUCID_USERNAME=... LUCID_PASSWORD=... record_session http://10.96.0.17:8080 [MiB]
//!   LUCID_USERNAME=... LUCID_PASSWORD=... record_session http://10.96.0.17:8080 [MiB] --read <session_id>
//!
//! With `--read`, records nothing: reads back a session recorded earlier with the same size
//! (the bytes are a fixed sequence), as a test does after a node loss or a power cut.
//!
//! It logs in as a client does, through the gateway's `/auth/login` (lucid-auth-service
//! behind it), and uses the access token it gets.
//!
//! Prints one JSON line on success; exits non-zero naming the first broken promise.

use serde_json::{Value, json};

type Error = Box<dyn std::error::Error>;

fn data(len: usize) -> Vec<u8> {
    lucid_services::sample::session_bytes(len, 0x2545f4914f6cdd1d)
}

async fn expect(response: reqwest::Response, status: u16, what: &str) -> Result<Value, Error> {
    let got = response.status().as_u16();
    let body = response.text().await?;
    if got != status {
        return Err(format!("{what}: expected HTTP {status}, got {got}: {body}").into());
    }
    Ok(serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let gateway = args
        .next()
        .ok_or("usage: record_session <gateway-url> [MiB] [--read <session_id>]")?;
    let mib: usize = args.next().map(|m| m.parse()).transpose()?.unwrap_or(3);
    let read_only = match (args.next().as_deref(), args.next()) {
        (Some("--read"), Some(id)) => Some(id),
        (None, _) => None,
        _ => return Err("usage: record_session <gateway-url> [MiB] [--read <session_id>]".into()),
    };
    let username = std::env::var("LUCID_USERNAME").map_err(|_| "LUCID_USERNAME is unset")?;
    let password = std::env::var("LUCID_PASSWORD").map_err(|_| "LUCID_PASSWORD is unset")?;
    let http = reqwest::Client::new();
    let login = expect(
        http.post(format!("{gateway}/auth/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await?,
        200,
        "log in through the gateway",
    )
    .await?;
    let token = login["access_token"]
        .as_str()
        .ok_or("the login answered no access_token")?
        .to_string();
    let bytes = data((mib << 20) + 12345);
    // Recorded now (with the root finalize answered), or earlier (`--read`).
    let (id, finalized_root) = match read_only {
        Some(id) => (id, None),
        None => {
            let (id, root) = record(&http, &gateway, &token, &bytes).await?;
            (id, Some(root))
        }
    };
    let manifest = expect(
        http.get(format!("{gateway}/api/sessions/{id}/manifest"))
            .bearer_auth(&token)
            .send()
            .await?,
        200,
        "read the manifest",
    )
    .await?;
    if finalized_root.is_some_and(|root| manifest["merkle_root"] != root) {
        return Err("the manifest's Merkle root differs from the one finalize returned".into());
    }
    let root = read_back(&http, &gateway, &token, &manifest, &bytes).await?;
    let chunks = manifest["chunks"].as_array().map_or(0, Vec::len);
    println!(
        "{}",
        json!({"session_id": id, "bytes": bytes.len(), "chunks": chunks, "merkle_root": root})
    );
    Ok(())
}

/// Opens a session, uploads `bytes` and finalizes it: its id and the Merkle root finalize
/// answered.
async fn record(
    http: &reqwest::Client,
    gateway: &str,
    token: &str,
    bytes: &[u8],
) -> Result<(String, Value), Error> {
    let opened = expect(
        http.post(format!("{gateway}/api/sessions"))
            .bearer_auth(token)
            .body(r#"{"owner":"record-session"}"#)
            .send()
            .await?,
        201,
        "open a session",
    )
    .await?;
    let id = opened["session_id"]
        .as_str()
        .ok_or("no session_id")?
        .to_string();
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    expect(
        http.put(format!("{gateway}/api/sessions/{id}/data"))
            .bearer_auth(token)
            .body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
            .send()
            .await?,
        200,
        "upload the session's data",
    )
    .await?;
    let finalized = expect(
        http.post(format!("{gateway}/api/sessions/{id}/finalize"))
            .bearer_auth(token)
            .send()
            .await?,
        200,
        "finalize",
    )
    .await?;
    Ok((id, finalized["merkle_root"].clone()))
}

/// Every chunk of `manifest` read through the gateway, checked against its address and
/// reassembled into `bytes`; the Merkle root recomputed and checked against the manifest's.
async fn read_back(
    http: &reqwest::Client,
    gateway: &str,
    token: &str,
    manifest: &Value,
    bytes: &[u8],
) -> Result<Option<String>, Error> {
    let chunks = manifest["chunks"].as_array().ok_or("no chunks")?;
    let mut rebuilt = Vec::with_capacity(bytes.len());
    let mut addresses = Vec::new();
    for chunk in chunks {
        let address = chunk["address"].as_str().ok_or("chunk without address")?;
        let response = http
            .get(format!("{gateway}/api/chunks/{address}"))
            .bearer_auth(token)
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(format!("chunk {address}: HTTP {}", response.status()).into());
        }
        let stored = response.bytes().await?;
        if blake3::hash(&stored).to_hex().as_str() != address {
            return Err(format!("chunk {address} does not hash to its address").into());
        }
        rebuilt.extend(zstd::bulk::decompress(&stored, 16 << 20)?);
        addresses.push(address.to_string());
    }
    if rebuilt != bytes {
        return Err("the chunks do not reassemble the recorded bytes".into());
    }
    let root = lucid_services::merkle::root_hex(&addresses);
    if root.as_deref() != manifest["merkle_root"].as_str() {
        return Err("the recomputed Merkle root differs from the manifest's".into());
    }
    Ok(root)
}
