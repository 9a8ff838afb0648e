//! `lucid-cluster`: a real Kubernetes cluster on this machine (kubelet, containerd, runc),
//! one node or, with `--nodes 3`, a server and two agents each in its own network and mount
//! namespace; the operator installed into it by Helm from its image, and the session
//! pipeline rolled out as LucidServices in real pods. Prints what runs and where; with
//! `--keep`, stays up for `kubectl` until Ctrl-C. Everything it changed on the machine is
//! undone when it exits. Needs root.
//!
//!   cargo run -p lucid-e2e --bin lucid-cluster [-- [--nodes N] [--keep]]
//!   cargo run -p lucid-e2e --bin lucid-cluster -- --bench
//!
//! `--bench` measures one node beside three in one run (each in a child process of its own,
//! one after the other): seconds to every node Ready and to the pipeline Ready, and the
//! memory (VmRSS) of the cluster's own processes and of the pods' main processes once the
//! pipeline is Ready; a Markdown table for BENCHMARKS.md on stdout.

use std::process::Command;
use std::time::{Duration, Instant};

use kube::Api;
use lucid_e2e::node::stack::{PIPELINE, create_namespace, install_operator, pipeline_documents};
use lucid_e2e::node::{self, real_cluster_of};
use lucid_e2e::{apply_documents, is_ready};
use lucid_operator::api::LucidService;

const NAMESPACE: &str = "lucid";

fn show(mut cmd: Command) {
    if let Ok(out) = cmd.output() {
        print!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
    }
}

#[tokio::main]
async fn main() {
    // Ctrl-C or SIGTERM at any point tears the node down (an exit does too).
    tokio::spawn(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        eprintln!("tearing down");
        node::teardown();
        std::process::exit(130);
    });
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--bench") {
        bench();
        return;
    }
    let keep = args.iter().any(|a| a == "--keep");
    let measure = args.iter().any(|a| a == "--measure");
    let nodes = match args.iter().position(|a| a == "--nodes") {
        Some(i) => match args.get(i + 1).and_then(|n| n.parse::<usize>().ok()) {
            Some(n) if (1..=9).contains(&n) => n,
            _ => {
                eprintln!("--nodes takes a number from 1 to 9");
                std::process::exit(2);
            }
        },
        None => 1,
    };
    let started = Instant::now();
    let cluster = real_cluster_of(nodes);
    let nodes_ready = started.elapsed().as_secs_f64();
    println!(
        "{nodes} node(s) Ready after {:.1} s; installing the operator with helm",
        started.elapsed().as_secs_f64()
    );
    install_operator(cluster);
    let client = cluster.client().await;
    create_namespace(&client, NAMESPACE).await;
    apply_documents(&client, NAMESPACE, &pipeline_documents()).await;
    println!(
        "operator Ready after {:.1} s; session pipeline applied to namespace {NAMESPACE}",
        started.elapsed().as_secs_f64()
    );

    let services: Api<LucidService> = Api::namespaced(client.clone(), NAMESPACE);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let list = services.list(&Default::default()).await.expect("list");
        let ready = list.items.iter().filter(|ls| is_ready(ls)).count();
        if ready == PIPELINE.len() {
            break;
        }
        if Instant::now() > deadline {
            eprintln!("not every service turned Ready in 5 minutes");
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let pipeline_ready = started.elapsed().as_secs_f64();
    println!("\n--- {pipeline_ready:.1} s after start ---\n");
    let mut get = cluster.kubectl();
    get.args(["get", "nodes", "-o", "wide", "-L", node::SSD_LABEL]);
    show(get);
    println!();
    let mut get = cluster.kubectl();
    get.args(["get", "pods", "-A", "-o", "wide"]);
    show(get);
    println!();
    let mut get = cluster.kubectl();
    get.args(["get", "-n", NAMESPACE, "lucidphases,lucidservices"]);
    show(get);

    // What each pod's main process holds in memory, as the kernel counts it.
    println!("\nmemory of each pod's main process (VmRSS now / VmHWM peak):");
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::all(client.clone());
    let mut pods = pods.list(&Default::default()).await.expect("pods").items;
    pods.sort_by_key(|p| p.metadata.name.clone());
    for pod in &pods {
        if let Some(pid) = cluster.main_process(pod) {
            println!(
                "  {:<36} {:>10} / {:>10}",
                pod.metadata.name.as_deref().unwrap_or_default(),
                node::RealCluster::proc_status(pid, "VmRSS").unwrap_or_default(),
                node::RealCluster::proc_status(pid, "VmHWM").unwrap_or_default()
            );
        }
    }

    if measure {
        let rss = |pid: u32| {
            node::RealCluster::proc_status(pid, "VmRSS")
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let components: u64 = cluster.processes().iter().map(|(_, pid)| rss(*pid)).sum();
        let pods_rss: u64 = pods
            .iter()
            .filter_map(|p| cluster.main_process(p))
            .map(rss)
            .sum();
        println!(
            "MEASURE {}",
            serde_json::json!({
                "nodes": nodes,
                "nodes_ready_s": nodes_ready,
                "pipeline_ready_s": pipeline_ready,
                "cluster_rss_mib": components as f64 / 1024.0,
                "pods_rss_mib": pods_rss as f64 / 1024.0,
            })
        );
    }

    if keep {
        println!(
            "\nThe cluster stays up until Ctrl-C:\n  export KUBECONFIG={}\n  {} get pods -n {NAMESPACE}",
            cluster.control_plane.kubeconfig.display(),
            cluster.kubectl().get_program().to_string_lossy()
        );
        std::future::pending::<()>().await;
    }
    println!("tearing down");
    node::teardown();
}

/// One node and three, each brought up by a child process of this binary with `--measure`,
/// one after the other (one real cluster at a time), and the table of what they cost.
fn bench() {
    let exe = std::env::current_exe().expect("this binary");
    let mut rows = Vec::new();
    for nodes in [1, 3] {
        let out = Command::new(&exe)
            .args(["--nodes", &nodes.to_string(), "--measure"])
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run lucid-cluster --measure");
        let text = String::from_utf8_lossy(&out.stdout);
        let Some(line) = text.lines().find_map(|l| l.strip_prefix("MEASURE ")) else {
            eprintln!("{nodes} node(s): no measurement\n{text}");
            std::process::exit(1);
        };
        let m: serde_json::Value = serde_json::from_str(line).expect("a measurement");
        rows.push(format!(
            "| {nodes} | {:.1} | {:.1} | {:.0} | {:.0} |",
            m["nodes_ready_s"].as_f64().unwrap_or(0.0),
            m["pipeline_ready_s"].as_f64().unwrap_or(0.0),
            m["cluster_rss_mib"].as_f64().unwrap_or(0.0),
            m["pods_rss_mib"].as_f64().unwrap_or(0.0),
        ));
    }
    println!(
        "| nodes | all nodes Ready (s) | operator + pipeline Ready (s) | cluster processes RSS (MiB) | pods' main processes RSS (MiB) |"
    );
    println!("|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}
