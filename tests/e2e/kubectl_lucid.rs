//! `kubectl lucid` against a real kube-apiserver with the operator running: `import` then
//! `kubectl apply` rolls the seed-like phase files out to Ready; `status` draws the rollout
//! (colours and a tree in a pseudo-terminal, plain text when piped, NO_COLOR respected),
//! `--watch` redraws from the watches, and `--wait` exits 0 on Ready, 1 on Degraded and 3 on
//! a timeout.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lucid_e2e::{TestEnv, control_plane, is_ready};

const BIN: &str = env!("CARGO_BIN_EXE_kubectl-lucid");
const PHASE_FILES: &[&str] = &[
    "docker-compose.foundation.yml",
    "docker-compose.core.yml",
    "docker-compose.support.yml",
];

fn docker_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lucid/configs/docker")
}

/// The plugin as a user runs it: the harness's admin kubeconfig, only PATH besides.
fn plugin(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .arg("--kubeconfig")
        .arg(&control_plane().kubeconfig)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(docker_dir());
    cmd
}

/// The plugin with a pseudo-terminal as stdout (util-linux `script`), as in a user's shell.
fn in_terminal(args: &[&str], extra_env: &[(&str, &str)]) -> Output {
    let line = std::iter::once(BIN.to_string())
        .chain(args.iter().map(|a| a.to_string()))
        .chain([
            "--kubeconfig".into(),
            control_plane().kubeconfig.display().to_string(),
        ])
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TERM", "xterm");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.output().expect("script (util-linux)")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn import_and_apply(env: &TestEnv, name: &str) -> PathBuf {
    let out = std::env::temp_dir().join(format!("kubectl-lucid-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = plugin(&[&["import"], PHASE_FILES, &["-o", out.to_str().unwrap()]].concat())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "only the mongosh healthcheck is lost: {}",
        text(&o.stderr)
    );
    let applied = control_plane()
        .kubectl()
        .args(["apply", "-n", &env.namespace, "-f"])
        .arg(&out)
        .output()
        .expect("kubectl");
    assert!(
        applied.status.success(),
        "kubectl apply: {}",
        text(&applied.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_files_roll_out_to_ready_and_status_shows_it_live() {
    let env = TestEnv::start("kl-status", Duration::from_millis(200)).await;
    // The last phase's only service never becomes available until released: a rollout
    // caught half-way, for `status` to draw.
    env.kubelet.hold("tron-client");
    let out = import_and_apply(&env, "status");
    let ns = env.namespace.as_str();

    env.wait_phase("core", "Ready", |p| {
        p.status
            .as_ref()
            .is_some_and(|s| s.state.as_deref() == Some("Ready") && s.ready_services == 3)
    })
    .await;
    env.wait_service("tron-client", "created and progressing", |s| {
        s.status
            .as_ref()
            .is_some_and(|st| st.state.as_deref() == Some("Progressing"))
    })
    .await;

    // A terminal: colours, box drawing, bars.
    let o = in_terminal(&["status", "-n", ns], &[]);
    let tty = text(&o.stdout);
    assert!(o.status.success(), "{tty}");
    assert!(
        tty.contains(&format!("namespace {ns}: 3 phases, 6/7 services Ready")),
        "{tty}"
    );
    assert!(tty.contains("\x1b[32mReady"), "Ready in green: {tty:?}");
    assert!(
        tty.contains("\x1b[33mProgressing"),
        "Progressing in yellow: {tty:?}"
    );
    assert!(tty.contains("└─ tron-client"), "{tty}");
    assert!(
        tty.contains("[██████████]   3/3"),
        "a full bar for a Ready phase: {tty}"
    );
    let foundation = tty.find("foundation").unwrap();
    let core = tty.find("\ncore").unwrap();
    let support = tty.find("\nsupport").unwrap();
    assert!(
        foundation < core && core < support,
        "phases in rollout order: {tty}"
    );
    assert!(
        tty.contains("(last event: Applied"),
        "the operator's last event per service: {tty}"
    );

    // NO_COLOR on a terminal: the tree stays, the colours go.
    let o = in_terminal(&["status", "-n", ns], &[("NO_COLOR", "1")]);
    let plain_tty = text(&o.stdout);
    assert!(
        plain_tty.contains("└─ tron-client") && !plain_tty.contains("\x1b["),
        "{plain_tty:?}"
    );

    // Piped: plain text, ASCII only.
    let o = plugin(&["status", "-n", ns]).output().unwrap();
    let piped = text(&o.stdout);
    assert!(o.status.success());
    assert!(!piped.contains('\x1b') && piped.is_ascii(), "{piped:?}");
    assert!(piped.contains("`- tron-client"), "{piped}");
    assert!(
        piped
            .lines()
            .any(|l| l.contains("tron-client") && l.contains("Progressing")),
        "{piped}"
    );

    // --wait while tron-client is held: the timeout, exit 3.
    let started = Instant::now();
    let o = plugin(&["status", "-n", ns, "--wait", "--timeout", "2s"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert!(
        text(&o.stderr).contains("timed out after 2s"),
        "{}",
        text(&o.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(20));

    // --watch, piped: a new frame for each change the watches report. Released, tron-client
    // turns Ready and a frame says so.
    let mut watch = plugin(&["status", "-n", ns, "--watch"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                return;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a first frame");
    assert!(first.contains("6/7 services Ready"), "{first}");
    env.kubelet.release("tron-client");
    lucid_e2e::kubelet::mark_available(&env.api(), "tron-client")
        .await
        .expect("mark available");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no frame with 7/7 Ready; saw:\n{}", seen.join("\n")));
        let done = line.contains("7/7 services Ready");
        seen.push(line);
        if done {
            break;
        }
    }
    watch.kill().unwrap();
    let _ = watch.wait();

    // --watch on a terminal redraws in place (cursor home, clear) rather than scrolling;
    // read until a frame is drawn, then ended (`timeout` only as a safety net).
    let line = format!(
        "timeout 120 {BIN} status -n {ns} --watch --kubeconfig {}",
        control_plane().kubeconfig.display()
    );
    let mut terminal = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let mut drawing = terminal.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut drawing, &mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut screen = Vec::new();
    let drawn = |screen: &[u8]| {
        let s = String::from_utf8_lossy(screen);
        s.contains("\x1b[H\x1b[2J") && s.contains("7/7 services Ready")
    };
    while !drawn(&screen) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(bytes) => screen.extend(bytes),
            Err(_) => panic!("no frame redrawn in place: {:?}", text(&screen)),
        }
    }
    terminal.kill().unwrap();
    let _ = terminal.wait();

    // Everything Ready: --wait exits 0 at once.
    let o = plugin(&["status", "-n", ns, "--wait", "--timeout", "60s"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert!(text(&o.stdout).contains("all 7 services Ready"));
    for name in [
        "lucid-mongodb",
        "lucid-redis",
        "lucid-auth-service",
        "api-gateway",
        "blockchain-engine",
        "session-anchoring",
        "tron-client",
    ] {
        env.wait_service(name, "Ready", is_ready).await;
    }

    // `plan --render` of the imported files hashes their ConfigMaps and Secrets as the
    // operator did in the cluster: the pod templates carry the same config hash.
    let o = plugin(&[
        "plan",
        "-f",
        out.to_str().unwrap(),
        "--render",
        "-n",
        ns,
        "-o",
        "json",
    ])
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let config_hash = |d: &serde_json::Value| {
        d["spec"]["template"]["metadata"]["annotations"]["lucid.io/config-hash"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> = env.api();
    for rendered in list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "Deployment")
    {
        let name = rendered["metadata"]["name"].as_str().unwrap();
        let live = serde_json::to_value(deployments.get(name).await.unwrap()).unwrap();
        assert!(!config_hash(rendered).is_empty(), "{name}: a config hash");
        assert_eq!(
            config_hash(rendered),
            config_hash(&live),
            "{name}: plan --render and the operator hash the same ConfigMaps and Secrets"
        );
    }
    std::fs::remove_dir_all(&out).unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_wait_exits_1_when_a_service_is_degraded() {
    let env = TestEnv::start("kl-degraded", Duration::from_millis(100)).await;
    env.apply_documents(
        r#"
apiVersion: lucid.io/v1alpha1
kind: LucidPhase
metadata: {name: foundation}
spec: {}
---
apiVersion: lucid.io/v1alpha1
kind: LucidService
metadata: {name: lucid-redis}
spec: {image: {repository: pickme/lucid-redis}, phase: foundation, dependsOn: [lucid-vault], ports: [{name: redis, port: 6379}]}
"#,
    )
    .await;
    let o = plugin(&["status", "-n", &env.namespace, "--wait", "--timeout", "60s"])
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}{err}", text(&o.stdout));
    assert!(
        err.contains("LucidService/lucid-redis is Degraded: DependencyNotFound: dependsOn names LucidServices that do not exist: lucid-vault"),
        "{err}"
    );
    env.stop().await;
}
