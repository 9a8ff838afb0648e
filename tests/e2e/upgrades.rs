//! Safe upgrades on the real single-node cluster (`lucid_e2e::node`): real pods under a real
//! kubelet, the operator installed by Helm and running from its image.
//!
//! - A bad image tag on a foundation database with a dependent running (`RollbackService`):
//!   back on the old image and serving, the dependent's pod never restarted, the event and
//!   status name the image and generation, no new attempt while the spec stays, a corrected
//!   spec rolls out.
//! - A ConfigMap edit that makes the api-gateway crash: rolled back to the old value (a copy
//!   made when the old revision was Ready) while the ConfigMap still holds the new one.
//! - `RollbackPhase`: two members changed together, one fails, both go back. `Halt`:
//!   nothing goes back, the member stays Degraded saying why, later phases wait.
//!
//! Needs root; `tests/run-all.sh` provides the binaries and images.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use lucid_e2e::node::real_cluster;
use lucid_e2e::node::stack::{
    AUTH_PUBLIC_KEYS, JWT_KEY, create_namespace, for_this_node, install_operator,
};
use lucid_e2e::{apply_documents, condition, is_ready, wait_for_within};
use lucid_operator::api::{LucidPhase, LucidService};

/// Real pods: image unpacking, probes' periods, a Deployment controller in the loop.
const POD_WAIT: Duration = Duration::from_secs(180);

async fn client() -> Client {
    let cluster = real_cluster();
    install_operator(cluster);
    cluster.client().await
}

/// A Redis LucidService from the harness's image; `extra` is appended to its spec.
fn redis(name: &str, phase: &str, extra: &str) -> String {
    for_this_node(&redis_text(name, phase, extra))
}

/// [`redis`] as written, before `for_this_node` re-serialises it (so text can be replaced).
fn redis_text(name: &str, phase: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: lucid.io/v1alpha1
kind: LucidService
metadata: {{name: {name}}}
spec:
  image: {{repository: lucid/redis, tag: harness, pullPolicy: Never}}
  phase: {phase}
  ports: [{{name: redis, port: 6379}}]
  args: [--port, "6379", --bind, 0.0.0.0, --dir, /app/data, --protected-mode, "no"]
  healthCheck: {{kind: Tcp, intervalSeconds: 2, startPeriodSeconds: 0}}
{extra}
"#
    )
}

fn phases(on_failure: &str) -> String {
    format!(
        r#"
apiVersion: lucid.io/v1alpha1
kind: LucidPhase
metadata: {{name: foundation}}
spec: {{onFailure: {on_failure}}}
---
apiVersion: lucid.io/v1alpha1
kind: LucidPhase
metadata: {{name: core}}
spec: {{dependsOn: [foundation], onFailure: {on_failure}}}
"#
    )
}

async fn ready(client: &Client, ns: &str, name: &str) -> LucidService {
    let api: Api<LucidService> = Api::namespaced(client.clone(), ns);
    wait_for_within(&api, name, "Ready from real pods", POD_WAIT, is_ready).await
}

/// Waits until the service's own update is rolled back and the old revision is Available.
async fn rolled_back(client: &Client, ns: &str, name: &str) -> LucidService {
    let api: Api<LucidService> = Api::namespaced(client.clone(), ns);
    wait_for_within(
        &api,
        name,
        "rolled back, the old revision available",
        POD_WAIT,
        |ls: &LucidService| {
            let Some(status) = &ls.status else {
                return false;
            };
            status.observed_generation == ls.metadata.generation
                && condition(&status.conditions, "Ready")
                    .is_some_and(|c| c.0 == "False" && c.1 == "RolledBack")
                && condition(&status.conditions, "Available").is_some_and(|c| c.0 == "True")
        },
    )
    .await
}

async fn deployment(client: &Client, ns: &str, name: &str) -> Deployment {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .expect("Deployment")
}

fn image_of(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

async fn pod_uids(client: &Client, ns: &str, service: &str) -> Vec<String> {
    let mut uids: Vec<String> = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("lucid.io/service={service}")))
        .await
        .expect("pods")
        .items
        .iter()
        .filter_map(|p| p.uid())
        .collect();
    uids.sort();
    uids
}

async fn events_about(client: &Client, ns: &str, name: &str) -> Vec<(String, String)> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_image_tag_on_a_database_is_rolled_back_and_its_dependent_is_untouched() {
    let client = client().await;
    let ns = "upgrade-image";
    create_namespace(&client, ns).await;
    apply_documents(&client, ns, &phases("RollbackService")).await;
    apply_documents(&client, ns, &redis("lucid-redis", "foundation", "")).await;
    apply_documents(
        &client,
        ns,
        &redis("cache", "core", "  dependsOn: [lucid-redis]"),
    )
    .await;
    ready(&client, ns, "lucid-redis").await;
    ready(&client, ns, "cache").await;
    let dependent_pods = pod_uids(&client, ns, "cache").await;
    assert_eq!(dependent_pods.len(), 1);
    let good_image = image_of(&deployment(&client, ns, "lucid-redis").await);

    // A tag this node lacks (`Never`: nothing goes to a registry).
    let bad = for_this_node(
        &redis_text("lucid-redis", "foundation", "").replace("tag: harness", "tag: no-such-tag"),
    );
    apply_documents(&client, ns, &bad).await;
    let ls = rolled_back(&client, ns, "lucid-redis").await;
    let status = ls.status.clone().unwrap();
    let rollback = status.rollback.clone().expect("status.rollback");
    assert_eq!(rollback.failed_generation, 2);
    assert_eq!(rollback.reason, "ImagePullFailed");
    assert!(
        rollback.message.contains("no-such-tag"),
        "{}",
        rollback.message
    );
    assert_eq!(
        Some(rollback.to_revision),
        status.history.first().map(|g| g.revision)
    );
    assert_eq!(status.revision, Some(rollback.to_revision));
    let (_, _, message) = condition(&status.conditions, "Ready").unwrap();
    assert!(message.contains("generation 2 failed"), "{message}");
    assert!(
        message.contains("kubectl lucid retry lucid-redis"),
        "{message}"
    );
    assert_eq!(status.state.as_deref(), Some("Degraded"));
    assert_eq!(
        image_of(&deployment(&client, ns, "lucid-redis").await),
        good_image
    );
    let events = events_about(&client, ns, "lucid-redis").await;
    assert!(
        events.iter().any(|(reason, note)| reason == "RollingBack"
            && note.contains("generation 2")
            && note.contains("no-such-tag")),
        "{events:?}"
    );
    // The dependent never restarted: same pod, and it stayed serving.
    assert_eq!(pod_uids(&client, ns, "cache").await, dependent_pods);
    let cache: Api<LucidService> = Api::namespaced(client.clone(), ns);
    let cache = cache.get("cache").await.unwrap();
    let cache_status = cache.status.unwrap();
    let (deps, _, deps_message) = condition(&cache_status.conditions, "DependenciesReady").unwrap();
    assert_eq!(deps, "False", "lucid-redis is rolled back, not Ready");
    assert!(deps_message.contains("lucid-redis"), "{deps_message}");

    // No new attempt while the spec stays: the Deployment is not touched for two minutes.
    let generation = deployment(&client, ns, "lucid-redis")
        .await
        .metadata
        .generation;
    let until = Instant::now() + Duration::from_secs(120);
    while Instant::now() < until {
        let d = deployment(&client, ns, "lucid-redis").await;
        assert_eq!(d.metadata.generation, generation, "a new attempt was made");
        assert_eq!(image_of(&d), good_image);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }

    // `kubectl lucid retry` (the annotation it sets): the same spec is tried again, fails
    // again, and is rolled back again, the retry recorded.
    let services: Api<LucidService> = Api::namespaced(client.clone(), ns);
    services
        .patch(
            "lucid-redis",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"metadata": {"annotations": {"lucid.io/retry": "1"}}}),
            ),
        )
        .await
        .expect("annotate");
    wait_for_within(
        &services,
        "lucid-redis",
        "tried again and rolled back again",
        POD_WAIT,
        |ls: &LucidService| {
            ls.status
                .as_ref()
                .and_then(|s| s.rollback.as_ref())
                .is_some_and(|r| r.retry.as_deref() == Some("1"))
                && ls.status.as_ref().is_some_and(|s| {
                    condition(&s.conditions, "Ready").is_some_and(|c| c.1 == "RolledBack")
                })
        },
    )
    .await;

    // A corrected spec (a change, on the good image) rolls out and clears the rollback.
    let fixed = redis(
        "lucid-redis",
        "foundation",
        "  env: [{name: FIXED, value: \"1\"}]",
    );
    apply_documents(&client, ns, &fixed).await;
    let ls = ready(&client, ns, "lucid-redis").await;
    let status = ls.status.unwrap();
    assert!(status.rollback.is_none());
    assert!(status.revision > Some(rollback.to_revision));
    assert_eq!(status.history.first().map(|g| g.generation), Some(3));
    let cache = ready(&client, ns, "cache").await;
    let (deps, _, _) = condition(&cache.status.unwrap().conditions, "DependenciesReady").unwrap();
    assert_eq!(deps, "True");
    assert_eq!(pod_uids(&client, ns, "cache").await, dependent_pods);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_map_edit_that_crashes_is_rolled_back_to_the_old_values() {
    let client = client().await;
    let ns = "upgrade-config";
    create_namespace(&client, ns).await;
    apply_documents(&client, ns, &phases("RollbackService")).await;
    // The gateway needs its service-token key and the auth service's public keys; a key
    // too short makes it refuse to start.
    let config = |key: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: gateway-keys}}\ndata: {{JWT_SECRET_KEY: {key}, AUTH_PUBLIC_KEYS: '{AUTH_PUBLIC_KEYS}'}}\n"
        )
    };
    apply_documents(&client, ns, &config(JWT_KEY)).await;
    let gateway = for_this_node(
        r#"
apiVersion: lucid.io/v1alpha1
kind: LucidService
metadata: {name: api-gateway}
spec:
  image: {repository: lucid/lucid-api-gateway, tag: 0.1.0, pullPolicy: Never}
  phase: foundation
  ports: [{name: http, port: 8080}]
  storage: {data: {kind: EmptyDir}, logs: {kind: EmptyDir}}
  healthCheck: {intervalSeconds: 2, startPeriodSeconds: 0}
  envFrom: [{configMapRef: {name: gateway-keys}}]
"#,
    );
    apply_documents(&client, ns, &gateway).await;
    let ls = ready(&client, ns, "api-gateway").await;
    let good = ls.status.unwrap().history[0].revision;
    let serving = pod_uids(&client, ns, "api-gateway").await;

    // A key too short: the gateway refuses to start, and crash-loops.
    apply_documents(&client, ns, &config("short")).await;
    let ls = rolled_back(&client, ns, "api-gateway").await;
    let rollback = ls.status.unwrap().rollback.unwrap();
    assert_eq!(rollback.reason, "CrashLoopBackOff");
    assert_eq!(rollback.to_revision, good);
    // The ConfigMap still holds the new value; the pods read the copy of the old one.
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let now = maps.get("gateway-keys").await.unwrap();
    assert_eq!(now.data.unwrap()["JWT_SECRET_KEY"], "short");
    let copy_name = format!("api-gateway-r{good}-gateway-keys");
    let copy = maps.get(&copy_name).await.expect("the revision's copy");
    assert_eq!(copy.data.unwrap()["JWT_SECRET_KEY"], JWT_KEY);
    assert_eq!(copy.immutable, Some(true));
    let d = deployment(&client, ns, "api-gateway").await;
    let pod = d.spec.unwrap().template.spec.unwrap();
    let env_from = pod.containers[0].env_from.clone().unwrap();
    assert_eq!(
        env_from[0].config_map_ref.as_ref().unwrap().name,
        copy_name,
        "the rolled-back pods read the copy"
    );
    // A rolling update: the old pod served throughout.
    assert!(
        pod_uids(&client, ns, "api-gateway")
            .await
            .iter()
            .any(|uid| serving.contains(uid)),
        "the old pod kept serving"
    );

    // A good value again: a new attempt, which goes live.
    apply_documents(&client, ns, &config(&format!("{JWT_KEY}-rotated"))).await;
    let ls = ready(&client, ns, "api-gateway").await;
    assert!(ls.status.unwrap().rollback.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_phase_takes_back_every_changed_member_and_halt_takes_back_none() {
    let client = client().await;

    // RollbackPhase: a and b change together; b fails; a goes back too.
    let ns = "upgrade-phase";
    create_namespace(&client, ns).await;
    apply_documents(&client, ns, &phases("RollbackPhase")).await;
    apply_documents(&client, ns, &redis("a", "foundation", "")).await;
    apply_documents(&client, ns, &redis("b", "foundation", "")).await;
    ready(&client, ns, "a").await;
    ready(&client, ns, "b").await;
    let phases_api: Api<LucidPhase> = Api::namespaced(client.clone(), ns);
    let phase = wait_for_within(
        &phases_api,
        "foundation",
        "Ready with the set that worked together",
        POD_WAIT,
        |p: &LucidPhase| {
            p.status
                .as_ref()
                .and_then(|s| s.last_ready.as_ref())
                .is_some_and(|r| r.revisions.len() == 2)
        },
    )
    .await;
    let set = phase.status.unwrap().last_ready.unwrap().revisions;
    apply_documents(
        &client,
        ns,
        &redis("a", "foundation", "  env: [{name: CHANGED, value: \"1\"}]"),
    )
    .await;
    let bad = for_this_node(
        &redis_text("b", "foundation", "").replace("tag: harness", "tag: no-such-tag"),
    );
    apply_documents(&client, ns, &bad).await;
    let b = rolled_back(&client, ns, "b").await;
    assert!(b.status.unwrap().rollback.unwrap().cause.is_none());
    let a = rolled_back(&client, ns, "a").await;
    let a_status = a.status.unwrap();
    let a_rollback = a_status.rollback.unwrap();
    assert_eq!(a_rollback.cause.as_deref(), Some("b"));
    assert_eq!(a_rollback.reason, "PhaseRolledBack");
    assert_eq!(Some(&a_rollback.to_revision), set.get("a"));
    let a_pods = deployment(&client, ns, "a").await;
    let env = a_pods.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap_or_default();
    assert!(
        !env.iter().any(|e| e.name == "CHANGED"),
        "a runs its revision from when the phase was Ready"
    );

    // b fixed (a change on the good image): both go forward again.
    apply_documents(
        &client,
        ns,
        &redis("b", "foundation", "  env: [{name: FIXED, value: \"1\"}]"),
    )
    .await;
    let a = ready(&client, ns, "a").await;
    assert!(a.status.unwrap().rollback.is_none());
    ready(&client, ns, "b").await;

    // Halt: nothing goes back; the member stays Degraded, saying why; the next phase's
    // change waits.
    let ns = "upgrade-halt";
    create_namespace(&client, ns).await;
    apply_documents(&client, ns, &phases("Halt")).await;
    apply_documents(&client, ns, &redis("c", "foundation", "")).await;
    apply_documents(&client, ns, &redis("d", "core", "")).await;
    ready(&client, ns, "c").await;
    ready(&client, ns, "d").await;
    let bad = for_this_node(
        &redis_text("c", "foundation", "").replace("tag: harness", "tag: no-such-tag"),
    );
    apply_documents(&client, ns, &bad).await;
    apply_documents(
        &client,
        ns,
        &redis("d", "core", "  env: [{name: LATER, value: \"1\"}]"),
    )
    .await;
    let api: Api<LucidService> = Api::namespaced(client.clone(), ns);
    let c = wait_for_within(
        &api,
        "c",
        "Degraded, halted",
        POD_WAIT,
        |ls: &LucidService| {
            ls.status
                .as_ref()
                .and_then(|s| condition(&s.conditions, "Degraded"))
                .is_some_and(|c| c.0 == "True" && c.2.contains("onFailure is Halt"))
        },
    )
    .await;
    let c_status = c.status.unwrap();
    assert!(c_status.rollback.is_none());
    assert!(image_of(&deployment(&client, ns, "c").await).contains("no-such-tag"));
    let d = wait_for_within(
        &api,
        "d",
        "waiting for its phase",
        POD_WAIT,
        |ls: &LucidService| {
            ls.status.as_ref().and_then(|s| s.state.as_deref()) == Some("Waiting")
                && ls.status.as_ref().and_then(|s| s.observed_generation) == ls.metadata.generation
        },
    )
    .await;
    assert_eq!(
        d.status.unwrap().waiting_on.as_deref(),
        Some("phase/foundation")
    );
}

/// Every path under `root` with its kind, mode and contents (symlinks by target).
fn tree(root: &std::path::Path) -> Vec<(String, u32, Vec<u8>)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).expect("link");
                out.push((rel, 0, target.display().to_string().into_bytes()));
            } else if meta.is_dir() {
                out.push((format!("{rel}/"), mode, Vec::new()));
                stack.push(path);
            } else {
                out.push((rel, mode, std::fs::read(&path).expect("read")));
            }
        }
    }
    out.sort();
    out
}

/// Where the harness's provisioner keeps a claim's volume on this machine.
async fn host_path(client: &Client, ns: &str, claim: &str) -> std::path::PathBuf {
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let volume = claims
        .get(claim)
        .await
        .expect("claim")
        .spec
        .and_then(|s| s.volume_name)
        .expect("bound claim");
    let pv: Api<PersistentVolume> = Api::all(client.clone());
    let pv = pv.get(&volume).await.expect("volume");
    pv.spec
        .and_then(|s| s.host_path)
        .map(|h| std::path::PathBuf::from(h.path))
        .expect("hostPath volume")
}

/// Deletes every operator pod at once, as a node losing them would (the Deployment brings
/// them back; the new leader must carry on from the status).
async fn kill_the_operator(client: &Client) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "lucid-system");
    let list = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=lucid-operator"))
        .await
        .expect("operator pods");
    for pod in list.items {
        let _ = pods
            .delete(
                &pod.name_any(),
                &kube::api::DeleteParams {
                    grace_period_seconds: Some(0),
                    ..Default::default()
                },
            )
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_stateful_update_gets_its_data_back_byte_identical_across_operator_restarts() {
    let client = client().await;
    let ns = "upgrade-data";
    create_namespace(&client, ns).await;
    apply_documents(&client, ns, &phases("RollbackService")).await;
    // Redis saves dump.rdb in /app/data when it stops: the data changes with every stop.
    apply_documents(&client, ns, &redis("db", "foundation", "")).await;
    ready(&client, ns, "db").await;

    // The new revision starts, writes to its data (an append-only log, and a dump at every
    // stop), and never turns ready (its check asks a port nothing listens on): it fails by
    // its progress deadline (30 s here), or sooner if its restarts are seen as a crash loop.
    let failing = for_this_node(
        &redis_text(
            "db",
            "foundation",
            "  env: [{name: NEXT, value: \"1\"}]\n  progressDeadlineSeconds: 30",
        )
        .replace(r#""no"]"#, r#""no", --appendonly, "yes"]"#)
        .replace(
            "healthCheck: {kind: Tcp,",
            "healthCheck: {kind: Tcp, port: 6390,",
        ),
    );
    assert!(
        failing.contains("6390") && failing.contains("appendonly"),
        "{failing}"
    );
    apply_documents(&client, ns, &failing).await;
    let api: Api<LucidService> = Api::namespaced(client.clone(), ns);
    // Killed while the copy is made: the new leader carries on.
    wait_for_within(&api, "db", "backing up", POD_WAIT, |ls: &LucidService| {
        ls.status
            .as_ref()
            .and_then(|s| s.data_protection.as_ref())
            .is_some_and(|d| d.step == "BackingUp")
            || ls.status.as_ref().is_some_and(|s| !s.backups.is_empty())
    })
    .await;
    kill_the_operator(&client).await;
    let backed_up = wait_for_within(
        &api,
        "db",
        "the backup recorded",
        POD_WAIT,
        |ls: &LucidService| ls.status.as_ref().is_some_and(|s| !s.backups.is_empty()),
    )
    .await;
    let backup = backed_up.status.unwrap().backups[0].clone();
    assert!(backup.files >= 1, "{backup:?}");
    assert_eq!(backup.root_hash.len(), 64);

    // Killed again while the copy is restored (if that is seen; it may be quick).
    let restoring = wait_for_within(&api, "db", "rolling back", POD_WAIT, |ls: &LucidService| {
        ls.status.as_ref().is_some_and(|s| s.rollback.is_some())
    })
    .await;
    if restoring
        .status
        .as_ref()
        .and_then(|s| s.rollback.as_ref())
        .is_some_and(|r| r.restored_from.is_none())
    {
        kill_the_operator(&client).await;
    }
    let ls = rolled_back(&client, ns, "db").await;
    let status = ls.status.unwrap();
    let rollback = status.rollback.unwrap();
    assert_eq!(
        rollback.restored_from.as_deref(),
        Some(backup.claim.as_str())
    );
    assert!(status.data_protection.is_none());

    // The data the old revision runs on again is the copy taken when it stopped, byte for
    // byte (the failed revision's appendonlydir and dumps are gone).
    let data = host_path(&client, ns, "db-data").await;
    let copy = host_path(&client, ns, &backup.claim).await.join("data");
    assert_eq!(
        tree(&data)
            .iter()
            .filter(|(p, ..)| p.starts_with("appendonlydir"))
            .count(),
        0
    );
    // The old revision runs on it now and may have written since: compare the copy with
    // what the restore made, as the copier's manifest records it (same root hash).
    let restored_entries: Vec<String> = tree(&copy).iter().map(|(p, ..)| p.clone()).collect();
    assert!(!restored_entries.is_empty());
    for (path, mode, bytes) in tree(&copy) {
        if path.ends_with('/') {
            continue;
        }
        let live = std::fs::read(data.join(&path)).unwrap_or_default();
        // dump.rdb is rewritten only when Redis stops; the old revision has not stopped.
        assert_eq!(live, bytes, "{path} (mode {mode:o}) differs from the copy");
    }
    // No more backup claims than `keep` (1).
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(client.clone(), ns);
    let backups = claims
        .list(&ListParams::default().labels("lucid.io/backup-of=db"))
        .await
        .unwrap();
    assert_eq!(backups.items.len(), 1);
}
