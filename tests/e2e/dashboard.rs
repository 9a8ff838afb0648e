//! `kubectl lucid dashboard` in a real headless browser (Debian's chromium, driven over
//! WebDriver by chromedriver) against the real API server with the operator running: the
//! 27-service stack rolls out and the page turns every service Ready; a service made
//! Degraded shows its reason within a second; the API server going away is shown and the
//! page recovers; a request with a foreign `Host` (DNS rebinding) is refused; the page loads
//! nothing but from its own loopback origin while no name but loopback resolves. The
//! screenshot of the rolled-out stack in the README is written by this test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client as Browser, ClientBuilder};
use k8s_openapi::api::apps::v1::Deployment;
use lucid_e2e::{Component, TestEnv, control_plane, kubelet};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_kubectl-lucid");
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const HELM: &str = "/var/cache/lucid-tools/kubectl-v37-2.0.0/helm";
const SCREENSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/dashboard.png");

/// A child process killed when the test ends, passed or not.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stack(namespace: &str) -> String {
    let helm = std::env::var("LUCID_HELM").unwrap_or_else(|_| HELM.to_string());
    let out = Command::new(helm)
        .args(["template", "lucid", &format!("{ROOT}/charts/lucid-stack")])
        .args(["-n", namespace])
        .output()
        .expect("helm: run tests/harness/install-tools.sh, or set LUCID_HELM");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The plugin serving the dashboard on a free loopback port; returns it and its URL.
fn dashboard(namespace: &str) -> (Killed, String) {
    let mut child = Command::new(BIN)
        .args(["dashboard", "-n", namespace, "--kubeconfig"])
        .arg(&control_plane().kubeconfig)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(Stdio::piped())
        .spawn()
        .expect("kubectl-lucid dashboard");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .to_string();
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "loopback by default: {url}"
    );
    (Killed(child), url)
}

/// chromedriver on a free loopback port, answering.
fn chromedriver() -> (Killed, u16) {
    let port = lucid_e2e::control_plane::free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver: run tests/harness/install-tools.sh (chromium-driver)");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Killed(child), port)
}

async fn browser(driver_port: u16) -> Browser {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=2400,1000", "--hide-scrollbars",
                // No network but loopback: every name fails to resolve except the one the
                // rebinding check maps to 127.0.0.1.
                "--host-resolver-rules=MAP rebound.example 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("a chromium session")
}

/// What the page shows now: each service's state, the summary, the API banner.
async fn page_state(b: &Browser) -> Value {
    b.execute(
        "const states = {};
         for (const n of document.querySelectorAll('#graph .node[data-service]')) states[n.dataset.service] = n.dataset.state || '';
         const banner = document.getElementById('api-status');
         return {states, summary: document.getElementById('summary').textContent,
                 banner: banner.hidden ? '' : banner.textContent,
                 degraded: document.getElementById('panel-degraded').hidden ? '' : document.getElementById('panel-degraded').textContent};",
        vec![],
    )
    .await
    .expect("script runs")
}

/// Polls the page (the test's side, not the page's) until `cond` holds.
async fn until<F: Fn(&Value) -> bool>(b: &Browser, what: &str, limit: Duration, cond: F) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let state = page_state(b).await;
        if cond(&state) {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "page never showed {what}: {state:#}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A raw request with the given Host header: (status code, body).
fn get_with_host(url: &str, path: &str, host: &str) -> (u16, String) {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_stack_roll_out_live_in_a_real_browser() {
    let env = TestEnv::start("kl-dash", Duration::from_millis(150)).await;
    let ns = env.namespace.clone();
    let (_server, url) = dashboard(&ns);
    let (_driver, driver_port) = chromedriver();
    let b = browser(driver_port).await;
    b.goto(&url).await.unwrap();
    until(&b, "the empty namespace", Duration::from_secs(30), |s| {
        s["summary"] == format!("namespace {ns}: 0/0 services Ready")
    })
    .await;

    // The stack rolls out; every service turns Ready on the page.
    env.apply_documents(
        &std::fs::read_to_string(format!("{ROOT}/crds/examples/environment.yaml")).unwrap(),
    )
    .await;
    env.apply_documents(&stack(&ns)).await;
    let mut seen_not_ready = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let s = page_state(&b).await;
        let states = s["states"].as_object().unwrap();
        for (name, state) in states {
            if state != "Ready" {
                seen_not_ready.insert(name.clone());
            }
        }
        if states.len() == 27 && states.values().all(|v| v == "Ready") {
            assert_eq!(
                s["summary"],
                format!("namespace {ns}: 27/27 services Ready")
            );
            break;
        }
        assert!(Instant::now() < deadline, "not all Ready: {s:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen_not_ready.len() > 20,
        "the page showed the rollout in progress, not only its end: {seen_not_ready:?}"
    );
    // Each phase's progress (a phase writes its status after its members, throttled).
    let expected = json!([
        "4/4 Ready · Ready",
        "6/6 Ready · Ready",
        "10/10 Ready · Ready",
        "7/7 Ready · Ready"
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let phases: Value = b
            .execute(
                "return [...document.querySelectorAll('.band-progress')].map(t => t.textContent);",
                vec![],
            )
            .await
            .unwrap();
        if phases == expected {
            break;
        }
        assert!(Instant::now() < deadline, "phase progress: {phases}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let png = b.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::create_dir_all(Path::new(SCREENSHOT).parent().unwrap()).unwrap();
    std::fs::write(SCREENSHOT, &png).unwrap();

    // Nothing but its own loopback origin was loaded (no CDN, no font service).
    let loaded: Value = b
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name);",
            vec![],
        )
        .await
        .unwrap();
    for resource in loaded.as_array().unwrap() {
        assert!(
            resource.as_str().unwrap().starts_with(&url),
            "{resource} is not from {url}"
        );
    }

    // A service made Degraded: the page shows it, with its reason, within a second of the
    // operator reporting it.
    b.execute(
        "document.querySelector('.node[data-service=\"session-recorder\"]').dispatchEvent(new MouseEvent('click', {bubbles: true}));",
        vec![],
    )
    .await
    .unwrap();
    kubelet::mark_stuck(&env.api::<Deployment>(), "session-recorder").await;
    env.wait_service("session-recorder", "Degraded", |ls| {
        ls.status
            .as_ref()
            .is_some_and(|s| s.state.as_deref() == Some("Degraded"))
    })
    .await;
    let reported = Instant::now();
    let s = until(
        &b,
        "session-recorder Degraded",
        Duration::from_secs(10),
        |s| s["states"]["session-recorder"] == "Degraded",
    )
    .await;
    let shown_after = reported.elapsed();
    assert!(
        shown_after < Duration::from_secs(1),
        "on the page {shown_after:?} after the operator reported it"
    );
    let s = if s["degraded"].as_str().unwrap_or("").is_empty() {
        until(&b, "the reason in the panel", Duration::from_secs(5), |s| {
            !s["degraded"].as_str().unwrap_or("").is_empty()
        })
        .await
    } else {
        s
    };
    assert!(
        s["degraded"]
            .as_str()
            .unwrap()
            .starts_with("Degraded: RolloutStuck: "),
        "{s:#}"
    );
    let detail: Value = b
        .execute(
            "return document.querySelector('.node[data-service=\"session-recorder\"] .node-detail').textContent;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(detail, "0/1 · RolloutStuck");

    // A foreign Host is refused, on every route; the served address and localhost are not.
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    for path in ["/", "/events", "/api/services/session-recorder", "/app.js"] {
        let (code, _) = get_with_host(&url, path, "rebound.example");
        assert_eq!(code, 421, "{path}");
    }
    let port = addr.rsplit(':').next().unwrap();
    assert_eq!(get_with_host(&url, "/", addr).0, 200);
    assert_eq!(
        get_with_host(&url, "/", &format!("localhost:{port}")).0,
        200
    );
    // And in the browser: a name that resolves to loopback (DNS rebinding) reads nothing.
    let b2 = browser(driver_port).await;
    b2.goto(&format!("http://rebound.example:{port}/"))
        .await
        .unwrap();
    let body: Value = b2
        .execute("return document.body.innerText;", vec![])
        .await
        .unwrap();
    assert!(body.as_str().unwrap().starts_with("refused"), "{body}");
    assert!(!body.as_str().unwrap().contains("session-recorder"));
    b2.close().await.unwrap();
    // Read only: nothing but GET is routed.
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST /api/services/session-recorder HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 405"), "{response}");

    // The API server goes away: the page says so, keeps the last graph, and recovers.
    let restart = tokio::task::spawn_blocking(|| {
        control_plane().restart(Component::ApiServer, Duration::from_secs(4))
    });
    let s = until(&b, "the API server lost", Duration::from_secs(30), |s| {
        s["banner"]
            .as_str()
            .is_some_and(|t| t.starts_with("API server unreachable"))
    })
    .await;
    assert_eq!(
        s["states"].as_object().unwrap().len(),
        27,
        "the last graph stays"
    );
    restart.await.unwrap();
    until(&b, "the API server back", Duration::from_secs(60), |s| {
        s["banner"] == ""
    })
    .await;
    // Live again: the stuck service recovers on the page.
    kubelet::mark_available(&env.api(), "session-recorder")
        .await
        .unwrap();
    until(
        &b,
        "session-recorder Ready again",
        Duration::from_secs(60),
        |s| s["states"]["session-recorder"] == "Ready",
    )
    .await;
    b.close().await.unwrap();
    env.stop().await;
}
