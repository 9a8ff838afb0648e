//! The node's processes and their configuration: containerd (with runc and the bridge CNI
//! plugin), the kubelet, kube-proxy, kube-scheduler and a DNS server for the cluster.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::{BRIDGE, CGROUP_ROOT, CLUSTER_DOMAIN, NODE_IP, NODE_NAME, POD_CIDR, SANDBOX_IMAGE};
use crate::control_plane::{ControlPlane, free_port, sign, spawn, write_kubeconfig};

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("config dir");
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// containerd with the CRI plugin, everything under `dir`, and runc as the runtime.
pub fn containerd(dir: &Path) -> (Child, PathBuf) {
    let root = dir.join("containerd");
    let socket = root.join("containerd.sock");
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
                "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": dir.join("cni/ipam"),
            },
        }],
    });
    write(
        &dir.join("cni/net.d/10-lucid.conflist"),
        &serde_json::to_string_pretty(&cni).expect("cni"),
    );
    let child = spawn(
        dir,
        "containerd",
        Command::new("containerd")
            .arg("--config")
            .arg(root.join("config.toml")),
    );
    wait_for_path(&socket, "containerd's socket");
    (child, socket)
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
/// swap allowed, low eviction thresholds, the node's IP on the bridge, cluster DNS from the
/// harness, no host resolver in pods, TLS from the harness CA, webhook authorization.
pub fn kubelet(cp: &ControlPlane, dir: &Path, socket: &Path, dns: &str) -> Child {
    let kdir = dir.join("kubelet");
    std::fs::create_dir_all(&kdir).expect("kubelet dir");
    let pki = &cp.dir;
    sign(
        pki,
        "kubelet-serving",
        &format!("/O=system:nodes/CN=system:node:{NODE_NAME}"),
        &format!(
            "subjectAltName=IP:{NODE_IP},DNS:{NODE_NAME}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        ),
    );
    let kubeconfig = kdir.join("kubeconfig");
    write_kubeconfig(
        pki,
        &cp.server,
        &kubeconfig,
        &format!("system:node:{NODE_NAME}-token"),
    );
    // Pods get the cluster DNS and nothing of this machine's resolver.
    write(&kdir.join("resolv.conf"), "");
    let healthz = free_port();
    let config = format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {NODE_IP}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
tlsCertFile: {pki}/kubelet-serving.crt
tlsPrivateKeyFile: {pki}/kubelet-serving.key
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {pki}/ca.crt}}
authorization: {{mode: Webhook}}
cgroupDriver: cgroupfs
cgroupRoot: /{CGROUP_ROOT}
failSwapOn: false
clusterDNS: [{dns}]
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
        resolv = kdir.join("resolv.conf").display(),
    );
    write(&kdir.join("config.yaml"), &config);
    spawn(
        dir,
        "kubelet",
        Command::new(cp.bin_dir.join("kubelet"))
            .arg(format!("--config={}", kdir.join("config.yaml").display()))
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--root-dir={}", kdir.join("root").display()))
            .arg(format!("--cert-dir={}", kdir.join("pki").display()))
            .arg("--container-runtime=remote")
            .arg(format!(
                "--container-runtime-endpoint=unix://{}",
                socket.display()
            ))
            .arg(format!("--node-ip={NODE_IP}"))
            .arg(format!("--hostname-override={NODE_NAME}"))
            .arg("--v=1")
            // The kubelet is built `providerless`; this keeps any AWS SDK code quiet too.
            .env("AWS_EC2_METADATA_DISABLED", "true"),
    )
}

/// kube-proxy in iptables mode; NodePorts only on the bridge address, never on this
/// machine's other interfaces; conntrack sysctls left alone.
pub fn kube_proxy(cp: &ControlPlane, dir: &Path) -> Child {
    let pdir = dir.join("kube-proxy");
    let kubeconfig = pdir.join("kubeconfig");
    std::fs::create_dir_all(&pdir).expect("kube-proxy dir");
    write_kubeconfig(&cp.dir, &cp.server, &kubeconfig, "system:kube-proxy-token");
    let config = format!(
        r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: {kubeconfig}}}
mode: iptables
clusterCIDR: {POD_CIDR}
hostnameOverride: {NODE_NAME}
bindAddress: {NODE_IP}
healthzBindAddress: 127.0.0.1:{healthz}
metricsBindAddress: 127.0.0.1:{metrics}
nodePortAddresses: [{NODE_IP}/32]
conntrack: {{maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}}
"#,
        kubeconfig = kubeconfig.display(),
        healthz = free_port(),
        metrics = free_port(),
    );
    write(&pdir.join("config.yaml"), &config);
    spawn(
        dir,
        "kube-proxy",
        Command::new(cp.bin_dir.join("kube-proxy"))
            .arg(format!("--config={}", pdir.join("config.yaml").display()))
            .arg("--v=1"),
    )
}

pub fn kube_scheduler(cp: &ControlPlane, dir: &Path) -> Child {
    let kubeconfig = dir.join("kube-scheduler.kubeconfig");
    write_kubeconfig(
        &cp.dir,
        &cp.server,
        &kubeconfig,
        "system:kube-scheduler-token",
    );
    spawn(
        dir,
        "kube-scheduler",
        Command::new(cp.bin_dir.join("kube-scheduler"))
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
            .arg("--v=1"),
    )
}

/// dnsmasq on the bridge address: answers `<service>.<namespace>.svc.cluster.local` from
/// the hosts files in `hosts_dir` (re-read when they change), NXDOMAIN for the rest of the
/// cluster domain, and forwards nothing: no name is ever resolved through this machine's
/// resolver.
pub fn dnsmasq(dir: &Path, hosts_dir: &Path) -> Child {
    std::fs::create_dir_all(hosts_dir).expect("hosts dir");
    spawn(
        dir,
        "dnsmasq",
        Command::new("dnsmasq")
            .arg("--keep-in-foreground")
            .arg("--conf-file=/dev/null")
            .arg("--no-resolv")
            .arg("--no-hosts")
            .arg("--no-poll")
            .arg(format!("--listen-address={NODE_IP}"))
            .arg("--bind-interfaces")
            .arg("--except-interface=lo")
            .arg(format!("--hostsdir={}", hosts_dir.display()))
            .arg(format!("--local=/{CLUSTER_DOMAIN}/"))
            .arg("--domain-needed")
            .arg("--bogus-priv")
            .arg("--user=root")
            .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
            .arg("--log-facility=-"),
    )
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
