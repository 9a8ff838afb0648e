//! `lucid-upgrade-bench`: how fast a failed update is undone, on the real single-node cluster
//! (real pods under a real kubelet, the operator installed by Helm from its image).
//!
//! For each failure kind, five rounds of: a good change (waited Ready), then a failing one.
//! Measured from the bench's own observations (polled every 50 ms, so ±50 ms):
//! - detect: the failing change applied → `status.rollback` names its generation;
//! - restore: that → the old revision Ready again (`Ready=False RolledBack`, `Available`).
//!
//! Kinds: a tag the node lacks on a `Recreate` database (its old pod was already stopped), a
//! crash-looping argument on the same (`Recreate`), and a crash-looping configuration on a
//! `RollingUpdate` service (the old pod never stopped). The databases' updates are protected
//! (a backup Job before the new revision starts, a restore before the old one starts again).
//!
//! Then the cost of that protection: a good update of a Redis whose data directory holds
//! 256 MiB (written into its volume on this machine), with and without the backup, five
//! rounds each in the same run: applied → Ready at the new generation. Needs root.
//!
//!   cargo run --release -p lucid-e2e --bin lucid-upgrade-bench

use std::time::{Duration, Instant};

use kube::{Api, Client};
use lucid_e2e::apply_documents;
use lucid_e2e::node::real_cluster;
use lucid_e2e::node::stack::{
    AUTH_PUBLIC_KEYS, JWT_KEY, create_namespace, for_this_node, install_operator,
};
use lucid_operator::api::LucidService;

const ROUNDS: usize = 5;
const LIMIT: Duration = Duration::from_secs(240);

fn redis(round: usize, tag: &str, extra_arg: &str) -> String {
    redis_with(round, tag, extra_arg, "")
}

/// A Redis LucidService; `extra` is appended to its spec (before `for_this_node`
/// re-serialises it).
fn redis_with(round: usize, tag: &str, extra_arg: &str, extra: &str) -> String {
    for_this_node(&format!(
        r#"
apiVersion: lucid.io/v1alpha1
kind: LucidService
metadata: {{name: db}}
spec:
  image: {{repository: lucid/redis, tag: {tag}, pullPolicy: Never}}
  phase: foundation
  ports: [{{name: redis, port: 6379}}]
  args: [--port, "6379", --bind, 0.0.0.0, --dir, /app/data, --protected-mode, "no"{extra_arg}]
  healthCheck: {{kind: Tcp, intervalSeconds: 2, startPeriodSeconds: 0}}
  env: [{{name: ROUND, value: "{round}"}}]
{extra}
"#
    ))
}

fn gateway(round: usize, key: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: gateway-keys}}\ndata: {{JWT_SECRET_KEY: {key}, AUTH_PUBLIC_KEYS: '{AUTH_PUBLIC_KEYS}'}}\n---\n{}",
        for_this_node(&format!(
            r#"
apiVersion: lucid.io/v1alpha1
kind: LucidService
metadata: {{name: gateway}}
spec:
  image: {{repository: lucid/lucid-api-gateway, tag: 0.1.0, pullPolicy: Never}}
  phase: foundation
  ports: [{{name: http, port: 8080}}]
  storage: {{data: {{kind: EmptyDir}}, logs: {{kind: EmptyDir}}}}
  healthCheck: {{intervalSeconds: 2, startPeriodSeconds: 0}}
  envFrom: [{{configMapRef: {{name: gateway-keys}}}}]
  env: [{{name: ROUND, value: "{round}"}}]
"#
        ))
    )
}

async fn poll<F: Fn(&LucidService) -> bool>(
    api: &Api<LucidService>,
    name: &str,
    what: &str,
    cond: F,
) -> Instant {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Ok(ls) = api.get(name).await
            && cond(&ls)
        {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "{name}: {what} not seen in {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn condition(ls: &LucidService, type_: &str) -> Option<(String, String)> {
    ls.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

fn current(ls: &LucidService) -> bool {
    ls.status.as_ref().and_then(|s| s.observed_generation) == ls.metadata.generation
}

/// One kind: `good(round)` and `bad(round)` give the documents of a round.
async fn kind(
    client: &Client,
    ns: &str,
    name: &str,
    good: impl Fn(usize) -> String,
    bad: impl Fn(usize) -> String,
) -> (Vec<f64>, Vec<f64>) {
    let api: Api<LucidService> = Api::namespaced(client.clone(), ns);
    let (mut detect, mut restore) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        apply_documents(client, ns, &good(round)).await;
        poll(&api, name, "Ready", |ls| {
            current(ls) && condition(ls, "Ready").is_some_and(|c| c.0 == "True")
        })
        .await;
        let applied = Instant::now();
        apply_documents(client, ns, &bad(round)).await;
        let generation = api.get(name).await.expect("get").metadata.generation;
        let detected = poll(&api, name, "the rollback", |ls| {
            ls.status
                .as_ref()
                .and_then(|s| s.rollback.as_ref())
                .is_some_and(|r| Some(r.failed_generation) == generation)
        })
        .await;
        let restored = poll(&api, name, "the old revision Ready", |ls| {
            current(ls)
                && condition(ls, "Ready").is_some_and(|c| c.1 == "RolledBack")
                && condition(ls, "Available").is_some_and(|c| c.0 == "True")
        })
        .await;
        detect.push((detected - applied).as_secs_f64());
        restore.push((restored - detected).as_secs_f64());
        eprintln!(
            "{name} round {round}: detect {:.2} s, restore {:.2} s",
            detect[round], restore[round]
        );
    }
    (detect, restore)
}

/// A namespace of its own for one kind, with its foundation phase (`RollbackService`).
async fn namespace(client: &Client, name: &'static str) -> &'static str {
    create_namespace(client, name).await;
    let phase = "apiVersion: lucid.io/v1alpha1\nkind: LucidPhase\nmetadata: {name: foundation}\nspec: {onFailure: RollbackService}\n";
    apply_documents(client, name, phase).await;
    name
}

fn p50(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn row(kind: &str, (detect, restore): &(Vec<f64>, Vec<f64>)) {
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "| {kind} | {:.2} s | {:.2} s | {} | {} |",
        p50(detect),
        p50(restore),
        list(detect),
        list(restore)
    );
}

#[tokio::main]
async fn main() {
    let cluster = real_cluster();
    install_operator(cluster);
    let client = cluster.client().await;

    let ns = namespace(&client, "bench-image").await;
    let image = kind(
        &client,
        ns,
        "db",
        |r| redis(r, "harness", ""),
        |r| redis(r, "no-such-tag", ""),
    )
    .await;

    let ns = namespace(&client, "bench-crash").await;
    let crash = kind(
        &client,
        ns,
        "db",
        |r| redis(r, "harness", ""),
        |r| redis(r, "harness", r#", --no-such-option, "1""#),
    )
    .await;

    let ns = namespace(&client, "bench-config").await;
    let config = kind(
        &client,
        ns,
        "gateway",
        |r| gateway(r, &format!("{JWT_KEY}-{r}")),
        |r| gateway(r, "short"),
    )
    .await;

    let ns = namespace(&client, "bench-backup").await;
    let (with, without) = protection_cost(&client, ns).await;

    println!("| failure | detect p50 | restore p50 | detect, 5 runs | restore, 5 runs |");
    println!("|---|---|---|---|---|");
    row("image tag missing, Recreate (Redis)", &image);
    row("crash loop (bad argument), Recreate (Redis)", &crash);
    row(
        "crash loop (ConfigMap edit), RollingUpdate (api-gateway)",
        &config,
    );
    println!();
    println!("| update of a Redis with 256 MiB of data | p50 | 5 runs |");
    println!("|---|---|---|");
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "| with the backup | {:.2} s | {} |",
        p50(&with),
        list(&with)
    );
    println!(
        "| without (`backup.enabled: false`) | {:.2} s | {} |",
        p50(&without),
        list(&without)
    );
}

const MIB: usize = 1024 * 1024;

/// Fills the data volume of `claim` on this machine with 64 files of 4 MiB, owned by the
/// service's user, as a database's files would be.
async fn fill(client: &Client, ns: &str, claim: &str) {
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let volume = claims
        .get(claim)
        .await
        .expect("claim")
        .spec
        .and_then(|s| s.volume_name)
        .expect("bound");
    let pv: Api<PersistentVolume> = Api::all(client.clone());
    let path = pv
        .get(&volume)
        .await
        .expect("pv")
        .spec
        .and_then(|s| s.host_path)
        .expect("hostPath")
        .path;
    let dir = std::path::Path::new(&path).join("bench");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut block = vec![0u8; 4 * MIB];
    for i in 0..64u32 {
        for (j, b) in block.iter_mut().enumerate() {
            *b = (j as u32)
                .wrapping_mul(2654435761)
                .wrapping_add(i)
                .to_le_bytes()[0];
        }
        let file = dir.join(format!("{i:03}.dat"));
        std::fs::write(&file, &block).expect("write");
        std::os::unix::fs::chown(&file, Some(65532), Some(65532)).expect("chown");
    }
    std::os::unix::fs::chown(&dir, Some(65532), Some(65532)).expect("chown");
}

/// Good updates of a Redis holding 256 MiB, alternately with the backup and without.
async fn protection_cost(client: &Client, ns: &str) -> (Vec<f64>, Vec<f64>) {
    let api: Api<LucidService> = Api::namespaced(client.clone(), ns);
    let doc = |round: usize, backup: bool| {
        let extra = if backup {
            "  storage: {data: {size: 2Gi}}"
        } else {
            "  storage: {data: {size: 2Gi}}\n  backup: {enabled: false}"
        };
        redis_with(round, "harness", "", extra)
    };
    apply_documents(client, ns, &doc(0, true)).await;
    poll(&api, "db", "Ready", |ls| {
        current(ls) && condition(ls, "Ready").is_some_and(|c| c.0 == "True")
    })
    .await;
    fill(client, ns, "db-data").await;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 1..=(2 * ROUNDS) {
        let backup = round % 2 == 1;
        let applied = Instant::now();
        apply_documents(client, ns, &doc(round, backup)).await;
        let ready = poll(&api, "db", "Ready at the new generation", |ls| {
            current(ls) && condition(ls, "Ready").is_some_and(|c| c.0 == "True")
        })
        .await;
        let seconds = (ready - applied).as_secs_f64();
        eprintln!("update round {round} (backup {backup}): {seconds:.2} s");
        if backup {
            with.push(seconds);
            let ls = api.get("db").await.expect("get");
            let bytes = ls
                .status
                .and_then(|s| s.backups.first().map(|b| b.bytes))
                .unwrap_or(0);
            assert!(
                bytes >= 256 * MIB as u64,
                "the backup holds the 256 MiB: {bytes}"
            );
        } else {
            without.push(seconds);
        }
    }
    (with, without)
}
