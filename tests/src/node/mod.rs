//! A real single-node Kubernetes 1.20 cluster on this machine, for the few decisive tests
//! that need pods to really run: the control plane on the node's bridge address, containerd
//! plus runc and the bridge CNI plugin, the kubelet, kube-proxy and kube-scheduler (all built from
//! Debian's `kubernetes` source), cluster DNS and a volume provisioner from the harness, and
//! the images from `images/build.sh` and `tests/harness/build-node-images.sh` imported as on
//! an air-gapped Pi.
//!
//! Nothing leaves the machine: everything listens on loopback or on the harness's bridge,
//! forwarded traffic never crosses from the bridge to another interface, the kubelet has no
//! cloud provider, the API server reaches kubelets by IP and pods resolve names only through
//! the harness's DNS. What the node changes on the machine is recorded first and undone when
//! the process exits, whether the tests passed or not (see [`host`]).
//!
//! Needs root. One real cluster runs at a time on a machine (a lock in `/run`).

mod components;
pub mod host;
mod services;
pub mod stack;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client};

pub use services::resolve;

use crate::tools::{repo, script_output};

use crate::control_plane::{self, ControlPlane, Options};

pub const NODE_NAME: &str = "lucid-node";
pub const BRIDGE: &str = "lucid0";
/// The node's address, on the bridge: API server, kubelet, DNS and NodePorts listen here.
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
pub const POD_CIDR: &str = "10.244.0.0/24";
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The `kubernetes` Service's address (first of the range): in-cluster clients dial it.
pub const API_SERVICE_IP: &str = "10.96.0.1";
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// The kubelet's cgroup root: every pod's processes live under it.
pub const CGROUP_ROOT: &str = "lucid-node";
pub const SANDBOX_IMAGE: &str = "docker.io/lucid/pause:harness";
const STATE_ROOT: &str = "/var/lib/lucid-cluster";

pub struct RealCluster {
    pub control_plane: ControlPlane,
    /// The run's state directory (logs of every component are `<name>.log` here).
    pub dir: PathBuf,
    pub containerd_socket: PathBuf,
    /// The images containerd holds, as the kubelet sees them.
    pub images: Vec<String>,
}

static RECORD: Mutex<Option<host::Record>> = Mutex::new(None);

/// The real cluster of this process, started on first use and torn down at exit. A start
/// that failed fails every later caller at once with the same message (it is not retried:
/// the first attempt still holds the machine's lock).
pub fn real_cluster() -> &'static RealCluster {
    static CLUSTER: OnceLock<Result<RealCluster, String>> = OnceLock::new();
    let started = CLUSTER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        // Children die with the thread that spawned them (PDEATHSIG): this one lives as long
        // as the process and also runs the harness's DNS and volume tasks.
        std::thread::Builder::new()
            .name("real-cluster".into())
            .spawn(move || {
                let (cluster, children) = start();
                let client_config = cluster.control_plane.kubeconfig.clone();
                let hosts_dir = cluster.dir.join("dns");
                let volumes_dir = cluster.dir.join("volumes");
                tx.send(cluster).expect("send cluster");
                let _children = children;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    let client = client_for(&client_config).await;
                    futures::join!(
                        services::serve_dns_records(client.clone(), hosts_dir),
                        services::provision_volumes(client, volumes_dir),
                    );
                });
            })
            .expect("spawn cluster thread");
        rx.recv().map_err(|_| {
            format!(
                "the real cluster did not start: see the first panic above and the components' \
                 logs in {}",
                host::LOGS_DIR
            )
        })
    });
    match started {
        Ok(cluster) => cluster,
        Err(message) => panic!("{message}"),
    }
}

async fn client_for(kubeconfig: &Path) -> Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("config");
    Client::try_from(config).expect("client")
}

extern "C" fn teardown_at_exit() {
    let record = RECORD.lock().ok().and_then(|mut r| r.take());
    if let Some(record) = record {
        if std::env::var("LUCID_CLUSTER_KEEP_STATE").is_ok() {
            eprintln!(
                "[real-cluster] left running as asked: {}",
                record.dir.display()
            );
            return;
        }
        host::teardown(&record);
    }
}

/// Tears the cluster down now (the `lucid-cluster` command on Ctrl-C); also runs at exit.
pub fn teardown() {
    teardown_at_exit();
}

fn track(child: &Child) {
    if let Ok(mut record) = RECORD.lock()
        && let Some(record) = record.as_mut()
    {
        record.add_pid(child.id());
    }
}

fn start() -> (RealCluster, Vec<Child>) {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "the real cluster needs root (containerd, the kubelet, iptables)"
    );
    let started = Instant::now();
    host::lock();
    if let Some(previous) = host::Record::load() {
        eprintln!(
            "[real-cluster] cleaning up after an earlier run: {}",
            previous.dir.display()
        );
        host::teardown(&previous);
    }
    host::check_addresses_free();
    // containerd, runc, the CNI plugins, iptables, dnsmasq: installed unless present.
    let installed = Command::new("bash")
        .arg(repo().join("tests/harness/install-node.sh"))
        .status()
        .expect("run install-node.sh");
    assert!(installed.success(), "tests/harness/install-node.sh failed");
    let node_images = node_images();
    let lucid_images = lucid_images();

    let dir = Path::new(STATE_ROOT).join(format!("run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("state dir");
    let record = host::Record::take(&dir);
    record.save();
    *RECORD.lock().expect("record") = Some(record);
    unsafe { libc::atexit(teardown_at_exit) };

    host::network_up();
    host::cgroups_up();
    let mut options = Options::loopback();
    options.address = NODE_IP;
    options.base = dir.clone();
    options.extra_sans = vec![
        format!("IP:{API_SERVICE_IP}"),
        format!("DNS:kubernetes.default.svc.{CLUSTER_DOMAIN}"),
    ];
    options.authorization = "Node,RBAC";
    options.admission = Some("NodeRestriction");
    options.controllers = "deployment,replicaset,garbagecollector,namespace,serviceaccount,\
        serviceaccount-token,endpoint,endpointslice,persistentvolume-binder,pvc-protection,\
        pv-protection,job,nodelifecycle";
    options.users = vec![
        (format!("system:node:{NODE_NAME}"), "system:nodes".into()),
        ("system:kube-proxy".into(), String::new()),
        ("system:kube-scheduler".into(), String::new()),
    ];
    options.kubelets = true;
    options.service_cidr = SERVICE_CIDR;
    let (cp, mut children) = control_plane::start(&options);
    children.iter().for_each(track);

    let (containerd, socket) = components::containerd(&dir);
    track(&containerd);
    children.push(containerd);
    let mut archives = node_images.clone();
    archives.extend(lucid_images);
    components::import_images(&socket, &archives);
    let images = components::images(&socket);

    let dns = components::dnsmasq(&dir, &dir.join("dns"));
    track(&dns);
    children.push(dns);
    for child in [
        components::kube_scheduler(&cp, &dir),
        components::kube_proxy(&cp, &dir),
        components::kubelet(&cp, &dir, &socket, &NODE_IP.to_string()),
    ] {
        track(&child);
        children.push(child);
    }
    let cluster = RealCluster {
        control_plane: cp,
        dir: dir.clone(),
        containerd_socket: socket,
        images,
    };
    wait_node_ready(&cluster);
    eprintln!(
        "[real-cluster] node {NODE_NAME} Ready in {:.1} s (state in {})",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    (cluster, children)
}

fn wait_node_ready(cluster: &RealCluster) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = cluster.client().await;
        let nodes: Api<Node> = Api::all(client);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(node)) = nodes.get_opt(NODE_NAME).await {
                let ready = node
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                if ready {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "node {NODE_NAME} not Ready after 120 s; kubelet log:\n{}",
                    cluster.log_tail("kubelet", 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
}

impl RealCluster {
    pub async fn client(&self) -> Client {
        self.control_plane.client().await
    }

    /// The last `lines` lines of a component's log (`kubelet`, `containerd`, …).
    pub fn log_tail(&self, component: &str, lines: usize) -> String {
        let path = self.dir.join(format!("{component}.log"));
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(lines).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// `kubectl` (1.37, from `tests/harness/install-tools.sh`) as the cluster admin.
    pub fn kubectl(&self) -> Command {
        self.control_plane.kubectl()
    }

    /// Helm 4 as the cluster admin.
    pub fn helm(&self) -> Command {
        self.control_plane.helm()
    }

    /// The host PID of a pod's first container's main process, from containerd's tasks.
    pub fn main_process(&self, pod: &k8s_openapi::api::core::v1::Pod) -> Option<u32> {
        let id = pod
            .status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .first()?
            .container_id
            .clone()?;
        let id = id.trim_start_matches("containerd://").to_string();
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&self.containerd_socket)
            .args(["-n", "k8s.io", "tasks", "ls"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with(&id))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|pid| pid.parse().ok())
    }

    /// A field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, `Uid`, …), whitespace-normalised.
    pub fn proc_status(pid: u32, field: &str) -> Option<String> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    /// The address cluster DNS gives `<service>.<namespace>.svc.cluster.local`.
    pub fn resolve_service(&self, service: &str, namespace: &str) -> Option<Ipv4Addr> {
        resolve(
            NODE_IP,
            &format!("{service}.{namespace}.svc.{CLUSTER_DOMAIN}"),
        )
    }
}

/// The harness's own images (pause, Redis, the MongoDB wire-protocol server).
fn node_images() -> Vec<PathBuf> {
    let dir = script_output(
        "LUCID_NODE_IMAGES",
        &repo().join("tests/harness/build-node-images.sh"),
        &[],
    );
    ["pause", "redis", "mongo-wire"]
        .iter()
        .map(|n| dir.join(format!("{n}.tar")))
        .collect()
}

/// The operator's and the services' multi-arch archives from `images/build.sh` (built for
/// this machine's architecture when `LUCID_IMAGES` does not name a directory of them).
fn lucid_images() -> Vec<PathBuf> {
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    };
    let dir = script_output(
        "LUCID_IMAGES",
        &repo().join("images/build.sh"),
        &[("LUCID_IMAGE_ARCHES", arch)],
    );
    let tag = env!("CARGO_PKG_VERSION");
    [
        "lucid-operator",
        "lucid-session-storage",
        "lucid-session-recorder",
        "lucid-api-gateway",
        "lucid-auth-service",
    ]
    .iter()
    .map(|n| dir.join(format!("{n}-{tag}.tar")))
    .collect()
}
