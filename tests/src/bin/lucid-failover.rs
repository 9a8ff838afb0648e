//! Failover time, measured: two replicas with the chart's election timing (15 s lease, 10 s
//! renew deadline, 2 s retry) on the real API server; the leader is killed (its runtime
//! dropped, as SIGKILL: no Lease released), a change is applied at once, and the clock stops
//! at the new leader's first write (the changed Deployment applied). Ten runs, then a
//! clean stop (SIGTERM: the Lease released) for comparison.
//!
//! `cargo run -p lucid-e2e --bin lucid-failover` (the time is the lease's, not the CPU's).

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use lucid_e2e::replica::Running;
use lucid_e2e::{
    Kubelet, apply_yaml, control_plane, create_namespace, install_crds, is_ready, wait_for,
};
use lucid_operator::api::{LucidPhase, LucidService};
use lucid_operator::leader::ElectionConfig;

const RUNS: usize = 10;

fn election(namespace: &str, identity: &str) -> ElectionConfig {
    ElectionConfig::new(namespace.into(), "lucid-operator".into(), identity.into())
}

fn service(level: &str) -> String {
    format!(
        "apiVersion: lucid.io/v1alpha1\nkind: LucidService\nmetadata: {{name: probe}}\nspec:\n  image: {{repository: lucid/probe, tag: \"1\"}}\n  phase: lab\n  ports: [{{name: http, port: 8080}}]\n  env: [{{name: LEVEL, value: \"{level}\"}}]\n"
    )
}

/// Kills (or stops) the leader, applies a change, returns the time to the new leader's write.
async fn once(admin: &kube::Client, run: usize, clean: bool) -> Duration {
    let ns = format!("failover-{run}");
    create_namespace(admin, &ns).await;
    let kubelet = Kubelet::start(admin.clone(), &ns, Duration::from_millis(50));
    let a = Running::start(&ns, "lucid-operator", Some(election(&ns, "a")));
    while !a.leadership.is_leader() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = Running::start(&ns, "lucid-operator-b", Some(election(&ns, "b")));
    apply_yaml::<LucidPhase>(
        admin,
        &ns,
        "apiVersion: lucid.io/v1alpha1\nkind: LucidPhase\nmetadata: {name: lab}\nspec: {}\n",
    )
    .await
    .expect("phase");
    apply_yaml::<LucidService>(admin, &ns, &service("0"))
        .await
        .expect("service");
    let services: Api<LucidService> = Api::namespaced(admin.clone(), &ns);
    wait_for(&services, "probe", "Ready", is_ready).await;
    // b has seen a renewal before the leader goes (as in a cluster that has been running).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
    let generation = deployments
        .get("probe")
        .await
        .expect("deployment")
        .metadata
        .generation;

    let started = Instant::now();
    if clean {
        a.stop().await;
    } else {
        a.kill();
    }
    apply_yaml::<LucidService>(admin, &ns, &service("1"))
        .await
        .expect("change");
    loop {
        let now = deployments.get("probe").await.expect("deployment");
        if now.metadata.generation != generation {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failover = started.elapsed();
    b.stop().await;
    kubelet.stop();
    failover
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let admin = control_plane().client().await;
    install_crds(&admin).await;
    let mut killed = Vec::new();
    for run in 0..RUNS {
        let t = once(&admin, run, false).await;
        eprintln!("run {run}: leader killed -> new leader's first write {t:?}");
        killed.push(t);
    }
    let clean = once(&admin, RUNS, true).await;
    killed.sort();
    let ms = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    println!("| failover (15 s lease, 10 s renew deadline, 2 s retry) | p50 | p99 | min | max |");
    println!("|---|---|---|---|---|");
    println!(
        "| leader killed -> new leader's first write, {RUNS} runs | {} | {} | {} | {} |",
        ms(percentile(&killed, 50.0)),
        ms(percentile(&killed, 99.0)),
        ms(killed[0]),
        ms(killed[RUNS - 1])
    );
    println!(
        "| leader stopped cleanly (Lease released) -> new leader's first write, 1 run | {} | | | |",
        ms(clean)
    );
}
