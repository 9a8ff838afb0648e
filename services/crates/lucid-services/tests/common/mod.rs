//! What the loopback tests share: real Redis (Debian `redis-server`) and a MongoDB
//! wire-protocol server (`nx-27017` from PyPI: no real mongod is packaged), the four
//! service binaries as processes, tokens, data.
#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lucid_client::token::{self, Claims};
use lucid_services::client_token::{ClientClaims, SigningKey};

/// The service-token key (`JWT_SECRET_KEY`): signs only service-to-service tokens.
pub const KEY: &str = "test-signing-key-0123456789abcdef";

/// The initial administrator the pipeline's auth service creates at its first start.
pub const ADMIN: (&str, &str) = ("admin", "admin-password-for-tests");

/// This test process's client-token key (Ed25519), made fresh: what lucid-auth-service
/// signs with; the gateway gets its public half.
pub fn signing_pem() -> &'static str {
    static PEM: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PEM.get_or_init(|| SigningKey::generate_pem().unwrap())
}

pub fn signing_key() -> SigningKey {
    SigningKey::from_pem(signing_pem()).unwrap()
}

/// The gateway's `AUTH_PUBLIC_KEYS` for [`signing_key`].
pub fn public_keys() -> String {
    serde_json::to_string(&signing_key().jwks()).unwrap()
}

/// A client token's claims as lucid-auth-service writes them, for `user`.
pub fn client_claims(user: &str, exp_in: i64) -> ClientClaims {
    let now = token::now();
    ClientClaims {
        iss: "lucid-auth-service".into(),
        sub: user.into(),
        aud: "api-gateway".into(),
        iat: now,
        exp: (now as i64 + exp_in) as u64,
        nbf: None,
        name: user.into(),
        admin: false,
        sid: "test".into(),
    }
}

/// `claims` signed with the auth service's (test) key.
pub fn sign_client(claims: &ClientClaims) -> String {
    signing_key().sign(claims).unwrap()
}

/// A loopback port nothing listens on, chosen below the kernel's ephemeral range: a port
/// from the ephemeral range (what binding port 0 gives) can be taken by any outgoing
/// connection of a test running beside this one before the server meant for it binds it,
/// and the server then exits with "address in use". One counter per test process keeps
/// its tests apart; the bind check skips ports other processes hold.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOWEST: u32 = 10_000;
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|&p| p > LOWEST + 1_000)
        .unwrap_or(32_768);
    let span = ephemeral_start - LOWEST;
    // Processes started one after another begin in different places.
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOWEST + (start + n) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port below {ephemeral_start}")
}

pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn(cmd: &mut Command) -> Proc {
    spawn_with_stderr(cmd, Stdio::null())
}

/// [`spawn`], with the process's stderr (where a service says why it cannot start) sent
/// to `stderr`.
pub fn spawn_with_stderr(cmd: &mut Command, stderr: impl Into<Stdio>) -> Proc {
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    Proc(
        cmd.stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("start {cmd:?}: {e}")),
    )
}

pub fn nx27017() -> String {
    std::env::var("LUCID_NX27017").unwrap_or_else(|_| "/opt/lucid-nx/bin/nx-27017".into())
}

pub fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The status of a plain GET on a loopback port (a blocking client, for set-up code).
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    c.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Redis, the MongoDB stand-in and the four services.
pub struct Pipeline {
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
    pub gateway: String,
    /// lucid-auth-service's own address (clients use the gateway's `/auth/*`).
    pub auth: String,
    pub storage_port: u16,
    pub recorder_port: u16,
    pub redis_port: u16,
    pub admin_ports: [(&'static str, u16); 4],
    pub infra: Vec<(&'static str, Proc)>,
    pub services: Vec<(&'static str, Proc)>,
}

impl Pipeline {
    pub fn start() -> Pipeline {
        Self::start_with(&[])
    }

    /// With extra or changed environment for the services.
    pub fn start_with(overrides: &[(&str, &str)]) -> Pipeline {
        let dir = std::env::temp_dir().join(format!(
            "lucid-pipeline-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let (redis_port, mongo_port) = (free_port(), free_port());
        std::fs::create_dir_all(dir.join("redis")).unwrap();
        let redis = redis_server(redis_port, &dir);
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
        let (storage_port, recorder_port, gateway_port, auth_port) =
            (free_port(), free_port(), free_port(), free_port());
        let admin_ports = [
            ("session-storage", free_port()),
            ("session-recorder", free_port()),
            ("api-gateway", free_port()),
            ("lucid-auth-service", free_port()),
        ];
        let mut env: Vec<(String, String)> = [
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
            ("SESSION_STORAGE_ADMIN_PORT", admin_ports[0].1.to_string()),
            ("SESSION_RECORDER_ADMIN_PORT", admin_ports[1].1.to_string()),
            ("API_GATEWAY_ADMIN_PORT", admin_ports[2].1.to_string()),
            ("LUCID_AUTH_SERVICE_PORT", auth_port.to_string()),
            (
                "LUCID_AUTH_SERVICE_ADMIN_PORT",
                admin_ports[3].1.to_string(),
            ),
            (
                "LUCID_AUTH_SERVICE_URL",
                format!("http://127.0.0.1:{auth_port}"),
            ),
            ("AUTH_SIGNING_KEY", signing_pem().to_string()),
            ("AUTH_PUBLIC_KEYS", public_keys()),
            ("LUCID_ADMIN_USERNAME", ADMIN.0.to_string()),
            ("LUCID_ADMIN_PASSWORD", ADMIN.1.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in overrides {
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v.to_string()));
        }
        let mut p = Pipeline {
            dir,
            env,
            gateway: format!("http://127.0.0.1:{gateway_port}"),
            auth: format!("http://127.0.0.1:{auth_port}"),
            storage_port,
            recorder_port,
            redis_port,
            admin_ports,
            infra: vec![("redis", redis), ("mongo", mongo)],
            services: Vec::new(),
        };
        let names = [
            "lucid-auth-service",
            "session-storage",
            "session-recorder",
            "api-gateway",
        ];
        // All started before any is waited for: a port chosen by `free_port` is free only
        // until something else takes it, so the sooner each binds the better.
        for name in names {
            p.start_service(name);
        }
        for name in names {
            p.wait_ready(name);
        }
        p
    }

    /// Waits until `name` answers 200 on its admin `/ready` (its Redis and MongoDB
    /// connections work), failing at once if the process exited (a port taken, a bad
    /// setting) instead of waiting for a port someone else may hold.
    pub fn wait_ready(&mut self, name: &str) {
        let port = self.admin_ports.iter().find(|(n, _)| *n == name).unwrap().1;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let proc = &mut self
                .services
                .iter_mut()
                .find(|(n, _)| *n == name)
                .unwrap()
                .1;
            if let Ok(Some(status)) = proc.0.try_wait() {
                let said = std::fs::read_to_string(self.stderr_path(name)).unwrap_or_default();
                panic!("{name} exited at start: {status}; its stderr:\n{said}");
            }
            if http_status(port, "/ready") == Some(200) {
                return;
            }
            assert!(Instant::now() < deadline, "{name} not ready within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Another api-gateway beside the pipeline's, on ports of its own, with `env` over the
    /// pipeline's settings and its log (stdout) in `log` if given; its base URL. Stopped
    /// when the returned process drops.
    pub fn another_gateway(
        &self,
        env: &[(&str, &str)],
        log: Option<&std::path::Path>,
    ) -> (Proc, String) {
        let (port, admin) = (free_port(), free_port());
        let mut cmd = self.command("api-gateway");
        cmd.env("API_GATEWAY_PORT", port.to_string())
            .env("API_GATEWAY_ADMIN_PORT", admin.to_string())
            .envs(env.iter().copied());
        let gateway = match log {
            Some(path) => {
                cmd.stdout(std::fs::File::create(path).unwrap());
                Proc(cmd.spawn().unwrap())
            }
            None => spawn(&mut cmd),
        };
        wait_port(port);
        (gateway, format!("http://127.0.0.1:{port}"))
    }

    pub fn command(&self, name: &str) -> Command {
        let bin = match name {
            "session-storage" => env!("CARGO_BIN_EXE_session-storage"),
            "session-recorder" => env!("CARGO_BIN_EXE_session-recorder"),
            "lucid-auth-service" => env!("CARGO_BIN_EXE_lucid-auth-service"),
            _ => env!("CARGO_BIN_EXE_api-gateway"),
        };
        let mut cmd = Command::new(bin);
        cmd.env_clear().envs(self.env.iter().cloned());
        cmd
    }

    pub fn start_service(&mut self, name: &'static str) {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path(name))
            .unwrap();
        let proc = spawn_with_stderr(&mut self.command(name), stderr);
        self.services.push((name, proc));
    }

    /// Where `name`'s stderr goes (appended to by each start).
    pub fn stderr_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.stderr"))
    }

    pub fn admin(&self, name: &str) -> String {
        let port = self.admin_ports.iter().find(|(n, _)| *n == name).unwrap().1;
        format!("http://127.0.0.1:{port}")
    }

    pub fn pid(&self, name: &str) -> u32 {
        self.services
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap()
            .1
            .0
            .id()
    }

    pub fn stop_redis(&mut self) {
        if let Some(i) = self.infra.iter().position(|(n, _)| *n == "redis") {
            let (_, mut p) = self.infra.remove(i);
            let _ = p.0.kill();
            let _ = p.0.wait();
        }
    }

    pub fn start_redis(&mut self) {
        let redis = redis_server(self.redis_port, &self.dir);
        wait_port(self.redis_port);
        self.infra.push(("redis", redis));
    }

    pub fn kill(&mut self, name: &str) {
        if let Some(i) = self.services.iter().position(|(n, _)| *n == name) {
            let (_, mut p) = self.services.remove(i);
            let _ = p.0.kill(); // SIGKILL
            let _ = p.0.wait();
        }
    }
}

/// Redis as the stack must run it: the append-only file fsynced on every write, so a
/// session's acknowledged chunk list survives a Redis restart (see the README).
fn redis_server(port: u16, dir: &std::path::Path) -> Proc {
    spawn(
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
            .arg(dir.join("redis")),
    )
}

/// Polls `condition` until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

pub fn client_token(exp_in: i64) -> String {
    user_token("user-1", exp_in)
}

/// A client token for `user`, signed with the auth service's (test) key.
pub fn user_token(user: &str, exp_in: i64) -> String {
    sign_client(&client_claims(user, exp_in))
}

/// A token as session-recorder signs it for `aud`.
pub fn service_token(aud: &str) -> String {
    let now = token::now();
    token::sign(
        &Claims {
            iss: "session-recorder".into(),
            sub: "session-recorder".into(),
            aud: aud.into(),
            iat: now,
            nbf: None,
            exp: now + 60,
            user: None,
        },
        KEY.as_bytes(),
    )
    .unwrap()
}

pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    lucid_services::sample::session_bytes(len, seed)
}

pub async fn open_session(http: &reqwest::Client, p: &Pipeline, token: &str) -> String {
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

/// A token as api-gateway signs it for session-recorder, acting for `user`.
pub fn gateway_token_for(user: &str) -> String {
    let now = token::now();
    token::sign(
        &Claims {
            iss: "api-gateway".into(),
            sub: "api-gateway".into(),
            aud: "session-recorder".into(),
            iat: now,
            nbf: None,
            exp: now + 60,
            user: Some(user.into()),
        },
        KEY.as_bytes(),
    )
    .unwrap()
}

/// A service's admin `/metrics` text (empty when it does not answer).
pub async fn scrape(http: &reqwest::Client, admin: &str) -> String {
    match http.get(format!("{admin}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The value of the sample `name` (no labels) in a `/metrics` text.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// The value of the sample `name` (no labels) on a service's admin `/metrics`, if served.
pub async fn metric(http: &reqwest::Client, admin: &str, name: &str) -> Option<f64> {
    sample(&scrape(http, admin).await, name)
}
