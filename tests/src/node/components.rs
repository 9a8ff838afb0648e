//! A node's processes and their configuration: containerd (with runc and the bridge CNI
//! plugin), the kubelet, kube-proxy, a DNS server for the cluster, and kube-scheduler. Each
//! is configured once and returned as a [`Launch`]: a node started again (after a fault)
//! runs the same command lines.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::layout::{CLUSTER_POD_CIDR, NodeSpec, SSD_LABEL};
use super::{BRIDGE, CLUSTER_DOMAIN, SANDBOX_IMAGE};
use crate::control_plane::{ControlPlane, free_port, sign, spawn, write_kubeconfig};

/// One of a node's processes, as it is started (and started again).
#[derive(Clone, Debug)]
pub struct Launch {
    /// Its log is `<name>.log` in `log_dir`.
    pub name: String,
    pub log_dir: PathBuf,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Launch {
    fn new(name: &str, log_dir: &Path, program: impl Into<PathBuf>) -> Launch {
        Launch {
            name: name.to_string(),
            log_dir: log_dir.to_path_buf(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    fn arg(mut self, arg: impl Into<String>) -> Launch {
        self.args.push(arg.into());
        self
    }

    /// Started in this machine's namespaces, or (`holder`: the PID of an agent's namespace
    /// holder) in the agent's network and mount namespaces.
    pub fn spawn(&self, holder: Option<u32>) -> Child {
        let mut cmd = match holder {
            Some(pid) => {
                let mut cmd = Command::new("nsenter");
                cmd.arg(format!("--target={pid}"))
                    .args(["--mount", "--net", "--"])
                    .arg(&self.program);
                cmd
            }
            None => Command::new(&self.program),
        };
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        spawn(&self.log_dir, &self.name, &mut cmd)
    }
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("config dir");
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// containerd with the CRI plugin, everything under the node's directory, and runc as the
/// runtime. Its state directory (`containerd/state`) is what a board keeps in `/run`: gone
/// after a power cut.
pub fn containerd(node: &NodeSpec) -> Launch {
    let dir = &node.dir;
    let root = dir.join("containerd");
    let socket = node.containerd_socket();
    let config = format!(
        r#"version = 2
root = "{root}/root"
state = "{root}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{root}/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  # Local, FROM scratch: nothing is pulled from a registry.
  sandbox_image = "{SANDBOX_IMAGE}"
  # root here lacks CAP_SYS_RESOURCE: lowering oom_score_adj below the parent's fails.
  restrict_oom_score_adj = true
  # No AppArmor on this machine.
  disable_apparmor = true
  # Pods' network namespaces under the run's directory, so teardown finds them.
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    # Every image is imported; a pull (an image the node lacks) goes to a closed local port
    # instead of a registry, so it fails here and now, and nothing leaves the machine.
    config_path = "{registries}"
"#,
        root = root.display(),
        socket = socket.display(),
        cni = dir.join("cni/net.d").display(),
        registries = root.join("registries").display(),
    );
    write(&root.join("config.toml"), &config);
    write(
        &root.join("registries/docker.io/hosts.toml"),
        "server = \"http://127.0.0.1:9\"\n",
    );
    // The bridge plugin attaches pods to the node's bridge; host-local hands out addresses,
    // its leases under the run's directory; no masquerading: pod traffic goes nowhere else.
    let cni = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "lucid",
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": node.pod_cidr, "gateway": node.ip}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": dir.join("cni/ipam"),
            },
        }],
    });
    write(
        &dir.join("cni/net.d/10-lucid.conflist"),
        &serde_json::to_string_pretty(&cni).expect("cni"),
    );
    Launch::new("containerd", dir, "containerd")
        .arg("--config")
        .arg(root.join("config.toml").display().to_string())
}

/// Imports OCI archives into the CRI namespace, as `k3s ctr images import` does on a Pi.
pub fn import_images(socket: &Path, archives: &[PathBuf]) {
    for archive in archives {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(socket)
            .args(["-n", "k8s.io", "images", "import"])
            .arg(archive)
            .output()
            .expect("run ctr");
        assert!(
            out.status.success(),
            "ctr images import {}: {}",
            archive.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Image names containerd holds in the CRI namespace.
pub fn images(socket: &Path) -> Vec<String> {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["-n", "k8s.io", "images", "ls", "-q"])
        .output()
        .expect("run ctr");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The kubelet: remote runtime (containerd), cgroupfs under the node's own cgroup root,
/// swap allowed, low eviction thresholds, the node's IP on its bridge, cluster DNS from the
/// harness on the node, no host resolver in pods, TLS from the harness CA, webhook
/// authorization; the SSD label on boards that have one.
pub fn kubelet(cp: &ControlPlane, node: &NodeSpec) -> Launch {
    let dir = &node.dir;
    let name = &node.name;
    let ip = node.ip;
    let kdir = dir.join("kubelet");
    std::fs::create_dir_all(&kdir).expect("kubelet dir");
    let pki = &cp.dir;
    let serving = format!("kubelet-serving-{name}");
    sign(
        pki,
        &serving,
        &format!("/O=system:nodes/CN=system:node:{name}"),
        &format!(
            "subjectAltName=IP:{ip},DNS:{name}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        ),
    );
    let kubeconfig = kdir.join("kubeconfig");
    write_kubeconfig(
        pki,
        &cp.server,
        &kubeconfig,
        &format!("system:node:{name}-token"),
    );
    // Pods get the cluster DNS and nothing of this machine's resolver.
    write(&kdir.join("resolv.conf"), "");
    let healthz = free_port();
    let config = format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {ip}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
tlsCertFile: {pki}/{serving}.crt
tlsPrivateKeyFile: {pki}/{serving}.key
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {pki}/ca.crt}}
authorization: {{mode: Webhook}}
cgroupDriver: cgroupfs
cgroupRoot: /{cgroup_root}
failSwapOn: false
clusterDNS: [{ip}]
clusterDomain: {CLUSTER_DOMAIN}
resolvConf: {resolv}
evictionHard: {{memory.available: "100Mi", nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%"}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
volumePluginDir: {kdir}/volume-plugins
"#,
        pki = pki.display(),
        kdir = kdir.display(),
        cgroup_root = node.cgroup_root,
        resolv = kdir.join("resolv.conf").display(),
    );
    write(&kdir.join("config.yaml"), &config);
    let mut launch = Launch::new("kubelet", dir, cp.bin_dir.join("kubelet"))
        .arg(format!("--config={}", kdir.join("config.yaml").display()))
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--root-dir={}", kdir.join("root").display()))
        .arg(format!("--cert-dir={}", kdir.join("pki").display()))
        .arg("--container-runtime=remote")
        .arg(format!(
            "--container-runtime-endpoint=unix://{}",
            node.containerd_socket().display()
        ))
        .arg(format!("--node-ip={ip}"))
        .arg(format!("--hostname-override={name}"))
        .arg("--v=1");
    if node.ssd {
        launch = launch.arg(format!("--node-labels={SSD_LABEL}=true"));
    }
    // The kubelet is built `providerless`; this keeps any AWS SDK code quiet too.
    launch
        .env
        .push(("AWS_EC2_METADATA_DISABLED".into(), "true".into()));
    launch
}

/// kube-proxy in iptables mode, in the node's network namespace; NodePorts only on the
/// node's address, never on this machine's other interfaces; conntrack sysctls left alone.
pub fn kube_proxy(cp: &ControlPlane, node: &NodeSpec) -> Launch {
    let pdir = node.dir.join("kube-proxy");
    let kubeconfig = pdir.join("kubeconfig");
    std::fs::create_dir_all(&pdir).expect("kube-proxy dir");
    write_kubeconfig(&cp.dir, &cp.server, &kubeconfig, "system:kube-proxy-token");
    // Traffic from any node's pods is the cluster's (not masqueraded).
    let cluster_cidr = if node.multi {
        CLUSTER_POD_CIDR
    } else {
        node.pod_cidr.as_str()
    };
    let config = format!(
        r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: {kubeconfig}}}
mode: iptables
clusterCIDR: {cluster_cidr}
hostnameOverride: {name}
bindAddress: {ip}
healthzBindAddress: 127.0.0.1:{healthz}
metricsBindAddress: 127.0.0.1:{metrics}
nodePortAddresses: [{ip}/32]
conntrack: {{maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}}
"#,
        kubeconfig = kubeconfig.display(),
        name = node.name,
        ip = node.ip,
        healthz = free_port(),
        metrics = free_port(),
    );
    write(&pdir.join("config.yaml"), &config);
    Launch::new("kube-proxy", &node.dir, cp.bin_dir.join("kube-proxy"))
        .arg(format!("--config={}", pdir.join("config.yaml").display()))
        .arg("--v=1")
}

pub fn kube_scheduler(cp: &ControlPlane, dir: &Path) -> Launch {
    let kubeconfig = dir.join("kube-scheduler.kubeconfig");
    write_kubeconfig(
        &cp.dir,
        &cp.server,
        &kubeconfig,
        "system:kube-scheduler-token",
    );
    Launch::new("kube-scheduler", dir, cp.bin_dir.join("kube-scheduler"))
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!(
            "--authentication-kubeconfig={}",
            kubeconfig.display()
        ))
        .arg(format!(
            "--authorization-kubeconfig={}",
            kubeconfig.display()
        ))
        .arg("--leader-elect=false")
        .arg("--port=0")
        .arg("--secure-port=0")
        .arg("--v=1")
}

/// dnsmasq on the node's address (each node answers its own pods): answers
/// `<service>.<namespace>.svc.cluster.local` from the hosts files in `hosts_dir` (shared by
/// every node, re-read when they change), NXDOMAIN for the rest of the cluster domain, and
/// forwards nothing: no name is ever resolved through this machine's resolver.
pub fn dnsmasq(node: &NodeSpec, hosts_dir: &Path) -> Launch {
    std::fs::create_dir_all(hosts_dir).expect("hosts dir");
    Launch::new("dnsmasq", &node.dir, "dnsmasq")
        .arg("--keep-in-foreground")
        .arg("--conf-file=/dev/null")
        .arg("--no-resolv")
        .arg("--no-hosts")
        .arg("--no-poll")
        .arg(format!("--listen-address={}", node.ip))
        .arg("--bind-interfaces")
        .arg("--except-interface=lo")
        .arg(format!("--hostsdir={}", hosts_dir.display()))
        .arg(format!("--local=/{CLUSTER_DOMAIN}/"))
        .arg("--domain-needed")
        .arg("--bogus-priv")
        .arg("--user=root")
        .arg(format!(
            "--pid-file={}",
            node.dir.join("dnsmasq.pid").display()
        ))
        .arg("--log-facility=-")
}

pub fn wait_for_path(path: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{what} did not appear: {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
