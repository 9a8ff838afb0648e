//! `cargo run --release -p lucid-e2e --bin lucid-bench`: the rollout benchmark in BENCHMARKS.md.
//!
//! On the real API server (with an audit log), for the 27-service Lucid stack and for 1,000
//! services in 10 phases:
//! - the release `lucid-operator` binary runs as its own process with its own user;
//! - a stand-in kubelet marks each Deployment available as soon as it appears;
//! - from watch timestamps: for every service held back by something, the time from its last
//!   blocker (a dependency, or a member of an earlier phase) turning Ready to its Deployment
//!   appearing (p50/p99); the operator's API requests per service (audit log); its peak RSS;
//! - baseline, same run: `kubectl apply` of the same rendered Deployments, in the same order,
//!   into a fresh namespace (the API server's own cost, with no gating).
//!
//! Prints a Markdown report (also written to `target/bench.md`). `LUCID_BENCH_OPERATOR=<path>`
//! measures another operator binary (the image's static musl build).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use lucid_e2e::{Kubelet, control_plane, create_namespace, install_crds};
use lucid_operator::api::{LucidPhase, LucidService};
use lucid_operator::graph::service_ready;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const TOOLS: &str = "/var/cache/lucid-tools/kubectl-v37-2.0.0";

struct Scenario {
    name: &'static str,
    phases: Vec<String>,
    services: Vec<String>,
}

struct Result {
    services: usize,
    rollout: Duration,
    latencies_ms: Vec<f64>,
    requests: BTreeMap<String, usize>,
    peak_rss_kib: u64,
    standby_rss_kib: Option<u64>,
    baseline_total: Duration,
    baseline_requests: BTreeMap<String, usize>,
    restart: Option<Restart>,
}

/// A fresh operator process started on the namespace once all is Ready.
struct Restart {
    /// Until it had reconciled every service and phase once.
    settled: Duration,
    requests: BTreeMap<String, usize>,
    peak_rss_kib: u64,
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    lucid_e2e::control_plane::audit_on();
    lucid_e2e::init_tracing();
    // LUCID_BENCH_OPERATOR: another build to measure, such as the image's static musl binary
    // (`images/build.sh` leaves it under /var/cache/lucid-images/target-operator).
    let operator_bin = std::env::var_os("LUCID_BENCH_OPERATOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("{ROOT}/target/release/lucid-operator")));
    assert!(
        operator_bin.exists(),
        "build it first: cargo build --release -p lucid-operator ({})",
        operator_bin.display()
    );
    let cp = control_plane();
    let client = cp.client().await;
    install_crds(&client).await;

    let mut report = String::new();
    let mut results = Vec::new();
    // LUCID_BENCH_ONLY_STACK=1 runs the 27-service scenario alone (a quick look).
    let scenarios = if std::env::var("LUCID_BENCH_ONLY_STACK").is_ok() {
        vec![lucid_stack()]
    } else {
        vec![lucid_stack(), synthetic(10, 100)]
    };
    for scenario in scenarios {
        let r = run(&client, &operator_bin, &scenario).await?;
        results.push((scenario.name, r));
    }

    report.push_str("| scenario | services | rollout (all Ready) | blocker Ready → Deployment applied p50 / p99 | operator API requests / service | operator peak RSS | baseline: `kubectl apply` of the same Deployments | baseline requests / service |\n|---|---|---|---|---|---|---|---|\n");
    for (name, r) in &results {
        let total: usize = r.requests.values().sum();
        let base: usize = r.baseline_requests.values().sum();
        report.push_str(&format!(
            "| {name} | {} | {:.1} s | {:.1} ms / {:.1} ms | {:.1} | {:.1} MiB | {:.1} s ({:.1} ms / Deployment) | {:.1} |\n",
            r.services,
            r.rollout.as_secs_f64(),
            percentile(&r.latencies_ms, 50.0),
            percentile(&r.latencies_ms, 99.0),
            total as f64 / r.services as f64,
            r.peak_rss_kib as f64 / 1024.0,
            r.baseline_total.as_secs_f64(),
            r.baseline_total.as_secs_f64() * 1000.0 / r.services as f64,
            base as f64 / r.services as f64,
        ));
    }
    for (name, r) in &results {
        report.push_str(&format!(
            "\n{name}: operator requests by verb {:?}; baseline {:?}\n",
            r.requests, r.baseline_requests
        ));
        if let Some(restart) = &r.restart {
            let writes: usize = restart
                .requests
                .iter()
                .filter(|(verb, _)| {
                    ["create", "patch", "update", "delete"]
                        .iter()
                        .any(|w| verb.starts_with(w))
                })
                .map(|(_, n)| n)
                .sum();
            report.push_str(&format!(
                "{name}: restart with all Ready: settled in {:.1} s, {} requests ({writes} writes) {:?}, peak RSS {:.1} MiB\n",
                restart.settled.as_secs_f64(),
                restart.requests.values().sum::<usize>(),
                restart.requests,
                restart.peak_rss_kib as f64 / 1024.0
            ));
        }
        if let Some(standby) = r.standby_rss_kib {
            report.push_str(&format!(
                "{name}: peak RSS, leader {:.1} MiB, standby {:.1} MiB (two replicas, leader election)\n",
                r.peak_rss_kib as f64 / 1024.0,
                standby as f64 / 1024.0
            ));
        }
    }
    println!("{report}");
    std::fs::write(format!("{ROOT}/target/bench.md"), &report)?;
    Ok(())
}

fn lucid_stack() -> Scenario {
    let out = Command::new(format!("{TOOLS}/helm"))
        .args(["template", "lucid", &format!("{ROOT}/charts/lucid-stack")])
        .output()
        .expect("helm");
    let text = String::from_utf8(out.stdout).expect("utf8");
    let (mut phases, mut services) = (Vec::new(), Vec::new());
    for doc in text.split("\n---") {
        if doc.contains("kind: LucidPhase") {
            phases.push(doc.to_string());
        } else if doc.contains("kind: LucidService") {
            services.push(doc.to_string());
        }
    }
    Scenario {
        name: "Lucid stack (4 phases)",
        phases,
        services,
    }
}

/// `phases` phases in a chain, `per_phase` services each, in dependency chains of ten.
fn synthetic(phases: usize, per_phase: usize) -> Scenario {
    let phase_docs = (0..phases)
        .map(|i| {
            let deps = if i == 0 { String::new() } else { format!("p{:02}", i - 1) };
            format!("apiVersion: lucid.io/v1alpha1\nkind: LucidPhase\nmetadata: {{name: p{i:02}}}\nspec: {{dependsOn: [{deps}]}}\n")
        })
        .collect();
    let mut services = Vec::new();
    for i in 0..phases {
        for j in 0..per_phase {
            let deps = if j % 10 == 0 {
                String::new()
            } else {
                format!("s{i:02}-{:03}", j - 1)
            };
            services.push(format!(
                "apiVersion: lucid.io/v1alpha1\nkind: LucidService\nmetadata: {{name: s{i:02}-{j:03}}}\nspec:\n  image: {{repository: pickme/lucid-bench}}\n  phase: p{i:02}\n  dependsOn: [{deps}]\n  ports: [{{name: http, port: 8080}}]\n  storage: {{data: {{kind: EmptyDir}}, logs: {{kind: EmptyDir}}}}\n"
            ));
        }
    }
    Scenario {
        name: "1,000 services (10 phases)",
        phases: phase_docs,
        services,
    }
}

fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[rank.min(v.len() - 1)]
}

async fn apply<K>(api: &Api<K>, doc: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let value: serde_json::Value = serde_saphyr::from_str(doc).expect("yaml");
    let name = value["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();
    let mut value = value;
    value["metadata"]
        .as_object_mut()
        .map(|m| m.remove("namespace"));
    api.patch(
        &name,
        &PatchParams::apply("bench").force(),
        &Patch::Apply(value),
    )
    .await
    .expect("apply");
}

/// A process's peak resident set (VmHWM), KiB.
fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn run(
    client: &Client,
    operator_bin: &PathBuf,
    scenario: &Scenario,
) -> std::result::Result<Result, Box<dyn std::error::Error>> {
    let cp = control_plane();
    let ns = format!("bench-{}", scenario.services.len());
    create_namespace(client, &ns).await;
    let env_text = std::fs::read_to_string(format!("{ROOT}/crds/examples/environment.yaml"))?;
    for doc in env_text.split("\n---\n") {
        let value: serde_json::Value = serde_saphyr::from_str(doc)?;
        let name = value["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let kind = value["kind"].as_str().unwrap_or_default();
        let patch = PatchParams::apply("bench").force();
        if kind == "Secret" {
            Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns)
                .patch(&name, &patch, &Patch::Apply(value))
                .await?;
        } else {
            Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), &ns)
                .patch(&name, &patch, &Patch::Apply(value))
                .await?;
        }
    }

    // LUCID_BENCH_BIG_SECRETS=N: N unrelated 256 KiB Secrets (Helm-release-like) in the
    // namespace, which the operator watches by metadata only.
    let big_secrets: usize = std::env::var("LUCID_BENCH_BIG_SECRETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let secrets_api = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns);
    let blob = "x".repeat(256 * 1024);
    for i in 0..big_secrets {
        let body = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("sh.helm.release.v1.unrelated.v{i}")},
            "stringData": {"release": blob},
        });
        secrets_api
            .patch(
                &format!("sh.helm.release.v1.unrelated.v{i}"),
                &PatchParams::apply("bench").force(),
                &Patch::Apply(body),
            )
            .await?;
    }

    // Observe: when each service turns Ready, when each Deployment first appears.
    let ready_at: Arc<Mutex<HashMap<String, Instant>>> = Default::default();
    let created_at: Arc<Mutex<HashMap<String, Instant>>> = Default::default();
    let services_api: Api<LucidService> = Api::namespaced(client.clone(), &ns);
    let deployments_api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let watch_services = tokio::spawn({
        let (api, ready_at) = (services_api.clone(), ready_at.clone());
        async move {
            let mut events = watcher(api, Default::default()).applied_objects().boxed();
            while let Some(Ok(ls)) = events.next().await {
                if service_ready(&ls) {
                    ready_at
                        .lock()
                        .unwrap()
                        .entry(ls.name_any())
                        .or_insert_with(Instant::now);
                }
            }
        }
    });
    let watch_deployments = tokio::spawn({
        let (api, created_at) = (deployments_api.clone(), created_at.clone());
        async move {
            let mut events = watcher(api, Default::default()).applied_objects().boxed();
            while let Some(Ok(d)) = events.next().await {
                created_at
                    .lock()
                    .unwrap()
                    .entry(d.name_any())
                    .or_insert_with(Instant::now);
            }
        }
    });
    let kubelet = Kubelet::start(client.clone(), &ns, Duration::ZERO);

    // LUCID_BENCH_STANDBY=1: two replicas electing a leader (the chart's default), each its
    // own process and user; the standby's peak RSS is reported beside the leader's.
    let standby_mode = std::env::var("LUCID_BENCH_STANDBY").is_ok();
    let replica = |user: &str, identity: &str| {
        let mut cmd = Command::new(operator_bin);
        cmd.env("KUBECONFIG", cp.kubeconfig_for(user))
            .env("LUCID_WATCH_NAMESPACES", &ns)
            .env("LUCID_HTTP_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if standby_mode {
            cmd.env("LUCID_LEADER_ELECTION", "true")
                .env("LUCID_LEASE_NAMESPACE", &ns)
                .env("POD_NAME", identity);
        }
        cmd.spawn()
    };
    let mut operator = replica("lucid-operator", "leader")?;
    let pid = operator.id();
    if standby_mode {
        // The leader first: it creates the Lease; the standby then finds it held.
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(client.clone(), &ns);
        while leases.get_opt("lucid-operator").await?.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut standby = if standby_mode {
        Some(replica("lucid-operator-b", "standby")?)
    } else {
        None
    };

    let started = Instant::now();
    let phases_api: Api<LucidPhase> = Api::namespaced(client.clone(), &ns);
    for doc in &scenario.phases {
        apply(&phases_api, doc).await;
    }
    for doc in &scenario.services {
        apply(&services_api, doc).await;
    }
    let n = scenario.services.len();
    let deadline = Instant::now() + Duration::from_secs(900);
    while ready_at.lock().unwrap().len() < n {
        assert!(
            Instant::now() < deadline,
            "rollout did not finish: {} of {n} Ready",
            ready_at.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rollout = started.elapsed();
    // The phases' own status trails their members' (debounced): let the operator finish it
    // before the restart below, which would otherwise write it and count as a write.
    let phases_api_wait: Api<LucidPhase> = Api::namespaced(client.clone(), &ns);
    loop {
        let phases = phases_api_wait.list(&Default::default()).await?;
        if phases.items.iter().all(|p| {
            p.status.as_ref().is_some_and(|s| {
                s.state.as_deref() == Some("Ready") && s.ready_services == s.services
            })
        }) {
            break;
        }
        assert!(Instant::now() < deadline, "phases did not report Ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let peak_rss_kib = peak_rss(pid);
    let requests = cp.requests_by("lucid-operator");
    let standby_rss_kib = standby.as_ref().map(|s| peak_rss(s.id()));
    if let Some(standby) = standby.as_mut() {
        standby.kill()?;
        let _ = standby.wait();
    }
    operator.kill()?;
    let _ = operator.wait();
    let restart = if standby_mode {
        None
    } else {
        Some(restart(operator_bin, &ns, n, scenario.phases.len()).await?)
    };
    kubelet.stop();
    watch_services.abort();
    watch_deployments.abort();

    // Latency from the last blocker turning Ready to the Deployment appearing.
    let services: Vec<LucidService> = services_api.list(&Default::default()).await?.items;
    let phases: HashMap<String, LucidPhase> = phases_api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .map(|p| (p.name_any(), p))
        .collect();
    let ready_at = ready_at.lock().unwrap().clone();
    let created_at = created_at.lock().unwrap().clone();
    let mut latencies_ms = Vec::new();
    for s in &services {
        let mut upstream = Vec::new();
        let mut next = phases[&s.spec.phase].spec.depends_on.clone();
        while let Some(p) = next.pop() {
            next.extend(phases[&p].spec.depends_on.clone());
            upstream.push(p);
        }
        let blockers = services.iter().filter(|m| {
            upstream.contains(&m.spec.phase) || s.spec.depends_on.contains(&m.name_any())
        });
        let Some(last_blocker) = blockers.filter_map(|b| ready_at.get(&b.name_any())).max() else {
            continue;
        };
        let created = created_at[&s.name_any()];
        latencies_ms.push(
            created
                .saturating_duration_since(*last_blocker)
                .as_secs_f64()
                * 1000.0,
        );
    }

    // Baseline: the same Deployments, in the order the operator created them, by kubectl.
    let baseline_ns = format!("baseline-{n}");
    create_namespace(client, &baseline_ns).await;
    let dir = cp.dir.join(format!("baseline-{n}"));
    std::fs::create_dir_all(&dir)?;
    let mut order: Vec<(Instant, String)> =
        created_at.iter().map(|(k, v)| (*v, k.clone())).collect();
    order.sort();
    let deployments: HashMap<String, Deployment> = deployments_api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .map(|d| (d.name_any(), d))
        .collect();
    for (i, (_, name)) in order.iter().enumerate() {
        let d = &deployments[name];
        let clean = serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": d.metadata.labels, "annotations": d.metadata.annotations},
            "spec": d.spec,
        });
        std::fs::write(
            dir.join(format!("{i:05}-{name}.yaml")),
            serde_saphyr::to_string(&clean)?,
        )?;
    }
    let before = Instant::now();
    let status = Command::new(format!("{TOOLS}/kubectl"))
        .args([
            "--kubeconfig",
            &cp.kubeconfig_for("baseline-kubectl").display().to_string(),
            "-n",
            &baseline_ns,
            "apply",
            "-f",
            &dir.display().to_string(),
        ])
        .stdout(Stdio::null())
        .status()?;
    assert!(status.success(), "kubectl apply failed");
    let baseline_total = before.elapsed();
    let baseline_requests = cp.requests_by("baseline-kubectl");
    // Later scenarios count from here: remove this one's requests from the next totals.
    let _ = std::fs::write(cp.dir.join("audit.log"), "");
    Ok(Result {
        services: n,
        rollout,
        latencies_ms,
        requests,
        peak_rss_kib,
        standby_rss_kib,
        baseline_total,
        baseline_requests,
        restart,
    })
}

/// Starts a fresh operator (another user, so its requests are told apart) on a namespace
/// where everything is Ready, and waits, by its own metrics, until it has reconciled every
/// service and phase once.
async fn restart(
    operator_bin: &PathBuf,
    ns: &str,
    services: usize,
    phases: usize,
) -> std::result::Result<Restart, Box<dyn std::error::Error>> {
    let cp = control_plane();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let started = Instant::now();
    let mut operator = Command::new(operator_bin)
        .env("KUBECONFIG", cp.kubeconfig_for("lucid-operator-b"))
        .env("LUCID_WATCH_NAMESPACES", ns)
        .env("LUCID_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let text = scrape(port).unwrap_or_default();
        let count = |controller: &str| -> f64 {
            text.lines()
                .filter(|l| {
                    l.contains("reconciles_total{")
                        && l.contains(&format!("controller=\"{controller}\""))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        if count("lucidservice") >= services as f64 && count("lucidphase") >= phases as f64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted operator did not settle"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let settled = started.elapsed();
    let peak_rss_kib = peak_rss(operator.id());
    operator.kill()?;
    let _ = operator.wait();
    Ok(Restart {
        settled,
        requests: cp.requests_by("lucid-operator-b"),
        peak_rss_kib,
    })
}

/// GET /metrics over plain HTTP/1.0 on loopback.
fn scrape(port: u16) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text)
}
