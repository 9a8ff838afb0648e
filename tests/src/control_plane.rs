//! etcd + kube-apiserver + kube-controller-manager, from the binaries that
//! `tests/harness/install-control-plane.sh` builds and caches: on loopback with only the
//! garbage collector and namespace controllers for the fast harness ([`control_plane`]), or
//! on the real node's bridge address with the controllers pods need ([`Options::node`]).

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

const TOKEN: &str = "lucid-e2e-admin-token";
/// Users besides the admin, each with its own token, so the audit log can tell who asked.
pub const USERS: &[&str] = &["lucid-operator", "lucid-operator-b", "baseline-kubectl"];

pub struct ControlPlane {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub server: String,
    pub bin_dir: PathBuf,
    /// Process ids of etcd, kube-apiserver and kube-controller-manager.
    pub pids: Vec<u32>,
    /// The same, after restarts (see [`ControlPlane::restart`]).
    live: std::sync::Mutex<Vec<u32>>,
}

/// A control-plane process that [`ControlPlane::restart`] can stop and start.
#[derive(Clone, Copy, Debug)]
pub enum Component {
    Etcd = 0,
    ApiServer = 1,
}

/// How a control plane is started.
pub struct Options {
    /// Where the API server listens and what it advertises (etcd stays on loopback).
    pub address: Ipv4Addr,
    /// More subject alternative names for the serving certificate (`IP:…`, `DNS:…`).
    pub extra_sans: Vec<String>,
    pub authorization: &'static str,
    pub admission: Option<&'static str>,
    pub controllers: &'static str,
    /// Users besides the admin, with their groups: each gets the token `<user>-token`.
    pub users: Vec<(String, String)>,
    /// Issue the API server a client certificate for the kubelets, and reach them by IP.
    pub kubelets: bool,
    pub service_cidr: &'static str,
    /// Parent of the state directory.
    pub base: PathBuf,
}

impl Options {
    /// The fast harness: loopback, every user an admin, no kubelet.
    pub fn loopback() -> Options {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        Options {
            address: Ipv4Addr::LOCALHOST,
            extra_sans: Vec::new(),
            authorization: "RBAC",
            admission: None,
            controllers: "garbagecollector,namespace",
            users: USERS
                .iter()
                .map(|u| (u.to_string(), "system:masters".to_string()))
                .collect(),
            kubelets: false,
            // LUCID_E2E_SERVICE_CIDR: a test binary that needs a tiny range (to fill it).
            service_cidr: match std::env::var("LUCID_E2E_SERVICE_CIDR") {
                Ok(cidr) => Box::leak(cidr.into_boxed_str()),
                Err(_) => "10.96.0.0/16",
            },
            base,
        }
    }
}

/// The control plane of this test binary, started on first use.
pub fn control_plane() -> &'static ControlPlane {
    static CP: OnceLock<ControlPlane> = OnceLock::new();
    CP.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        // Children die with the thread that spawned them (PDEATHSIG), so spawn them from a
        // thread that lives until the process exits.
        std::thread::Builder::new()
            .name("control-plane".into())
            .spawn(move || {
                let options = Options::loopback();
                remove_dead_runs(&options.base);
                let (cp, children) = start(&options);
                *ETCD_DATA.lock().unwrap_or_else(|e| e.into_inner()) = Some(cp.dir.join("etcd"));
                // SAFETY: registers a plain `extern "C" fn` with no captured state.
                unsafe { libc::atexit(remove_etcd_data_at_exit) };
                tx.send(cp).expect("send control plane");
                let _children = children;
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn control plane thread");
        rx.recv().expect("control plane started")
    })
}

/// Every request of this binary's API server audited (metadata only), for
/// [`ControlPlane::requests_by`] and [`ControlPlane::writes_by`]. Call it at the top of
/// every test of a binary that counts requests: whichever test starts the control plane
/// first must have set it.
pub fn audit_on() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: once per process, before this binary's control plane (the only reader)
    // starts on first use.
    ONCE.call_once(|| unsafe { std::env::set_var("LUCID_E2E_AUDIT", "1") });
}

/// This binary's etcd data directory, removed when the process exits.
static ETCD_DATA: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

/// The state lives in /dev/shm, that is in memory: etcd's ~200 MB (preallocated WAL) would
/// otherwise stay for every test binary of a run (24 GB after some hundred runs here, and
/// gigabytes within one CI run). The logs stay for a look after a failure.
extern "C" fn remove_etcd_data_at_exit() {
    if let Some(dir) = ETCD_DATA.lock().ok().and_then(|d| d.clone()) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// State directories of test binaries that are gone (killed, or from before the at-exit
/// removal): `lucid-e2e-<pid>` with no such process.
fn remove_dead_runs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("lucid-e2e-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl ControlPlane {
    /// A kubeconfig for one of [`USERS`].
    pub fn kubeconfig_for(&self, user: &str) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let path = self.dir.join(format!("kubeconfig-{user}"));
        // Written aside and renamed: a test reading it while another rewrites it (two
        // replicas started at once) never reads half a file.
        let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let aside = self.dir.join(format!(".kubeconfig-{user}.{unique}"));
        write_kubeconfig(&self.dir, &self.server, &aside, &format!("{user}-token"));
        std::fs::rename(&aside, &path).expect("kubeconfig");
        path
    }

    /// The audit log; a test that reads it while the API server audits nothing fails here
    /// rather than passing on an empty log.
    fn audit_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("audit.log")).unwrap_or_else(|e| {
            panic!(
                "no audit log ({e}): set LUCID_E2E_AUDIT=1 before this binary's control plane starts (in every test of the binary)"
            )
        })
    }

    /// Requests in the audit log made by `user`, by verb (needs `LUCID_E2E_AUDIT=1`).
    pub fn requests_by(&self, user: &str) -> std::collections::BTreeMap<String, usize> {
        let log = self.audit_log();
        let needle = format!("\"username\":\"{user}\"");
        let field = |line: &str, name: &str| {
            line.split(&format!("\"{name}\":\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("?")
                .to_string()
        };
        // A watch logs two stages (started, complete): count each request once.
        let mut seen = std::collections::HashSet::new();
        let mut out = std::collections::BTreeMap::new();
        for line in log.lines().filter(|l| l.contains(&needle)) {
            if seen.insert(field(line, "auditID")) {
                let resource = line
                    .split("\"resource\":\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or("-");
                let key = if std::env::var("LUCID_BENCH_BY_RESOURCE").is_ok() {
                    format!("{} {resource}", field(line, "verb"))
                } else {
                    field(line, "verb")
                };
                *out.entry(key).or_insert(0) += 1;
            }
        }
        out
    }

    /// Writes (create, update, patch, delete) by `user` in `namespace` from the audit log, as
    /// (time the API server answered, verb, resource), Leases left out (needs
    /// `LUCID_E2E_AUDIT=1`).
    pub fn writes_by(&self, user: &str, namespace: &str) -> Vec<(String, String, String)> {
        let log = self.audit_log();
        let needle = format!("\"username\":\"{user}\"");
        let in_namespace = format!("\"namespace\":\"{namespace}\"");
        let field = |line: &str, name: &str| {
            line.split(&format!("\"{name}\":\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_string()
        };
        log.lines()
            .filter(|l| {
                l.contains(&needle)
                    && l.contains(&in_namespace)
                    && l.contains("\"stage\":\"ResponseComplete\"")
            })
            .map(|l| {
                (
                    field(l, "stageTimestamp"),
                    field(l, "verb"),
                    field(l, "resource"),
                )
            })
            .filter(|(_, verb, resource)| {
                matches!(verb.as_str(), "create" | "update" | "patch" | "delete")
                    && resource != "leases"
            })
            .collect()
    }

    /// kubectl as the cluster admin.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(crate::tools::tool("kubectl", "LUCID_KUBECTL"));
        // Its discovery cache here, not in ~/.kube/cache keyed by host and port: a port an
        // earlier run's API server used must not bring back that server's resources.
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", self.dir.join("kube-cache"));
        cmd
    }

    /// Helm 4 as the cluster admin, its state in this control plane's directory.
    pub fn helm(&self) -> Command {
        let mut cmd = Command::new(crate::tools::tool("helm", "LUCID_HELM"));
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", self.dir.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir.join("helm/config"))
            .env("HELM_DATA_HOME", self.dir.join("helm/data"))
            .env("KUBECACHEDIR", self.dir.join("kube-cache"));
        cmd
    }

    /// A client acting as a ServiceAccount (the admin impersonates it): what a pod running
    /// under that account may do, RBAC included, without a kubelet.
    pub async fn client_as_service_account(&self, namespace: &str, name: &str) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("read kubeconfig");
        let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig");
        config.auth_info.impersonate = Some(format!("system:serviceaccount:{namespace}:{name}"));
        config.auth_info.impersonate_groups = Some(vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".into(),
        ]);
        Client::try_from(config).expect("client")
    }

    /// Kills `which` (SIGKILL, as a power loss would; the API server's graceful shutdown
    /// waits out its watches), leaves it down for `down_for`, and
    /// starts it again with the same command line; returns once an API server answers again.
    /// Blocking: call it from `spawn_blocking`.
    pub fn restart(&self, which: Component, down_for: Duration) {
        let index = which as usize;
        let pid = self.live.lock().unwrap_or_else(|e| e.into_inner())[index];
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        // SAFETY: a plain kill(2) of a process this harness started.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        let gone = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|stat| {
                    stat.rsplit(')')
                        .next()
                        .is_some_and(|r| r.trim_start().starts_with('Z'))
                })
                .unwrap_or(true)
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !gone(pid) {
            assert!(Instant::now() < deadline, "{which:?} did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(down_for);
        let (tx, rx) = std::sync::mpsc::channel();
        let dir = self.dir.clone();
        let name = format!("{which:?}-restarted").to_lowercase();
        // Like the first start: from a thread that lives as long as the process (PDEATHSIG).
        std::thread::spawn(move || {
            let child = spawn(&dir, &name, Command::new(&args[0]).args(&args[1..]));
            tx.send(child.id()).expect("send pid");
            let _child = child;
            loop {
                std::thread::park();
            }
        });
        let new_pid = rx.recv().expect("restarted");
        self.live.lock().unwrap_or_else(|e| e.into_inner())[index] = new_pid;
        wait_ready(&self.kubeconfig, &self.dir);
    }

    /// The PIDs of etcd, the API server and the controller manager as they run now, with
    /// their command lines (for [`ControlPlane::start_again`] after a power cut).
    pub fn running(&self) -> Vec<(u32, Vec<String>)> {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|&pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let args = cmdline
                    .split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                (pid, args)
            })
            .collect()
    }

    /// Starts etcd, the API server and the controller manager again with the command lines
    /// [`ControlPlane::running`] gave (they were killed; etcd's data is on disk), as a
    /// board's boot would; returns once the API server answers. Each from a thread that
    /// lives as long as it does (PDEATHSIG) and reaps it. Blocking.
    pub fn start_again(&self, command_lines: &[Vec<String>]) -> Vec<u32> {
        let mut pids = Vec::new();
        for (index, args) in command_lines.iter().enumerate() {
            assert!(!args.is_empty(), "no command line for component {index}");
            let (tx, rx) = std::sync::mpsc::channel();
            let dir = self.dir.clone();
            let name = Path::new(&args[0])
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let args = args.clone();
            std::thread::spawn(move || {
                let mut child = spawn(&dir, &name, Command::new(&args[0]).args(&args[1..]));
                let _ = tx.send(child.id());
                let _ = child.wait();
            });
            let pid = rx.recv().expect("started again");
            self.live.lock().unwrap_or_else(|e| e.into_inner())[index] = pid;
            pids.push(pid);
            // The controller manager after the API server answers, as at the first start.
            if index == Component::ApiServer as usize {
                wait_ready(&self.kubeconfig, &self.dir);
            }
        }
        pids
    }

    pub async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("read kubeconfig");
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig");
        Client::try_from(config).expect("client")
    }
}

/// A loopback port nothing listens on, chosen below the kernel's ephemeral range: a port
/// from the ephemeral range (what binding port 0 gives) can be taken by any outgoing
/// connection of a test running beside this one before the server meant for it binds it,
/// and the server then exits with "address in use". One counter per test process keeps
/// its tests apart; the bind check skips ports other processes hold.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOWEST: u32 = 10_000;
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|&p| p > LOWEST + 1_000)
        .unwrap_or(32_768);
    let span = ephemeral_start - LOWEST;
    // Processes started one after another begin in different places.
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOWEST + (start + n) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port below {ephemeral_start}")
}

/// Directory with kube-apiserver and kube-controller-manager: `$LUCID_K8S_BIN`, or what the
/// install script prints (it builds once, then answers from its cache).
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("LUCID_K8S_BIN") {
        return PathBuf::from(dir);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("harness/install-control-plane.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .expect("run install-control-plane.sh");
    assert!(out.status.success(), "install-control-plane.sh failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("install script prints the bin dir")
            .trim(),
    )
}

pub(crate) fn run(cmd: &mut Command) {
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run command");
    assert!(status.success(), "{cmd:?} failed");
}

pub(crate) fn spawn(dir: &Path, name: &str, cmd: &mut Command) -> Child {
    // Appended to: a component started again (a node's boot after a power cut) keeps what
    // its first life logged.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .expect("log file");
    let err = log.try_clone().expect("log file");
    unsafe {
        // The control plane must not outlive the test binary.
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.stdout(log)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"))
}

/// Starts etcd, the API server and the controller manager; the caller keeps the children.
pub fn start(options: &Options) -> (ControlPlane, Vec<Child>) {
    let bin_dir = bin_dir();
    let dir = options
        .base
        .join(format!("lucid-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("state dir");
    let address = options.address;
    let mut sans = vec![
        format!("IP:{address}"),
        "IP:127.0.0.1".to_string(),
        "DNS:localhost".to_string(),
        "DNS:kubernetes.default.svc".to_string(),
    ];
    sans.extend(options.extra_sans.iter().cloned());
    make_certs(&dir, &sans, options.kubelets);

    let (etcd_port, etcd_peer, api_port) = (free_port(), free_port(), free_port());
    let etcd = spawn(
        &dir,
        "etcd",
        Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.join("etcd"))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{etcd_port}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"
            ))
            .arg(format!(
                "--initial-cluster=default=http://127.0.0.1:{etcd_peer}"
            ))
            .arg("--log-level=warn"),
    );
    let f = |name: &str| dir.join(name).display().to_string();
    let mut tokens = format!("{TOKEN},lucid-admin,lucid-admin,\"system:masters\"\n");
    for (user, groups) in &options.users {
        match groups.as_str() {
            "" => tokens.push_str(&format!("{user}-token,{user},{user}\n")),
            groups => tokens.push_str(&format!("{user}-token,{user},{user},\"{groups}\"\n")),
        }
    }
    std::fs::write(dir.join("tokens.csv"), tokens).expect("token file");
    // LUCID_E2E_AUDIT=1 records every request (metadata only), to count them per user.
    let mut extra_args = Vec::new();
    if std::env::var("LUCID_E2E_AUDIT").is_ok_and(|v| v == "1") {
        std::fs::write(
            dir.join("audit-policy.yaml"),
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n",
        )
        .expect("audit policy");
        extra_args.push(format!("--audit-policy-file={}", f("audit-policy.yaml")));
        extra_args.push(format!("--audit-log-path={}", f("audit.log")));
    }
    if let Some(admission) = options.admission {
        extra_args.push(format!("--enable-admission-plugins={admission}"));
    }
    if options.kubelets {
        extra_args.push(format!(
            "--kubelet-client-certificate={}",
            f("kubelet-client.crt")
        ));
        extra_args.push(format!("--kubelet-client-key={}", f("kubelet-client.key")));
        // Reach kubelets by the node's IP: never resolve a node name through the machine's
        // resolver.
        extra_args.push("--kubelet-preferred-address-types=InternalIP".to_string());
    }
    let apiserver = spawn(
        &dir,
        "kube-apiserver",
        Command::new(bin_dir.join("kube-apiserver"))
            .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_port}"))
            .arg(format!("--bind-address={address}"))
            .arg(format!("--advertise-address={address}"))
            .arg(format!("--secure-port={api_port}"))
            .arg("--insecure-port=0")
            .arg(format!("--tls-cert-file={}", f("server.crt")))
            .arg(format!("--tls-private-key-file={}", f("server.key")))
            .arg(format!("--client-ca-file={}", f("ca.crt")))
            .arg(format!("--token-auth-file={}", f("tokens.csv")))
            .arg(format!("--authorization-mode={}", options.authorization))
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!("--service-account-key-file={}", f("sa.pub")))
            .arg(format!(
                "--service-account-signing-key-file={}",
                f("sa.key")
            ))
            .arg(format!(
                "--service-cluster-ip-range={}",
                options.service_cidr
            ))
            .arg(format!("--cert-dir={}", f("certs")))
            .arg("--enable-priority-and-fairness=false")
            .args(&extra_args)
            .arg("--v=1"),
    );
    let server = format!("https://{address}:{api_port}");
    let kubeconfig = dir.join("kubeconfig");
    write_kubeconfig(&dir, &server, &kubeconfig, TOKEN);
    wait_ready(&kubeconfig, &dir);
    let controller_manager = spawn(
        &dir,
        "kube-controller-manager",
        Command::new(bin_dir.join("kube-controller-manager"))
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!(
                "--authentication-kubeconfig={}",
                kubeconfig.display()
            ))
            .arg(format!(
                "--authorization-kubeconfig={}",
                kubeconfig.display()
            ))
            .arg(format!("--controllers={}", options.controllers))
            // Signs service account token Secrets (the serviceaccount-token controller) and
            // puts the CA beside them, so pods can reach the API server.
            .arg(format!(
                "--service-account-private-key-file={}",
                f("sa.key")
            ))
            .arg(format!("--root-ca-file={}", f("ca.crt")))
            .arg("--leader-elect=false")
            // As k3s/config/server.yaml sets it: a board silent for 20 s is marked lost
            // (Kubernetes' default is 40 s). Only the real cluster runs the node controller.
            .arg("--node-monitor-grace-period=20s")
            .arg("--port=0")
            .arg("--secure-port=0")
            .arg("--v=1"),
    );
    let pids = vec![etcd.id(), apiserver.id(), controller_manager.id()];
    (
        ControlPlane {
            dir,
            kubeconfig,
            server,
            bin_dir,
            live: std::sync::Mutex::new(pids.clone()),
            pids,
        },
        vec![etcd, apiserver, controller_manager],
    )
}

fn make_certs(dir: &Path, sans: &[String], kubelet_client: bool) {
    let openssl = |args: &[&str]| run(Command::new("openssl").args(args).current_dir(dir));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "3",
        "-subj",
        "/CN=lucid-e2e-ca",
    ]);
    sign(
        dir,
        "server",
        "/CN=kube-apiserver",
        &format!(
            "subjectAltName={}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
            sans.join(",")
        ),
    );
    if kubelet_client {
        // How the API server proves itself to kubelets (logs, exec): an admin client cert.
        sign(
            dir,
            "kubelet-client",
            "/O=system:masters/CN=kube-apiserver-kubelet-client",
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
        );
    }
    openssl(&["genrsa", "-out", "sa.key", "2048"]);
    openssl(&["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
}

/// A key and a certificate `<name>.{key,crt}` signed by the harness CA in `dir`.
pub(crate) fn sign(dir: &Path, name: &str, subject: &str, extensions: &str) {
    let openssl = |args: &[&str]| run(Command::new("openssl").args(args).current_dir(dir));
    let (key, csr, crt, ext) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}.ext"),
    );
    openssl(&[
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subject,
    ]);
    std::fs::write(dir.join(&ext), extensions).expect("ext file");
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        &crt,
        "-days",
        "3",
        "-extfile",
        &ext,
    ]);
}

pub(crate) fn write_kubeconfig(dir: &Path, server: &str, path: &Path, token: &str) {
    let ca = std::fs::read(dir.join("ca.crt")).expect("ca.crt");
    let ca_b64 = base64(&ca);
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: lucid-e2e\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca_b64}\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: lucid-e2e\n  context:\n    cluster: lucid-e2e\n    user: admin\ncurrent-context: lucid-e2e\n"
    );
    std::fs::write(path, yaml).expect("write kubeconfig");
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Waits until the API server answers and has created the default namespace.
fn wait_ready(kubeconfig: &Path, dir: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let deadline = Instant::now() + Duration::from_secs(90);
    rt.block_on(async {
        loop {
            let attempt = async {
                let kc = Kubeconfig::read_from(kubeconfig).ok()?;
                let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                    .await
                    .ok()?;
                let client = Client::try_from(config).ok()?;
                Api::<Namespace>::all(client).get("default").await.ok()
            };
            if attempt.await.is_some() {
                return;
            }
            if Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(dir.join("kube-apiserver.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                panic!(
                    "kube-apiserver not ready after 90 s; last log lines:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
}
