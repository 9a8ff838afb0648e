//! The decisive tests on a real three-node cluster (`lucid_e2e::node::real_cluster_of(3)`): a
//! server (control plane + kubelet) and two agents, each with its own containerd, kubelet,
//! kube-proxy, DNS and pod range, the agents in network and mount namespaces of their own
//! (issue #19).
//!
//! 1. The session pipeline rolled out across the nodes: its pods run on more than one node,
//!    every node's DNS answers the Services, a NodePort answers on every node, and a
//!    session recorded through the api-gateway's Service (its pods talking to each other
//!    across nodes through Services and DNS) reads back whole.
//!
//! 4. (the harness's part) A power cut: every process of every node and of the control plane
//!    killed at once, then booted: every node and every service Ready again, and a session
//!    records. The time to all Ready is printed; how much of it is crash-loop back-off, and
//!    the Merkle root of a session recorded before the cut, are the operator's half of #19
//!    (restarts of pods in back-off; a read-back of an existing session).
//!
//! 2. `kubectl drain` (the real kubectl, the eviction API) of a node running one of the
//!    api-gateway's two replicas while a client sends requests through its Service: the
//!    drain waits on the operator's PodDisruptionBudget, the other replica serves, and the
//!    failed requests are counted (none expected: the services keep accepting for a few
//!    seconds after SIGTERM while the endpoint removal reaches every node).
//!
//! 3. A node lost (its kubelet, containerd and pods killed, not drained): the gateway's
//!    replica comes back on another node within the bound (node controller grace 20 s +
//!    the operator's 30 s toleration + a start), a stateful service whose claim lives on the
//!    lost node says `Degraded NodeLost` naming the node and the claim, and when the node
//!    returns everything is Ready again with its data (a Redis key, a recorded session).
//!
//! The tests share one cluster and one pipeline and take turns (a power cut in the middle
//! of another test would be that test's failure, not this one's).
//!
//! Needs root; `tests/run-all.sh` provides the binaries and images.

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use lucid_e2e::node::stack::{
    ADMIN_PASSWORD, ADMIN_USERNAME, PIPELINE, create_namespace, install_operator,
    pipeline_documents, record_session_binary,
};
use lucid_e2e::node::{RealCluster, real_cluster_of};
use lucid_e2e::{apply_documents, eventually_within, is_ready, wait_for_within};
use lucid_operator::api::LucidService;

const NODES: usize = 3;
/// Real pods on three kubelets sharing two cores: image unpacking, probes, a Deployment
/// controller in the loop.
const POD_WAIT: Duration = Duration::from_secs(300);

const NAMESPACE: &str = "multi";

fn cluster() -> &'static RealCluster {
    real_cluster_of(NODES)
}

/// One test at a time on the shared cluster.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The operator and the session pipeline in `NAMESPACE`, every service Ready.
async fn pipeline_ready(client: &Client) {
    static APPLIED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    APPLIED
        .get_or_init(|| async {
            install_operator(cluster());
            create_namespace(client, NAMESPACE).await;
            apply_documents(client, NAMESPACE, &pipeline_documents()).await;
        })
        .await;
    let services: Api<LucidService> = Api::namespaced(client.clone(), NAMESPACE);
    for name in PIPELINE {
        wait_for_within(&services, name, "Ready from real pods", POD_WAIT, is_ready).await;
    }
}

/// A session recorded through the api-gateway's Service at `gateway`: its summary.
fn record_session(gateway: std::net::Ipv4Addr) -> serde_json::Value {
    session(gateway, None)
}

/// Reads back, whole, the session `recorded` (what [`record_session`] printed); its summary.
fn read_session(gateway: std::net::Ipv4Addr, recorded: &serde_json::Value) -> serde_json::Value {
    let id = recorded["session_id"].as_str().expect("a session id");
    let read = session(gateway, Some(id));
    assert_eq!(
        read["merkle_root"], recorded["merkle_root"],
        "the session read back has another Merkle root"
    );
    read
}

fn session(gateway: std::net::Ipv4Addr, read: Option<&str>) -> serde_json::Value {
    let recorded = run({
        let mut c = Command::new(record_session_binary());
        c.arg(format!("http://{gateway}:8080")).arg("3");
        if let Some(id) = read {
            c.args(["--read", id]);
        }
        c
            // It logs in through the gateway's /auth/login (lucid-auth-service behind it).
            .env("LUCID_USERNAME", ADMIN_USERNAME)
            .env("LUCID_PASSWORD", ADMIN_PASSWORD);
        c
    });
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&recorded.stdout).trim()).expect("summary");
    assert!(summary["chunks"].as_u64().unwrap_or(0) >= 3, "{summary}");
    assert_eq!(summary["merkle_root"].as_str().map(str::len), Some(64));
    summary
}

async fn gateway_ip(client: &Client) -> std::net::Ipv4Addr {
    let ip = service(client, NAMESPACE, "api-gateway")
        .await
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("the api-gateway's ClusterIP");
    let gateway: std::net::Ipv4Addr = ip.parse().expect("an IPv4 ClusterIP");
    answers(
        (gateway, 8080),
        POD_WAIT,
        "the api-gateway's ClusterIP answers (kube-proxy's rules in place)",
    )
    .await;
    gateway
}

/// Waits until `address` accepts a TCP connection.
async fn answers(address: impl Into<std::net::SocketAddr>, within: Duration, what: &str) {
    let address = address.into();
    eventually_within(within, what, || async move {
        tokio::net::TcpStream::connect(address)
            .await
            .ok()
            .map(|_| ())
    })
    .await;
}

fn run(mut cmd: Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

async fn pods_of(client: &Client, namespace: &str, service: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    pods.list(&ListParams::default().labels(&format!("lucid.io/service={service}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

fn node_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

async fn service(client: &Client, namespace: &str, name: &str) -> Service {
    Api::<Service>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("Service {name}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_pipeline_runs_across_three_nodes_and_records_a_session() {
    let _turn = SERIAL.lock().await;
    let cluster = cluster();
    assert_eq!(cluster.nodes.len(), NODES);
    let client = cluster.client().await;
    let ns = NAMESPACE;
    pipeline_ready(&client).await;

    // Where the pods run: on more than one node (the scheduler spreads them by its
    // default scoring, the agents being as empty as the server).
    let mut nodes = BTreeSet::new();
    let mut placement = Vec::new();
    for name in PIPELINE {
        for pod in pods_of(&client, ns, name).await {
            placement.push(format!("{name} on {}", node_of(&pod)));
            nodes.insert(node_of(&pod));
        }
    }
    assert!(
        nodes.len() > 1,
        "the pipeline's pods all on one node: {placement:?}"
    );
    eprintln!("placement: {placement:?}");

    // A service with more than one replica has them on different nodes, once the operator
    // renders a topology spread (issue #19, the operator's half): checked whenever its
    // Deployment carries one, so the check turns itself on with that change.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    for name in PIPELINE {
        let Ok(deployment) = deployments.get(name).await else {
            continue;
        };
        let spec = deployment.spec.unwrap_or_default();
        let spread = spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .is_some_and(|c| !c.is_empty());
        if spec.replicas.unwrap_or(1) > 1 && spread {
            let on: BTreeSet<String> = pods_of(&client, ns, name)
                .await
                .iter()
                .map(node_of)
                .collect();
            assert!(on.len() > 1, "{name}'s replicas share a node: {on:?}");
        }
    }

    // Every node's DNS answers the Services (each node's pods ask their own node).
    let gateway_address = service(&client, ns, "api-gateway")
        .await
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("the api-gateway's ClusterIP");
    for node in &cluster.nodes {
        let answer = eventually_within(
            Duration::from_secs(30),
            &format!("{}'s DNS answers api-gateway.{ns}", node.name),
            || async { cluster.resolve_service_on(&node.name, "api-gateway", ns) },
        )
        .await;
        assert_eq!(answer.to_string(), gateway_address, "{}'s DNS", node.name);
    }

    // A NodePort to the gateway answers on every node, whichever node its pod is on.
    let selector = service(&client, ns, "api-gateway")
        .await
        .spec
        .and_then(|s| s.selector)
        .expect("the api-gateway's selector");
    let node_port: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "gateway-nodeport"},
        "spec": {"type": "NodePort", "selector": selector, "ports": [{"port": 8080, "targetPort": 8080}]},
    }))
    .expect("a Service");
    let node_port = Api::<Service>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &node_port)
        .await
        .expect("create the NodePort Service")
        .spec
        .and_then(|s| s.ports)
        .and_then(|p| p.first().and_then(|p| p.node_port))
        .expect("a node port");
    for node in &cluster.nodes {
        let address = (node.ip, node_port as u16);
        answers(
            address,
            Duration::from_secs(60),
            &format!("the NodePort on {} ({}:{node_port})", node.name, node.ip),
        )
        .await;
    }

    // A session through the api-gateway's Service: the gateway, auth service, recorder,
    // storage and databases reach each other by Service name across the nodes.
    record_session(gateway_ip(&client).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_power_cut_the_cluster_boots_and_the_stack_is_ready_again() {
    let _turn = SERIAL.lock().await;
    let cluster = cluster();
    let client = cluster.client().await;
    pipeline_ready(&client).await;
    let before = record_session(gateway_ip(&client).await);

    tokio::task::spawn_blocking(|| real_cluster_of(NODES).power_cut())
        .await
        .expect("power cut");
    let booted = std::time::Instant::now();
    tokio::task::spawn_blocking(|| {
        real_cluster_of(NODES).boot();
        real_cluster_of(NODES).wait_nodes_ready(Duration::from_secs(180));
    })
    .await
    .expect("boot");
    let nodes_ready = booted.elapsed();
    // A new client: the old one's connections went with the API server.
    let client = cluster.client().await;
    let services: Api<LucidService> = Api::namespaced(client.clone(), NAMESPACE);
    // Ready again means after the boot: the status written before the cut still says Ready
    // until the operator (killed too) has looked again, so every service's pods must have
    // turned Ready since the boot, and the service Ready besides.
    let boot_time = jiff::Timestamp::now()
        - jiff::SignedDuration::try_from(booted.elapsed()).expect("a duration");
    for name in PIPELINE {
        let client = client.clone();
        eventually_within(
            Duration::from_secs(600),
            &format!("{name}'s pods Ready since the boot"),
            || {
                let client = client.clone();
                async move {
                    let pods = pods_of(&client, NAMESPACE, name).await;
                    let fresh = !pods.is_empty()
                        && pods.iter().all(|p| {
                            p.status
                                .as_ref()
                                .and_then(|s| s.conditions.as_ref())
                                .is_some_and(|c| {
                                    c.iter().any(|c| {
                                        c.type_ == "Ready"
                                            && c.status == "True"
                                            && c.last_transition_time
                                                .as_ref()
                                                .is_some_and(|t| t.0 >= boot_time)
                                    })
                                })
                        });
                    fresh.then_some(())
                }
            },
        )
        .await;
        wait_for_within(
            &services,
            name,
            "Ready again after the power cut",
            POD_WAIT,
            is_ready,
        )
        .await;
    }
    let all_ready = booted.elapsed();
    // Restarts after the boot: how much crash-loop back-off the recovery went through.
    let mut restarts = Vec::new();
    for name in PIPELINE {
        for pod in pods_of(&client, NAMESPACE, name).await {
            let count: i32 = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .map(|c| c.iter().map(|c| c.restart_count).sum())
                .unwrap_or(0);
            restarts.push(format!("{name}: {count}"));
        }
    }
    eprintln!(
        "power cut: nodes Ready {:.0} s after the boot began, every service Ready after {:.0} s; \
         container restarts {restarts:?}",
        nodes_ready.as_secs_f64(),
        all_ready.as_secs_f64()
    );
    // The stack works again: MongoDB (nx-27017, past its stale PID file) and Redis from
    // their data on disk. The session recorded before the cut reads back with the same
    // Merkle root, and a new one records.
    let gateway = gateway_ip(&client).await;
    read_session(gateway, &before);
    record_session(gateway);
}

/// `name` scaled to `replicas` (a user's `kubectl patch`), Ready with its pods on that many
/// different nodes.
async fn scaled_and_spread(client: &Client, name: &str, replicas: i32) -> Vec<String> {
    let services: Api<LucidService> = Api::namespaced(client.clone(), NAMESPACE);
    services
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": replicas}})),
        )
        .await
        .expect("scale");
    let ls = wait_for_within(&services, name, "Ready at the new scale", POD_WAIT, |ls| {
        is_ready(ls)
            && ls
                .status
                .as_ref()
                .is_some_and(|s| s.ready_replicas == replicas && s.nodes.len() == replicas as usize)
    })
    .await;
    ls.status.map(|s| s.nodes).unwrap_or_default()
}

/// The server node's name (it runs the control plane; the agents are the others).
fn server_name() -> String {
    cluster()
        .nodes
        .iter()
        .find(|n| n.netns.is_none())
        .expect("a server node")
        .name
        .clone()
}

/// Requests to `gateway`'s `/health`, one after another until `stop`: (answered, failed).
fn health_client(
    gateway: std::net::Ipv4Addr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(u64, u64, Vec<String>)> {
    tokio::spawn(async move {
        let (mut ok, mut failed, mut errors) = (0u64, 0u64, Vec::new());
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            // A new connection each time: one kept alive would never meet a new route.
            match tokio::time::timeout(Duration::from_secs(5), health_status(gateway)).await {
                Ok(Ok(200)) => ok += 1,
                Ok(Ok(status)) => {
                    failed += 1;
                    errors.push(format!("HTTP {status}"));
                }
                Ok(Err(e)) => {
                    failed += 1;
                    errors.push(e.to_string());
                }
                Err(_) => {
                    failed += 1;
                    errors.push("no answer within 5 s".into());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (ok, failed, errors)
    })
}

/// One `GET /health` on a new connection: the status code.
async fn health_status(gateway: std::net::Ipv4Addr) -> std::io::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect((gateway, 8080)).await?;
    c.write_all(b"GET /health HTTP/1.1\r\nHost: api-gateway\r\nConnection: close\r\n\r\n")
        .await?;
    let mut head = [0u8; 12];
    c.read_exact(&mut head).await?;
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP answer"))
}

/// Everything in the pipeline Ready again (after a test that moved pods around).
async fn all_ready_again(client: &Client) {
    let services: Api<LucidService> = Api::namespaced(client.clone(), NAMESPACE);
    for name in PIPELINE {
        wait_for_within(&services, name, "Ready again", POD_WAIT, is_ready).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_waits_on_the_budget_and_the_gateway_keeps_answering() {
    let _turn = SERIAL.lock().await;
    let cluster = cluster();
    let client = cluster.client().await;
    pipeline_ready(&client).await;
    let nodes = scaled_and_spread(&client, "api-gateway", 2).await;
    // The operator's budget, in the version 1.20 serves.
    let budget = cluster
        .kubectl()
        .args([
            "-n",
            NAMESPACE,
            "get",
            "poddisruptionbudgets.v1beta1.policy",
            "api-gateway",
        ])
        .args(["-o", "jsonpath={.spec.maxUnavailable}"])
        .output()
        .expect("kubectl");
    assert_eq!(String::from_utf8_lossy(&budget.stdout), "1", "{budget:?}");
    // In force: the disruption controller allows exactly one eviction of the two pods.
    eventually_within(
        Duration::from_secs(60),
        "the budget allows one disruption",
        || async {
            let out = cluster
                .kubectl()
                .args([
                    "-n",
                    NAMESPACE,
                    "get",
                    "poddisruptionbudgets.v1beta1.policy",
                    "api-gateway",
                ])
                .args([
                    "-o",
                    "jsonpath={.status.disruptionsAllowed}/{.status.expectedPods}",
                ])
                .output()
                .ok()?;
            (String::from_utf8_lossy(&out.stdout) == "1/2").then_some(())
        },
    )
    .await;
    // An agent with one of the replicas: the server also holds the databases' volumes.
    let server = server_name();
    let target = nodes
        .iter()
        .find(|n| **n != server)
        .unwrap_or(&nodes[0])
        .clone();

    let gateway = gateway_ip(&client).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let requests = health_client(gateway, stop.clone());
    // Schedulable again when the test ends, passed or not: the tests share the cluster.
    let _uncordon = Uncordon(target.clone());
    let drain = tokio::task::spawn_blocking({
        let target = target.clone();
        move || {
            real_cluster_of(NODES)
                .kubectl()
                .args([
                    "drain",
                    &target,
                    "--ignore-daemonsets",
                    "--delete-emptydir-data",
                ])
                .args(["--timeout", "300s"])
                .output()
                .expect("kubectl drain")
        }
    })
    .await
    .expect("drain");
    assert!(
        drain.status.success(),
        "kubectl drain {target} failed:\n{}\n{}",
        String::from_utf8_lossy(&drain.stdout),
        String::from_utf8_lossy(&drain.stderr)
    );
    // The replacement Ready elsewhere, the client still going.
    let services: Api<LucidService> = Api::namespaced(client.clone(), NAMESPACE);
    let ls = wait_for_within(
        &services,
        "api-gateway",
        "2/2 off the drained node",
        POD_WAIT,
        |ls| {
            is_ready(ls)
                && ls
                    .status
                    .as_ref()
                    .is_some_and(|s| s.ready_replicas == 2 && !s.nodes.contains(&target))
        },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed, errors) = requests.await.expect("client");
    eprintln!(
        "drain of {target}: gateway on {:?} after; {ok} requests answered, {failed} failed {errors:?}",
        ls.status.map(|s| s.nodes).unwrap_or_default()
    );
    assert!(ok > 0, "the client sent nothing");
    assert_eq!(failed, 0, "requests failed during the drain: {errors:?}");
    drop(_uncordon);
    all_ready_again(&client).await;
}

/// `kubectl uncordon` of a node when dropped.
struct Uncordon(String);

impl Drop for Uncordon {
    fn drop(&mut self) {
        let _ = cluster().kubectl().args(["uncordon", &self.0]).output();
    }
}

/// A stateful service whose volume lives on `node` (a Redis with its data on a
/// `WaitForFirstConsumer` class, as k3s's local-path volumes live on one board).
const PINNED_CACHE: &str = r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: lucid-local}
provisioner: rancher.io/local-path
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
---
apiVersion: lucid.io/v1alpha1
kind: LucidService
metadata: {name: lucid-cache}
spec:
  image: {repository: lucid/redis, tag: harness, pullPolicy: Never}
  phase: foundation
  ports: [{name: redis, port: 6379}]
  args: [--port, "6379", --bind, 0.0.0.0, --dir, /app/data, --protected-mode, "no", --appendonly, "yes", --appendfsync, always]
  healthCheck: {kind: Tcp, intervalSeconds: 5}
  nodeSelector: {kubernetes.io/arch: ARCH, kubernetes.io/hostname: NODE}
  storage:
    data: {size: 64Mi, storageClassName: lucid-local}
    logs: {kind: EmptyDir}
"#;

fn redis_cli(address: std::net::Ipv4Addr, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", &address.to_string(), "-p", "6379"])
        .args(args)
        .output()
        .expect("redis-cli");
    if !out.status.success() {
        // What answers there, for the failure message.
        let raw = std::net::TcpStream::connect((address, 6379)).and_then(|mut c| {
            use std::io::{Read, Write};
            c.set_read_timeout(Some(Duration::from_secs(2)))?;
            c.write_all(b"PING\r\n")?;
            let mut answer = vec![0u8; 200];
            let n = c.read(&mut answer)?;
            Ok(String::from_utf8_lossy(&answer[..n]).into_owned())
        });
        panic!(
            "redis-cli {args:?} at {address} failed: {}{}; a raw PING there answers {raw:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The address of `service`'s one ready pod.
async fn pod_ip(client: &Client, service: &str) -> std::net::Ipv4Addr {
    eventually_within(POD_WAIT, &format!("{service}'s pod IP"), || async {
        pods_of(client, NAMESPACE, service)
            .await
            .iter()
            .find_map(|p| p.status.as_ref()?.pod_ip.as_ref()?.parse().ok())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_node_moves_what_can_move_names_what_cannot_and_recovers() {
    let _turn = SERIAL.lock().await;
    let cluster = cluster();
    let client = cluster.client().await;
    pipeline_ready(&client).await;
    let nodes = scaled_and_spread(&client, "api-gateway", 2).await;
    let server = server_name();
    let target = nodes
        .iter()
        .find(|n| **n != server)
        .expect("a gateway replica on an agent (two replicas, one server)")
        .clone();

    // A stateful service on the node about to be lost, with a key in its data.
    let storage = cluster
        .kubectl()
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(
                PINNED_CACHE
                    .split("---")
                    .next()
                    .unwrap_or_default()
                    .as_bytes(),
            )?;
            child.wait_with_output()
        })
        .expect("kubectl apply");
    assert!(storage.status.success(), "{storage:?}");
    let cache_doc = PINNED_CACHE
        .split("---")
        .nth(1)
        .unwrap_or_default()
        .replace("ARCH", lucid_e2e::node::stack::host_arch())
        .replace("NODE", &target);
    apply_documents(&client, NAMESPACE, &cache_doc).await;
    let services: Api<LucidService> = Api::namespaced(client.clone(), NAMESPACE);
    let cache = wait_for_within(&services, "lucid-cache", "Ready", POD_WAIT, is_ready).await;
    assert_eq!(
        cache.status.as_ref().map(|s| s.data_nodes.clone()),
        Some(vec![lucid_operator::api::ClaimNode {
            claim: "lucid-cache-data".into(),
            node: target.clone(),
        }]),
        "status names the node its data lives on"
    );
    // Its pod directly: the key is what is checked here, not the Service's routing.
    let cache_ip = pod_ip(&client, "lucid-cache").await;
    answers(
        (cache_ip, 6379),
        Duration::from_secs(60),
        "the cache answers",
    )
    .await;
    assert_eq!(
        redis_cli(cache_ip, &["SET", "kept", "across-the-loss"]),
        "OK"
    );
    let before = record_session(gateway_ip(&client).await);

    // The board loses power.
    let lost_at = std::time::Instant::now();
    tokio::task::spawn_blocking({
        let target = target.clone();
        move || real_cluster_of(NODES).stop_node(&target)
    })
    .await
    .expect("stop the node");
    // Booted again when the test ends early: the tests share the cluster.
    let mut down = NodeDown(Some(target.clone()));

    // The stateful service cannot move and says where and why.
    let cache = wait_for_within(
        &services,
        "lucid-cache",
        "Degraded NodeLost",
        Duration::from_secs(180),
        |ls| {
            ls.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Degraded" && c.status == "True" && c.reason == "NodeLost")
            })
        },
    )
    .await;
    let message = lucid_e2e::condition(&cache.status.unwrap().conditions, "Degraded")
        .unwrap()
        .2;
    assert!(
        message.contains(&format!("node {target} is not ready"))
            && message.contains("claim lucid-cache-data lives on it"),
        "{message}"
    );
    let marked_lost = lost_at.elapsed();
    // The gateway's replica moves: Ready 2/2 again, none on the lost node.
    wait_for_within(
        &services,
        "api-gateway",
        "2/2 Ready off the lost node",
        Duration::from_secs(300),
        |ls| {
            is_ready(ls)
                && ls
                    .status
                    .as_ref()
                    .is_some_and(|s| s.ready_replicas == 2 && !s.nodes.contains(&target))
        },
    )
    .await;
    let moved = lost_at.elapsed();
    eprintln!(
        "node {target} lost: the cache Degraded NodeLost after {:.0} s, the gateway 2/2 on other nodes after {:.0} s",
        marked_lost.as_secs_f64(),
        moved.as_secs_f64()
    );
    // Within the bound that suits a small cluster: 20 s of node-controller grace, 30 s of
    // toleration, then a pod's start on a loaded two-core machine — well under the five
    // minutes Kubernetes' defaults would take before anything moved.
    assert!(moved < Duration::from_secs(240), "moved after {moved:?}");

    // The board comes back: everything Ready again by itself, the data kept.
    let booting = down.0.take();
    tokio::task::spawn_blocking(move || {
        if let Some(node) = booting {
            real_cluster_of(NODES).start_node(&node);
        }
        real_cluster_of(NODES).wait_nodes_ready(Duration::from_secs(180));
    })
    .await
    .expect("start the node");
    wait_for_within(&services, "lucid-cache", "Ready again", POD_WAIT, is_ready).await;
    all_ready_again(&client).await;
    let cache_ip = pod_ip(&client, "lucid-cache").await;
    answers(
        (cache_ip, 6379),
        Duration::from_secs(60),
        "the cache answers again",
    )
    .await;
    assert_eq!(redis_cli(cache_ip, &["GET", "kept"]), "across-the-loss");
    read_session(gateway_ip(&client).await, &before);
    services
        .delete("lucid-cache", &kube::api::DeleteParams::default())
        .await
        .expect("delete the cache");
}

/// A node stopped by a test, booted again if the test ends before it does.
struct NodeDown(Option<String>);

impl Drop for NodeDown {
    fn drop(&mut self) {
        if let Some(node) = self.0.take() {
            real_cluster_of(NODES).start_node(&node);
        }
    }
}
