//! The session pipeline end to end on loopback: real Redis (Debian `redis-server`) and a
//! MongoDB wire-protocol server (`nx-27017` from PyPI: no real mongod is packaged), the
//! three service binaries as processes, a client that speaks only to the gateway.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lucid_client::token::{self, Claims};

const KEY: &str = "test-signing-key-0123456789abcdef";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command) -> Proc {
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    Proc(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {cmd:?}: {e}")),
    )
}

fn nx27017() -> String {
    std::env::var("LUCID_NX27017").unwrap_or_else(|_| "/opt/lucid-nx/bin/nx-27017".into())
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Redis, the MongoDB stand-in and the three services.
struct Pipeline {
    dir: PathBuf,
    env: Vec<(String, String)>,
    gateway: String,
    storage_port: u16,
    _infra: Vec<Proc>,
    services: Vec<(&'static str, Proc)>,
}

impl Pipeline {
    fn start() -> Pipeline {
        let dir = std::env::temp_dir().join(format!(
            "lucid-pipeline-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let (redis_port, mongo_port) = (free_port(), free_port());
        let redis = spawn(Command::new("redis-server").args([
            "--port",
            &redis_port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]));
        let mongo = spawn(
            Command::new(nx27017())
                .args([
                    "--host",
                    "127.0.0.1",
                    "-p",
                    &mongo_port.to_string(),
                    "--db",
                    "memory",
                    "--log-file",
                ])
                .arg(dir.join("nx.log"))
                .arg("--pid-file")
                .arg(dir.join("nx.pid")),
        );
        wait_port(redis_port);
        wait_port(mongo_port);
        let (storage_port, recorder_port, gateway_port) = (free_port(), free_port(), free_port());
        let env: Vec<(String, String)> = [
            ("LUCID_ENV", "development".to_string()),
            ("JWT_SECRET_KEY", KEY.to_string()),
            ("REDIS_URL", format!("redis://127.0.0.1:{redis_port}")),
            (
                "MONGODB_URL",
                format!("mongodb://127.0.0.1:{mongo_port}/?directConnection=true"),
            ),
            ("LUCID_STORAGE_PATH", dir.join("data").display().to_string()),
            ("LUCID_LOGS_PATH", dir.join("logs").display().to_string()),
            ("SESSION_STORAGE_PORT", storage_port.to_string()),
            ("SESSION_RECORDER_PORT", recorder_port.to_string()),
            ("API_GATEWAY_PORT", gateway_port.to_string()),
            (
                "SESSION_STORAGE_URL",
                format!("http://127.0.0.1:{storage_port}"),
            ),
            (
                "SESSION_RECORDER_URL",
                format!("http://127.0.0.1:{recorder_port}"),
            ),
            ("SERVICE_RETRY_DELAY_SECONDS", "0.2".to_string()),
            ("SERVICE_RETRY_COUNT", "5".to_string()),
            ("CHUNK_BYTES", (256 * 1024).to_string()),
            ("MAX_UPLOAD_BYTES", (16 << 20).to_string()),
            ("MAX_CHUNK_BYTES", (1 << 20).to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let mut p = Pipeline {
            dir,
            env,
            gateway: format!("http://127.0.0.1:{gateway_port}"),
            storage_port,
            _infra: vec![redis, mongo],
            services: Vec::new(),
        };
        for (name, port) in [
            ("session-storage", storage_port),
            ("session-recorder", recorder_port),
            ("api-gateway", gateway_port),
        ] {
            p.start_service(name);
            wait_port(port);
        }
        p
    }

    fn command(&self, name: &str) -> Command {
        let bin = match name {
            "session-storage" => env!("CARGO_BIN_EXE_session-storage"),
            "session-recorder" => env!("CARGO_BIN_EXE_session-recorder"),
            _ => env!("CARGO_BIN_EXE_api-gateway"),
        };
        let mut cmd = Command::new(bin);
        cmd.env_clear().envs(self.env.iter().cloned());
        cmd
    }

    fn start_service(&mut self, name: &'static str) {
        let proc = spawn(&mut self.command(name));
        self.services.push((name, proc));
    }

    fn kill(&mut self, name: &str) {
        if let Some(i) = self.services.iter().position(|(n, _)| *n == name) {
            let (_, mut p) = self.services.remove(i);
            let _ = p.0.kill(); // SIGKILL
            let _ = p.0.wait();
        }
    }
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

fn client_token(exp_in: i64) -> String {
    let now = token::now();
    let claims = Claims {
        iss: "lucid-auth-service".into(),
        sub: "user-1".into(),
        aud: "api-gateway".into(),
        iat: now,
        exp: (now as i64 + exp_in) as u64,
    };
    token::sign(&claims, KEY.as_bytes()).unwrap()
}

fn service_token(aud: &str) -> String {
    let now = token::now();
    token::sign(
        &Claims {
            iss: "test".into(),
            sub: "test".into(),
            aud: aud.into(),
            iat: now,
            exp: now + 60,
        },
        KEY.as_bytes(),
    )
    .unwrap()
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    // Half compressible text, half noise, like a screen recording's mix.
    let mut x = seed;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if (i / 4096) % 2 == 0 {
                b"lucid session "[i % 14]
            } else {
                x as u8
            }
        })
        .collect()
}

async fn open_session(http: &reqwest::Client, p: &Pipeline, token: &str) -> String {
    let r = http
        .post(format!("{}/api/sessions", p.gateway))
        .bearer_auth(token)
        .body(r#"{"owner":"user-1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    r.json::<serde_json::Value>().await.unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_string()
}

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
                tokio::time::sleep(Duration::from_millis(i * 2)).await;
                let chunk = pseudo_random(200 * 1024, i + 1);
                let address = blake3::hash(&chunk).to_hex().to_string();
                if let Ok(r) = http
                    .put(format!("{url}/chunks/{address}"))
                    .bearer_auth(&auth)
                    .body(chunk)
                    .send()
                    .await
                {
                    if r.status().is_success() {
                        acked.lock().unwrap().push(address);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
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
    wait_port(p.storage_port);
    let store = lucid_services::chunk_store::ChunkStore::open(&p.dir.join("data")).unwrap();
    let on_disk = store.verify_all().unwrap();
    assert!(
        on_disk.iter().all(|(_, ok)| *ok),
        "a chunk on disk fails its hash"
    );
    assert_eq!(
        std::fs::read_dir(p.dir.join("data/chunks/tmp"))
            .unwrap()
            .count(),
        0,
        "temp files cleaned at start"
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
        .bearer_auth(client_token(-10))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("expired"));
    let forged = {
        let now = token::now();
        token::sign(
            &Claims {
                iss: "x".into(),
                sub: "x".into(),
                aud: "api-gateway".into(),
                iat: now,
                exp: now + 60,
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
