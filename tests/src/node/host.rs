//! What the real nodes change on this machine, recorded before it changes it, and undone
//! after: sysctls, the bridges, the agents' network namespaces (their veths, routes and
//! iptables go with them), iptables chains, cgroups, mounts, pod logs, and the processes it
//! started (by PID, and every process in an agent's namespace). The record is a file, so a
//! run killed outright is cleaned up by the next one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::layout::{LAN_BRIDGE, NodeSpec};
use super::{BRIDGE, CGROUP_ROOT, NODE_IP};

/// Where the record of one run lives, and the lock that makes runs take turns.
pub const RUN_DIR: &str = "/run/lucid-cluster";

/// Sysctls the kubelet, kube-proxy or the harness set; restored on teardown.
const SYSCTLS: &[&str] = &[
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/route_localnet",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
];

/// Log directories the kubelet writes to whatever its root directory.
const LOG_DIRS: &[&str] = &["/var/log/pods", "/var/log/containers"];

const IPTABLES: &[&str] = &["iptables", "ip6tables"];
const TABLES: &[&str] = &["filter", "nat", "mangle"];
/// Chains of kube-proxy and the kubelet (KUBE-), the bridge plugin (CNI-) and the harness.
const CHAIN_PREFIXES: &[&str] = &["KUBE-", "CNI-", "LUCID-"];
/// The harness's own chain: forwarded traffic never leaves the bridge.
const ISOLATION_CHAIN: &str = "LUCID-NODE-ISOLATION";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Record {
    /// The run's state directory (containerd, kubelet, etcd, CNI, volumes).
    pub dir: PathBuf,
    pub containerd_socket: PathBuf,
    /// Processes started, in the order to stop them.
    pub pids: Vec<u32>,
    sysctls: BTreeMap<String, String>,
    /// iptables chains that existed before (never touched), per binary and table.
    chains_before: BTreeMap<String, Vec<String>>,
    logs_before: BTreeMap<String, Vec<String>>,
    /// Log directories that did not exist before (removed whole on teardown).
    #[serde(default)]
    logs_created: Vec<String>,
    /// The agents' network namespaces (`ip netns` names): everything in them is the run's.
    #[serde(default)]
    pub netns: Vec<String>,
    /// Links on this machine's side (the LAN bridge between the nodes).
    #[serde(default)]
    links: Vec<String>,
    /// Every node's cgroup root (the server's, `CGROUP_ROOT`, is always one).
    #[serde(default)]
    cgroup_roots: Vec<String>,
    /// The agents' containerd sockets (their shims outlive them).
    #[serde(default)]
    containerd_sockets: Vec<PathBuf>,
}

impl Record {
    pub fn take(dir: &Path, nodes: &[NodeSpec]) -> Record {
        let mut record = Record {
            dir: dir.to_path_buf(),
            containerd_socket: dir.join("containerd/containerd.sock"),
            netns: nodes.iter().filter_map(|n| n.netns.clone()).collect(),
            links: if nodes.len() > 1 {
                vec![LAN_BRIDGE.to_string()]
            } else {
                Vec::new()
            },
            cgroup_roots: nodes.iter().map(|n| n.cgroup_root.clone()).collect(),
            containerd_sockets: nodes.iter().map(NodeSpec::containerd_socket).collect(),
            ..Default::default()
        };
        for name in SYSCTLS {
            if let Ok(value) = std::fs::read_to_string(Path::new("/proc/sys").join(name)) {
                record
                    .sysctls
                    .insert(name.to_string(), value.trim().to_string());
            }
        }
        for bin in IPTABLES {
            for table in TABLES {
                record
                    .chains_before
                    .insert(format!("{bin} {table}"), chains(bin, table));
            }
        }
        for dir in LOG_DIRS {
            if Path::new(dir).exists() {
                record.logs_before.insert(dir.to_string(), entries(dir));
            } else {
                record.logs_created.push(dir.to_string());
            }
        }
        record
    }

    pub fn save(&self) {
        std::fs::create_dir_all(RUN_DIR).expect("run dir");
        let text = serde_json::to_string_pretty(self).expect("record");
        std::fs::write(Path::new(RUN_DIR).join("record.json"), text).expect("write record");
    }

    pub fn load() -> Option<Record> {
        let text = std::fs::read_to_string(Path::new(RUN_DIR).join("record.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn add_pid(&mut self, pid: u32) {
        self.pids.push(pid);
        self.save();
    }
}

/// Holds the machine-wide lock for the life of the process: one real cluster at a time.
pub fn lock() {
    std::fs::create_dir_all(RUN_DIR).expect("run dir");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(Path::new(RUN_DIR).join("lock"))
        .expect("lock file");
    use std::os::fd::IntoRawFd;
    let fd = file.into_raw_fd(); // kept open until the process exits
    let locked = unsafe { libc::flock(fd, libc::LOCK_EX) };
    assert_eq!(locked, 0, "lock {RUN_DIR}/lock");
}

fn sh(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn must(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn chains(bin: &str, table: &str) -> Vec<String> {
    sh(&format!("{bin}-save"), &["-t", table])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn entries(dir: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn write_sysctl(name: &str, value: &str) {
    let _ = std::fs::write(Path::new("/proc/sys").join(name), value);
}

/// The bridge pods attach to (the node's address is on it), forwarding on, bridged traffic
/// through iptables (Services between pods on one bridge), and a chain that drops anything
/// forwarded between the bridge and any other interface: nothing a pod sends leaves this
/// machine, and nothing from outside reaches a pod. With several nodes the LAN bridge joins
/// the agents, and the chain lets traffic pass only among the harness's own interfaces
/// (`lucid+`: the pod bridge and the LAN).
pub fn network_up(nodes: &[NodeSpec]) {
    let multi = nodes.len() > 1;
    let ours = if multi { "lucid+" } else { BRIDGE };
    if Path::new("/sys/class/net").join(BRIDGE).exists() {
        must("ip", &["link", "del", BRIDGE]);
    }
    must("ip", &["link", "add", BRIDGE, "type", "bridge"]);
    must(
        "ip",
        &["addr", "add", &format!("{NODE_IP}/24"), "dev", BRIDGE],
    );
    must("ip", &["link", "set", BRIDGE, "up"]);
    write_sysctl("net/ipv4/ip_forward", "1");
    if !Path::new("/proc/sys/net/bridge").exists() {
        let _ = Command::new("modprobe").arg("br_netfilter").status();
    }
    write_sysctl("net/bridge/bridge-nf-call-iptables", "1");
    let _ = sh("iptables", &["-N", ISOLATION_CHAIN]);
    must(
        "iptables",
        &[
            "-A",
            ISOLATION_CHAIN,
            "-i",
            ours,
            "!",
            "-o",
            ours,
            "-j",
            "DROP",
            "-m",
            "comment",
            "--comment",
            "lucid test node: pods reach nothing beyond the bridge",
        ],
    );
    must(
        "iptables",
        &[
            "-A",
            ISOLATION_CHAIN,
            "-o",
            ours,
            "!",
            "-i",
            ours,
            "-j",
            "DROP",
            "-m",
            "comment",
            "--comment",
            "lucid test node: nothing forwarded reaches pods",
        ],
    );
    must("iptables", &["-I", "FORWARD", "1", "-j", ISOLATION_CHAIN]);
    if !multi {
        return;
    }
    if Path::new("/sys/class/net").join(LAN_BRIDGE).exists() {
        must("ip", &["link", "del", LAN_BRIDGE]);
    }
    must("ip", &["link", "add", LAN_BRIDGE, "type", "bridge"]);
    let server_lan = NodeSpec::lan_ip_of(0);
    must(
        "ip",
        &[
            "addr",
            "add",
            &format!("{server_lan}/24"),
            "dev",
            LAN_BRIDGE,
        ],
    );
    must("ip", &["link", "set", LAN_BRIDGE, "up"]);
    for agent in nodes.iter().filter(|n| n.netns.is_some()) {
        agent_network_up(agent, nodes);
    }
}

/// `ip` inside an agent's network namespace.
fn must_in(netns: &str, args: &[&str]) {
    let mut all = vec!["netns", "exec", netns];
    all.extend(args);
    must("ip", &all);
}

/// An agent's board: its network namespace, a veth whose far end (`eth0`, the board's
/// Ethernet) has its LAN address and whose near end is on the LAN bridge, its pod bridge
/// with the node's address, forwarding on, and a route to every other node's pod range via
/// that node's LAN address (flannel host-gw). No default route: nothing it sends can leave
/// the node network.
fn agent_network_up(agent: &NodeSpec, nodes: &[NodeSpec]) {
    let netns = agent.netns.as_deref().expect("an agent");
    let lan_ip = agent.lan_ip.expect("an agent's LAN address");
    if Path::new("/run/netns").join(netns).exists() {
        must("ip", &["netns", "del", netns]);
    }
    must("ip", &["netns", "add", netns]);
    let host_end = agent.host_veth();
    let board_end = format!("lucid-e{}", agent.index);
    if Path::new("/sys/class/net").join(&host_end).exists() {
        must("ip", &["link", "del", &host_end]);
    }
    must(
        "ip",
        &[
            "link", "add", &host_end, "type", "veth", "peer", "name", &board_end,
        ],
    );
    must("ip", &["link", "set", &board_end, "netns", netns]);
    must(
        "ip",
        &["link", "set", &host_end, "master", LAN_BRIDGE, "up"],
    );
    must_in(netns, &["ip", "link", "set", "lo", "up"]);
    must_in(netns, &["ip", "link", "set", &board_end, "name", "eth0"]);
    must_in(
        netns,
        &["ip", "addr", "add", &format!("{lan_ip}/24"), "dev", "eth0"],
    );
    must_in(netns, &["ip", "link", "set", "eth0", "up"]);
    must_in(netns, &["ip", "link", "add", BRIDGE, "type", "bridge"]);
    must_in(
        netns,
        &[
            "ip",
            "addr",
            "add",
            &format!("{}/24", agent.ip),
            "dev",
            BRIDGE,
        ],
    );
    must_in(netns, &["ip", "link", "set", BRIDGE, "up"]);
    for (name, value) in [
        ("net.ipv4.ip_forward", "1"),
        ("net.bridge.bridge-nf-call-iptables", "1"),
    ] {
        must_in(netns, &["sysctl", "-qw", &format!("{name}={value}")]);
    }
    for (cidr, via) in agent_routes(agent, nodes) {
        must_in(netns, &["ip", "route", "add", &cidr, "via", &via]);
    }
    must(
        "ip",
        &["route", "add", &agent.pod_cidr, "via", &lan_ip.to_string()],
    );
}

/// An agent's board loses (`false`) or regains its link to the LAN: a board without power
/// answers nothing, not even on its address.
pub fn agent_link(agent: &NodeSpec, nodes: &[NodeSpec], up: bool) {
    if let Some(netns) = agent.netns.as_deref() {
        let state = if up { "up" } else { "down" };
        must_in(netns, &["ip", "link", "set", "eth0", state]);
        if up {
            // Taking the link down dropped the routes through it.
            for (cidr, via) in agent_routes(agent, nodes) {
                let _ = sh(
                    "ip",
                    &[
                        "netns", "exec", netns, "ip", "route", "replace", &cidr, "via", &via,
                    ],
                );
            }
        }
    }
}

/// An agent's routes: every other node's pod range via that node's LAN address (flannel
/// host-gw), and the Service range via the server. What the node itself sends to a
/// ClusterIP needs a route for kube-proxy's DNAT to apply (pods' traffic arrives from their
/// bridge and needs none).
fn agent_routes(agent: &NodeSpec, nodes: &[NodeSpec]) -> Vec<(String, String)> {
    let mut routes: Vec<(String, String)> = nodes
        .iter()
        .filter(|n| n.index != agent.index)
        .map(|n| (n.pod_cidr.clone(), NodeSpec::lan_ip_of(n.index).to_string()))
        .collect();
    routes.push((
        super::SERVICE_CIDR.to_string(),
        NodeSpec::lan_ip_of(0).to_string(),
    ));
    routes
}

/// Every process in an agent's network namespace: its containerd, kubelet, kube-proxy, DNS,
/// the containerd shims and the namespace holder (pods have namespaces of their own).
pub fn netns_pids(netns: &str) -> Vec<i32> {
    sh("ip", &["netns", "pids", netns])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Kills `pids` with SIGKILL, all at once, and waits until they are gone.
pub fn kill_all(pids: &[i32]) {
    kill_and_wait(pids);
}

/// A route of this machine that overlaps the pod network (or, with several nodes, the LAN
/// between them) would make the test cluster unreachable or, worse, send pod traffic
/// elsewhere: refuse to start.
pub fn check_addresses_free(nodes: &[NodeSpec]) {
    let routes = sh("ip", &["-4", "route", "show"]).unwrap_or_default();
    let mut prefixes: Vec<String> = nodes
        .iter()
        .map(|n| {
            n.pod_cidr
                .rsplit_once('.')
                .map(|(p, _)| format!("{p}."))
                .unwrap_or_default()
        })
        .collect();
    if nodes.len() > 1 {
        prefixes.push("10.245.0.".into());
    }
    for line in routes.lines() {
        let ours = line.contains(BRIDGE) || line.contains(LAN_BRIDGE);
        for prefix in &prefixes {
            assert!(
                ours || !line.starts_with(prefix.as_str()),
                "this machine already routes {prefix}0 ({line}); the test cluster needs it"
            );
        }
    }
}

/// Each kubelet's cgroup root in every v1 hierarchy (it refuses a root that does not
/// exist); everything a node runs goes under its root, so teardown knows what to kill and
/// remove, and a node's fault knows which processes are its pods'.
pub fn cgroups_up(root: &str) {
    for hierarchy in hierarchies() {
        let dir = hierarchy.join(root);
        let _ = std::fs::create_dir_all(&dir);
        if hierarchy.ends_with("cpuset") {
            for file in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(v) = std::fs::read_to_string(hierarchy.join(file)) {
                    let _ = std::fs::write(dir.join(file), v.trim());
                }
            }
        }
    }
}

fn hierarchies() -> Vec<PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.join("cgroup.procs").exists())
                .collect()
        })
        .unwrap_or_default()
}

/// Every process in a node's cgroups (pods' sandboxes and containers).
pub fn cgroup_pids(root: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for hierarchy in hierarchies() {
        let root = hierarchy.join(root);
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
            if let Ok(d) = std::fs::read_dir(&dir) {
                stack.extend(d.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
            }
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

pub fn alive(pid: i32) -> bool {
    unsafe { libc::kill(pid, 0) == 0 }
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// The containerd shims of the containerd on `socket` (they outlive it by design).
pub fn shims_of(socket: &Path) -> Vec<i32> {
    let socket = socket.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
                .filter(|&p| {
                    let cmd = cmdline(p);
                    cmd.contains("containerd-shim") && cmd.contains(&socket)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn kill_and_wait(pids: &[i32]) {
    for &pid in pids {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|&p| alive(p) && !zombie(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Undoes everything in `record`, whatever state the run left. Best effort throughout: a
/// teardown that stops at the first failure would leave the rest behind.
pub fn teardown(record: &Record) {
    keep_logs(&record.dir);
    // 1. The processes the run started, kubelet first so it restarts nothing; only while
    //    they are still ours (a PID reused since would not name the run's directory or
    //    binaries).
    let ours: Vec<i32> = record
        .pids
        .iter()
        .map(|&p| p as i32)
        .filter(|&p| alive(p))
        .filter(|&p| {
            let cmd = cmdline(p);
            cmd.contains(&*record.dir.to_string_lossy())
                || ["kube", "etcd", "containerd", "dnsmasq"]
                    .iter()
                    .any(|b| cmd.contains(b))
        })
        .collect();
    kill_and_wait(&ours);
    // Everything left in the agents' namespaces is theirs (shims, namespace holders).
    for netns in &record.netns {
        kill_and_wait(&netns_pids(netns));
    }
    // 2. Pods' processes, then the shims containerd left (they outlive it by design).
    let mut roots = record.cgroup_roots.clone();
    if !roots.iter().any(|r| r == CGROUP_ROOT) {
        roots.push(CGROUP_ROOT.to_string());
    }
    for root in &roots {
        kill_and_wait(&cgroup_pids(root));
    }
    let mut sockets = record.containerd_sockets.clone();
    sockets.push(record.containerd_socket.clone());
    for socket in &sockets {
        kill_and_wait(&shims_of(socket));
    }
    // 3. Mounts under the run's directory (volumes, network namespaces, rootfs), deepest
    //    first, lazily so a straggler cannot block the rest.
    unmount_under(&record.dir);
    // 4. cgroups, deepest first (empty now).
    for hierarchy in hierarchies() {
        for root in &roots {
            remove_cgroup_tree(&hierarchy.join(root));
        }
    }
    // 5. Network: the agents' namespaces (their veths, bridges, routes and iptables go with
    //    them), the bridges (pods' veths went with the pods' namespaces), the chains.
    for netns in &record.netns {
        let _ = sh("ip", &["netns", "del", netns]);
    }
    for link in &record.links {
        let _ = sh("ip", &["link", "del", link]);
    }
    let _ = sh("ip", &["link", "del", BRIDGE]);
    for bin in IPTABLES {
        for table in TABLES {
            let before = record
                .chains_before
                .get(&format!("{bin} {table}"))
                .cloned()
                .unwrap_or_default();
            remove_chains(bin, table, &before);
        }
    }
    // 6. Pod logs the kubelet wrote outside the run's directory (kept for a post-mortem).
    let _ = Command::new("cp")
        .args(["-r", "/var/log/pods"])
        .arg(Path::new(LOGS_DIR).join("pods"))
        .status();
    for (dir, before) in &record.logs_before {
        for entry in entries(dir) {
            if !before.contains(&entry) {
                let path = Path::new(dir).join(&entry);
                let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
            }
        }
    }
    for dir in &record.logs_created {
        let _ = std::fs::remove_dir_all(dir);
    }
    // 7. Sysctls, last: forwarding stays on until nothing forwards any more.
    for (name, value) in &record.sysctls {
        write_sysctl(name, value);
    }
    let _ = Command::new("rm")
        .args(["-rf", "--one-file-system"])
        .arg(&record.dir)
        .status();
    let _ = std::fs::remove_file(Path::new(RUN_DIR).join("record.json"));
}

/// Unmounts everything mounted under `dir` in this mount namespace, deepest first, lazily
/// so a straggler cannot block the rest.
pub fn unmount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut ours: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|m| Path::new(m).starts_with(dir))
        .map(str::to_string)
        .collect();
    ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for mount in ours {
        if let Ok(c) = std::ffi::CString::new(mount) {
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// The components' logs of the last run, kept for a post-mortem: `LOGS_DIR`.
pub const LOGS_DIR: &str = "/var/log/lucid-cluster/last";

fn keep_logs(dir: &Path) {
    let _ = std::fs::remove_dir_all(LOGS_DIR);
    let _ = std::fs::create_dir_all(LOGS_DIR);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() && path.parent() == Some(dir) {
                // The control plane's directory and the agents', one level down.
                stack.push(path);
            } else if kind.is_file() && path.extension().is_some_and(|e| e == "log") {
                // An agent's logs are named after it (`lucid-node-1-kubelet.log`).
                let agent = d
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(super::NODE_NAME));
                let name = match agent {
                    Some(agent) => format!("{agent}-{}", entry.file_name().to_string_lossy()),
                    None => entry.file_name().to_string_lossy().into_owned(),
                };
                let _ = std::fs::copy(&path, Path::new(LOGS_DIR).join(name));
            }
        }
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(d) = std::fs::read_dir(dir) {
        for child in d.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
            remove_cgroup_tree(&child);
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Deletes the chains made since `before` whose names are ours or Kubernetes', with every
/// rule that jumps to them.
fn remove_chains(bin: &str, table: &str, before: &[String]) {
    let made: Vec<String> = chains(bin, table)
        .into_iter()
        .filter(|c| CHAIN_PREFIXES.iter().any(|p| c.starts_with(p)))
        .filter(|c| !before.contains(c))
        .collect();
    if made.is_empty() {
        return;
    }
    let rules = sh(&format!("{bin}-save"), &["-t", table]).unwrap_or_default();
    for rule in rules.lines().filter(|l| l.starts_with("-A ")) {
        let jumps_to_ours = made
            .iter()
            .any(|c| rule.contains(&format!("-j {c}")) || rule.contains(&format!("-g {c}")));
        let in_ours = made.iter().any(|c| rule.starts_with(&format!("-A {c} ")));
        if jumps_to_ours && !in_ours {
            let spec = shell_words(&rule[3..]);
            let mut args = vec!["-t".to_string(), table.to_string(), "-D".to_string()];
            args.extend(spec);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let _ = sh(bin, &args);
        }
    }
    for chain in &made {
        let _ = sh(bin, &["-t", table, "-F", chain]);
    }
    for chain in &made {
        let _ = sh(bin, &["-t", table, "-X", chain]);
    }
}

/// Splits an iptables-save rule into arguments (double-quoted comments stay whole).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    #[test]
    fn iptables_save_rules_split_like_a_shell() {
        assert_eq!(
            super::shell_words(
                r#"FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD"#
            ),
            [
                "FORWARD",
                "-m",
                "comment",
                "--comment",
                "kubernetes forwarding rules",
                "-j",
                "KUBE-FORWARD"
            ]
        );
    }
}
