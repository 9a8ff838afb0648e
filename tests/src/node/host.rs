//! What the real node changes on this machine, recorded before it changes it, and undone
//! after: sysctls, the bridge, iptables chains, cgroups, mounts, pod logs, and the processes
//! it started (by PID). The record is a file, so a run killed outright is cleaned up by the
//! next one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{BRIDGE, CGROUP_ROOT, NODE_IP, POD_CIDR};

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
}

impl Record {
    pub fn take(dir: &Path) -> Record {
        let mut record = Record {
            dir: dir.to_path_buf(),
            containerd_socket: dir.join("containerd/containerd.sock"),
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
/// machine, and nothing from outside reaches a pod.
pub fn network_up() {
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
            BRIDGE,
            "!",
            "-o",
            BRIDGE,
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
            BRIDGE,
            "!",
            "-i",
            BRIDGE,
            "-j",
            "DROP",
            "-m",
            "comment",
            "--comment",
            "lucid test node: nothing forwarded reaches pods",
        ],
    );
    must("iptables", &["-I", "FORWARD", "1", "-j", ISOLATION_CHAIN]);
}

/// A route of this machine that overlaps the pod network would make the test cluster
/// unreachable or, worse, send pod traffic elsewhere: refuse to start.
pub fn check_addresses_free() {
    let routes = sh("ip", &["-4", "route", "show"]).unwrap_or_default();
    let prefix = POD_CIDR
        .rsplit_once('.')
        .map(|(p, _)| p)
        .unwrap_or(POD_CIDR);
    for line in routes.lines() {
        assert!(
            line.contains(BRIDGE) || !line.starts_with(prefix),
            "this machine already routes {POD_CIDR} ({line}); the test node needs it"
        );
    }
}

/// The kubelet's cgroup root in every v1 hierarchy (it refuses a root that does not exist);
/// everything the node runs goes under it, so teardown knows what to kill and remove.
pub fn cgroups_up() {
    for hierarchy in hierarchies() {
        let dir = hierarchy.join(CGROUP_ROOT);
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

/// Every process in the node's cgroups (pods' sandboxes and containers).
fn cgroup_pids() -> Vec<i32> {
    let mut pids = Vec::new();
    for hierarchy in hierarchies() {
        let root = hierarchy.join(CGROUP_ROOT);
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

fn alive(pid: i32) -> bool {
    unsafe { libc::kill(pid, 0) == 0 }
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
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
    // 2. Pods' processes, then the shims containerd left (they outlive it by design).
    kill_and_wait(&cgroup_pids());
    let socket = record.containerd_socket.to_string_lossy().into_owned();
    let shims: Vec<i32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
                .filter(|&p| {
                    let cmd = cmdline(p);
                    cmd.contains("containerd-shim") && cmd.contains(&socket)
                })
                .collect()
        })
        .unwrap_or_default();
    kill_and_wait(&shims);
    // 3. Mounts under the run's directory (volumes, network namespaces, rootfs), deepest
    //    first, lazily so a straggler cannot block the rest.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut ours: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|m| Path::new(m).starts_with(&record.dir))
        .map(str::to_string)
        .collect();
    ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for mount in ours {
        if let Ok(c) = std::ffi::CString::new(mount) {
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
    // 4. cgroups, deepest first (empty now).
    for hierarchy in hierarchies() {
        remove_cgroup_tree(&hierarchy.join(CGROUP_ROOT));
    }
    // 5. Network: the bridge (veths went with the pods' namespaces) and the chains.
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
                stack.push(path); // the control plane's directory, one level down
            } else if kind.is_file() && path.extension().is_some_and(|e| e == "log") {
                let _ = std::fs::copy(&path, Path::new(LOGS_DIR).join(entry.file_name()));
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
