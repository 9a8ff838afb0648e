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
mod faults;
pub mod host;
pub mod layout;
mod services;
pub mod stack;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client};

pub use layout::{NodeSpec, SSD_LABEL};
pub use services::resolve;

use crate::tools::{repo, script_output};

use crate::control_plane::{self, ControlPlane, Options};
use components::Launch;

/// The server's name (the only node's, by default).
pub const NODE_NAME: &str = "lucid-node";
pub const BRIDGE: &str = "lucid0";
/// The server's address, on its bridge: API server, kubelet, DNS and NodePorts listen here.
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
/// The server's pod range (node `i`'s is `10.244.i.0/24`).
pub const POD_CIDR: &str = "10.244.0.0/24";
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The `kubernetes` Service's address (first of the range): in-cluster clients dial it.
pub const API_SERVICE_IP: &str = "10.96.0.1";
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// The server kubelet's cgroup root (node `i`'s is `lucid-node-i`): every pod's processes
/// live under its node's.
pub const CGROUP_ROOT: &str = "lucid-node";
pub const SANDBOX_IMAGE: &str = "docker.io/lucid/pause:harness";
const STATE_ROOT: &str = "/var/lib/lucid-cluster";

pub struct RealCluster {
    pub control_plane: ControlPlane,
    /// The run's state directory (logs of every component are `<name>.log` here; an
    /// agent's are in its own directory, `<dir>/<node>/`).
    pub dir: PathBuf,
    /// The server's containerd.
    pub containerd_socket: PathBuf,
    /// The images containerd holds, as the kubelet sees them.
    pub images: Vec<String>,
    /// The server first, then the agents.
    pub nodes: Vec<NodeSpec>,
    /// What runs, for stopping and starting nodes (see [`faults`]).
    running: Mutex<Running>,
}

/// The processes of the cluster as they run now, and how to start each again.
struct Running {
    nodes: Vec<NodeProcesses>,
    scheduler: Launch,
    scheduler_pid: u32,
    /// The control plane's command lines, kept by a power cut for the boot after it.
    control_plane_lines: Option<Vec<Vec<String>>>,
}

struct NodeProcesses {
    /// containerd first: the others need its socket.
    launches: Vec<Launch>,
    pids: Vec<u32>,
    /// The agent's namespace holder (its mount namespace lives as long as it does).
    holder: Option<u32>,
}

static RECORD: Mutex<Option<host::Record>> = Mutex::new(None);

/// The real single-node cluster of this process, started on first use and torn down at exit.
pub fn real_cluster() -> &'static RealCluster {
    real_cluster_of(1)
}

/// The real cluster of this process with `nodes` nodes (a server and `nodes - 1` agents),
/// started on first use and torn down at exit: one per process, so every caller in a
/// process asks for the same size. A start that failed fails every later caller at once
/// with the same message (it is not retried: the first attempt still holds the machine's
/// lock).
pub fn real_cluster_of(nodes: usize) -> &'static RealCluster {
    static CLUSTER: OnceLock<(usize, Result<RealCluster, String>)> = OnceLock::new();
    let (size, started) = CLUSTER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        // Children die with the thread that spawned them (PDEATHSIG): this one lives as long
        // as the process and also runs the harness's DNS and volume tasks.
        std::thread::Builder::new()
            .name("real-cluster".into())
            .spawn(move || {
                let (cluster, children) = start(nodes);
                let client_config = cluster.control_plane.kubeconfig.clone();
                let hosts_dir = cluster.dir.join("dns");
                let volumes = services::Volumes {
                    dir: cluster.dir.join("volumes"),
                    server: NODE_NAME.to_string(),
                    pinned: cluster.nodes.len() > 1,
                };
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
                        services::provision_volumes(client, volumes),
                    );
                });
            })
            .expect("spawn cluster thread");
        let started = rx.recv().map_err(|_| {
            format!(
                "the real cluster did not start: see the first panic above and the components' \
                 logs in {}",
                host::LOGS_DIR
            )
        });
        (nodes, started)
    });
    assert_eq!(
        *size, nodes,
        "this process's real cluster has {size} node(s); a test asked for {nodes}"
    );
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

fn track(pid: u32) {
    if let Ok(mut record) = RECORD.lock()
        && let Some(record) = record.as_mut()
    {
        record.add_pid(pid);
    }
}

/// Starts `launch` from a thread of its own that waits for it (PDEATHSIG ties a child to
/// the thread that spawned it: this one lives exactly as long as the child, and reaps it),
/// and records its PID for teardown.
fn keep(launch: &Launch, holder: Option<u32>) -> u32 {
    let (tx, rx) = std::sync::mpsc::channel();
    let launch = launch.clone();
    std::thread::Builder::new()
        .name(format!("keep-{}", launch.name))
        .spawn(move || {
            let mut child = launch.spawn(holder);
            let _ = tx.send(child.id());
            let _ = child.wait();
        })
        .expect("spawn a keeper thread");
    let pid = rx.recv().expect("the launch's PID");
    track(pid);
    pid
}

/// An agent's board: a process holding a mount namespace of its own, in the agent's
/// network namespace, where `/var/log/pods` and `/var/log/containers` are the agent's
/// directories (every kubelet writes there whatever its root directory). Mounts made in it
/// (pods' volumes, root filesystems, network namespace handles) stay in it and go with it.
/// Its components enter it with `nsenter`.
fn start_holder(node: &NodeSpec) -> u32 {
    let netns = node.netns.as_deref().expect("an agent");
    let pods = node.dir.join("log/pods");
    let containers = node.dir.join("log/containers");
    for d in [&pods, &containers] {
        std::fs::create_dir_all(d).expect("agent log dir");
    }
    let mut launch = Launch {
        name: "holder".into(),
        log_dir: node.dir.clone(),
        program: "nsenter".into(),
        args: vec![
            format!("--net=/run/netns/{netns}"),
            "--".into(),
            "unshare".into(),
            "--mount".into(),
            "--propagation=slave".into(),
            "--".into(),
            "sh".into(),
            "-c".into(),
            "mount --bind \"$1\" /var/log/pods && mount --bind \"$2\" /var/log/containers \
             && exec sleep infinity"
                .into(),
            "lucid-node-holder".into(),
        ],
        env: Vec::new(),
    };
    launch.args.push(pods.display().to_string());
    launch.args.push(containers.display().to_string());
    let pid = keep(&launch, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
        if mounts
            .lines()
            .any(|l| l.split_whitespace().nth(4) == Some("/var/log/containers"))
        {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "{}'s namespace holder did not come up: {}",
            node.name,
            std::fs::read_to_string(node.dir.join("holder.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts a node's processes (its board booting): the holder of an agent's mount
/// namespace, containerd, then its DNS, kube-proxy and kubelet.
fn boot_node(node: &NodeSpec, launches: &[Launch]) -> NodeProcesses {
    let holder = node.netns.as_ref().map(|_| start_holder(node));
    let mut pids = Vec::new();
    let (containerd, rest) = launches.split_first().expect("containerd's launch");
    pids.push(keep(containerd, holder));
    components::wait_for_path(&node.containerd_socket(), "containerd's socket");
    for launch in rest {
        pids.push(keep(launch, holder));
    }
    NodeProcesses {
        launches: launches.to_vec(),
        pids,
        holder,
    }
}

fn start(count: usize) -> (RealCluster, Vec<Child>) {
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
    let dir = Path::new(STATE_ROOT).join(format!("run-{}", std::process::id()));
    let nodes = layout::nodes(count, &dir);
    host::check_addresses_free(&nodes);
    // containerd, runc, the CNI plugins, iptables, dnsmasq: installed unless present.
    let installed = Command::new("bash")
        .arg(repo().join("tests/harness/install-node.sh"))
        .status()
        .expect("run install-node.sh");
    assert!(installed.success(), "tests/harness/install-node.sh failed");
    let node_images = node_images();
    let lucid_images = lucid_images();

    std::fs::create_dir_all(&dir).expect("state dir");
    let record = host::Record::take(&dir, &nodes);
    record.save();
    *RECORD.lock().expect("record") = Some(record);
    unsafe { libc::atexit(teardown_at_exit) };

    host::network_up(&nodes);
    for node in &nodes {
        host::cgroups_up(&node.cgroup_root);
        std::fs::create_dir_all(&node.dir).expect("node dir");
    }
    // The mount points of the agents' own log directories.
    for log_dir in ["/var/log/pods", "/var/log/containers"] {
        std::fs::create_dir_all(log_dir).expect("log dir");
    }
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
        pv-protection,job,nodelifecycle,disruption";
    options.users = nodes
        .iter()
        .map(|n| {
            (
                format!("system:node:{}", n.name),
                "system:nodes".to_string(),
            )
        })
        .collect();
    options.users.extend([
        ("system:kube-proxy".into(), String::new()),
        ("system:kube-scheduler".into(), String::new()),
    ]);
    options.kubelets = true;
    options.service_cidr = SERVICE_CIDR;
    let (cp, children) = control_plane::start(&options);
    children.iter().for_each(|c| track(c.id()));

    let mut archives = node_images.clone();
    archives.extend(lucid_images);
    let hosts_dir = dir.join("dns");
    let launches: Vec<Vec<Launch>> = nodes
        .iter()
        .map(|node| {
            vec![
                components::containerd(node),
                components::dnsmasq(node, &hosts_dir),
                components::kube_proxy(&cp, node),
                components::kubelet(&cp, node),
            ]
        })
        .collect();
    // Every board imports the images itself, as `k3s ctr images import` on an air-gapped
    // Pi; the boards boot side by side.
    let processes: Vec<NodeProcesses> = std::thread::scope(|scope| {
        let booting: Vec<_> = nodes
            .iter()
            .zip(&launches)
            .map(|(node, launches)| {
                let archives = &archives;
                scope.spawn(move || {
                    let holder = node.netns.as_ref().map(|_| start_holder(node));
                    let containerd = keep(&launches[0], holder);
                    components::wait_for_path(&node.containerd_socket(), "containerd's socket");
                    components::import_images(&node.containerd_socket(), archives);
                    let mut pids = vec![containerd];
                    pids.extend(launches[1..].iter().map(|l| keep(l, holder)));
                    NodeProcesses {
                        launches: launches.clone(),
                        pids,
                        holder,
                    }
                })
            })
            .collect();
        booting
            .into_iter()
            .map(|b| b.join().expect("a node's start"))
            .collect()
    });
    let images = components::images(&nodes[0].containerd_socket());
    let scheduler = components::kube_scheduler(&cp, &dir);
    let scheduler_pid = keep(&scheduler, None);
    let cluster = RealCluster {
        control_plane: cp,
        dir: dir.clone(),
        containerd_socket: nodes[0].containerd_socket(),
        images,
        nodes,
        running: Mutex::new(Running {
            nodes: processes,
            scheduler,
            scheduler_pid,
            control_plane_lines: None,
        }),
    };
    cluster.wait_nodes_ready(Duration::from_secs(120));
    if cluster.nodes.len() > 1 {
        // The stack's storage class, as k3s applies it from its manifests directory.
        let out = cluster
            .kubectl()
            .args(["apply", "-f"])
            .arg(repo().join("k3s/manifests/lucid-ssd.yaml"))
            .output()
            .expect("kubectl");
        assert!(
            out.status.success(),
            "kubectl apply k3s/manifests/lucid-ssd.yaml: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let names: Vec<&str> = cluster.nodes.iter().map(|n| n.name.as_str()).collect();
    eprintln!(
        "[real-cluster] node(s) {} Ready in {:.1} s (state in {})",
        names.join(", "),
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    (cluster, children)
}

impl RealCluster {
    pub async fn client(&self) -> Client {
        self.control_plane.client().await
    }

    /// Waits until every node reports Ready (blocking: call it from `spawn_blocking` in a
    /// test); panics with the kubelet's log of the first that is not.
    pub fn wait_nodes_ready(&self, within: Duration) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let client = self.client().await;
            let api: Api<Node> = Api::all(client);
            let deadline = Instant::now() + within;
            loop {
                let mut waiting = None;
                for node in &self.nodes {
                    let ready = api
                        .get_opt(&node.name)
                        .await
                        .ok()
                        .flatten()
                        .is_some_and(|n| node_ready(&n));
                    if !ready {
                        waiting = Some(node);
                        break;
                    }
                }
                let Some(node) = waiting else { return };
                if Instant::now() > deadline {
                    panic!(
                        "node {} not Ready after {} s; kubelet log:\n{}",
                        node.name,
                        within.as_secs(),
                        self.node_log_tail(&node.name, "kubelet", 40)
                    );
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }

    /// The cluster's own processes as they run now, as (what, PID): the control plane, the
    /// scheduler, and each node's components (an agent's containerd shims and namespace
    /// holder included); not the pods'.
    pub fn processes(&self) -> Vec<(String, u32)> {
        let mut out: Vec<(String, u32)> = self
            .control_plane
            .running()
            .into_iter()
            .map(|(pid, args)| {
                let name = args
                    .first()
                    .and_then(|a| Path::new(a).file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (format!("control plane: {name}"), pid)
            })
            .collect();
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        out.push((
            "control plane: kube-scheduler".into(),
            running.scheduler_pid,
        ));
        for (node, processes) in self.nodes.iter().zip(&running.nodes) {
            for (launch, pid) in processes.launches.iter().zip(&processes.pids) {
                out.push((format!("{}: {}", node.name, launch.name), *pid));
            }
            let mut shims: Vec<i32> = host::shims_of(&node.containerd_socket());
            if let Some(netns) = &node.netns {
                shims.extend(host::netns_pids(netns));
            }
            shims.sort_unstable();
            shims.dedup();
            for pid in shims {
                let pid = pid as u32;
                if !out.iter().any(|(_, p)| *p == pid) {
                    out.push((format!("{}: shim or holder", node.name), pid));
                }
            }
        }
        out
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> &NodeSpec {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name} in this cluster"))
    }

    /// The last `lines` lines of a node's component's log (`kubelet`, `containerd`, …).
    pub fn node_log_tail(&self, node: &str, component: &str, lines: usize) -> String {
        let path = self.node(node).dir.join(format!("{component}.log"));
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(lines).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
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

    /// The host PID of a pod's first container's main process, from its node's containerd.
    pub fn main_process(&self, pod: &k8s_openapi::api::core::v1::Pod) -> Option<u32> {
        let socket = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .and_then(|name| self.nodes.iter().find(|n| n.name == name))
            .map(NodeSpec::containerd_socket)
            .unwrap_or_else(|| self.containerd_socket.clone());
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
            .arg(&socket)
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

    /// The same, asked of the DNS server of node `node` (what its pods ask).
    pub fn resolve_service_on(
        &self,
        node: &str,
        service: &str,
        namespace: &str,
    ) -> Option<Ipv4Addr> {
        resolve(
            self.node(node).ip,
            &format!("{service}.{namespace}.svc.{CLUSTER_DOMAIN}"),
        )
    }
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
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
