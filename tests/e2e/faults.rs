//! The 27-service stack converges through faults injected mid-rollout (once the foundation
//! phase is Ready and the rest is on its way): the API server down for 30 s, etcd
//! restarted, the operator killed (SIGKILL-like) and started again, the leader of two
//! replicas killed, the leader cut off from the API server. After each, every
//! service is Ready and the objects are exactly those of an undisturbed run: same names,
//! same rendered content, same owner references, nothing duplicated, lost or orphaned.
//! With two replicas, the audit log (one identity each) shows the old leader's last write
//! before the new one's first. Failover timing itself is `leader_election.rs`.
//!
//! One test, the scenarios in sequence: they share this binary's control plane.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::ListParams;
use kube::{Api, Client, Resource, ResourceExt};
use lucid_e2e::proxy::Proxy;
use lucid_e2e::replica::Running;
use lucid_e2e::{
    Component, Kubelet, apply_documents, control_plane, create_namespace, init_tracing,
    install_crds,
};
use lucid_operator::api::{LucidPhase, LucidService};
use lucid_operator::leader::ElectionConfig;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const SERVICES: usize = 27;
/// A service of the last phase (support).
const LAST: &str = "tron-client";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    None,
    ApiServerDown30s,
    EtcdRestart,
    OperatorKilled,
    /// Two replicas electing a leader; the leader killed, the standby takes over.
    LeaderKilled,
    /// Two replicas; the leader's connections to the API server cut (and healed after).
    LeaderPartitioned,
}

/// Election timing for the tests: a 4 s lease keeps them short.
fn election(namespace: &str, identity: &str) -> ElectionConfig {
    let mut e = ElectionConfig::new(namespace.into(), "lucid-operator".into(), identity.into());
    e.lease_duration = Duration::from_secs(4);
    e.renew_deadline = Duration::from_secs(3);
    e.retry_period = Duration::from_secs(1);
    e
}

fn stack_documents() -> String {
    let mut helm = control_plane().helm();
    helm.args(["template", "lucid", &format!("{ROOT}/charts/lucid-stack")]);
    let out = helm.output().expect("helm");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let environment =
        std::fs::read_to_string(format!("{ROOT}/crds/examples/environment.yaml")).expect("env");
    format!(
        "{environment}\n---\n{}",
        String::from_utf8_lossy(&out.stdout)
    )
}

/// An object as the operator rendered it, without what the API server or the namespace
/// decides (uids, addresses, node ports, timestamps, status).
fn normalised<K: Resource + Serialize>(object: &K) -> Value {
    let mut value = serde_json::to_value(object).expect("json");
    let owners: Vec<Value> = object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .map(|o| serde_json::json!([o.kind, o.name, o.controller]))
        .collect();
    let metadata = &value["metadata"];
    let mut annotations = metadata["annotations"].clone();
    if let Some(a) = annotations.as_object_mut() {
        a.remove("deployment.kubernetes.io/revision");
        // A hash of the rendered objects, their namespace included: compared through them.
        a.remove("lucid.io/applied-hash");
    }
    let kept = serde_json::json!({
        "name": metadata["name"],
        "labels": metadata["labels"],
        "annotations": annotations,
        "owners": owners,
    });
    value["metadata"] = kept;
    if let Some(o) = value.as_object_mut() {
        o.remove("status");
    }
    let spec = &mut value["spec"];
    if let Some(s) = spec.as_object_mut() {
        for field in ["clusterIP", "clusterIPs", "volumeName"] {
            s.remove(field);
        }
        if let Some(ports) = s.get_mut("ports").and_then(Value::as_array_mut) {
            for port in ports {
                if let Some(p) = port.as_object_mut() {
                    p.remove("nodePort");
                }
            }
        }
    }
    value
}

async fn collect<K>(client: &Client, ns: &str, out: &mut BTreeMap<String, Value>)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let items = api
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=lucid-operator"))
        .await
        .expect("list")
        .items;
    for item in items {
        let key = format!("{}/{}", K::kind(&()), item.name_any());
        assert!(
            out.insert(key.clone(), normalised(&item)).is_none(),
            "duplicated {key}"
        );
    }
}

async fn snapshot(client: &Client, ns: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    collect::<Deployment>(client, ns, &mut out).await;
    collect::<Service>(client, ns, &mut out).await;
    collect::<NetworkPolicy>(client, ns, &mut out).await;
    collect::<PersistentVolumeClaim>(client, ns, &mut out).await;
    out
}

async fn ready_count(client: &Client, ns: &str) -> usize {
    let api: Api<LucidService> = Api::namespaced(client.clone(), ns);
    match api.list(&Default::default()).await {
        Ok(list) => list.items.iter().filter(|s| lucid_e2e::is_ready(s)).count(),
        // The API server may be down: not Ready yet.
        Err(_) => 0,
    }
}

/// Each service not Ready: its state, reason and what it waits on, and its Deployment's
/// status as the kubelet stand-in left it.
async fn not_ready(client: &Client, ns: &str) -> Vec<String> {
    let services: Api<LucidService> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let Ok(list) = services.list(&Default::default()).await else {
        return vec!["(the API server did not answer)".into()];
    };
    let mut out = Vec::new();
    for ls in list.items.iter().filter(|s| !lucid_e2e::is_ready(s)) {
        let status = ls.status.clone().unwrap_or_default();
        let ready = lucid_e2e::condition(&status.conditions, "Ready");
        let deployment = deployments
            .get_opt(&ls.name_any())
            .await
            .ok()
            .flatten()
            .map(|d| {
                let s = d.status.unwrap_or_default();
                format!(
                    "generation {:?} observed {:?} available {:?}",
                    d.metadata.generation, s.observed_generation, s.available_replicas
                )
            });
        out.push(format!(
            "{} (generation {:?}, observed {:?}): {:?} {ready:?} waiting on {:?}; Deployment {deployment:?}",
            ls.name_any(),
            ls.metadata.generation,
            status.observed_generation,
            status.state,
            status.waiting_on,
        ));
    }
    out
}

async fn foundation_ready(client: &Client, ns: &str) -> bool {
    let api: Api<LucidPhase> = Api::namespaced(client.clone(), ns);
    api.get_opt("foundation")
        .await
        .ok()
        .flatten()
        .is_some_and(|p| {
            p.status
                .is_some_and(|s| s.state.as_deref() == Some("Ready") && s.ready_services > 0)
        })
}

/// Rolls the stack out in a fresh namespace with `fault` injected mid-rollout; returns the
/// final objects and the time from the fault's end to every service Ready.
async fn run(admin: &Client, fault: Fault) -> (BTreeMap<String, Value>, Duration) {
    let ns = format!("faults-{fault:?}").to_lowercase();
    create_namespace(admin, &ns).await;
    let elected = matches!(fault, Fault::LeaderKilled | Fault::LeaderPartitioned);
    let proxy = match fault {
        Fault::LeaderPartitioned => {
            let upstream = control_plane()
                .server
                .trim_start_matches("https://")
                .parse()
                .expect("API server address");
            Some(Proxy::start(upstream).await)
        }
        _ => None,
    };
    let mut operator = if elected {
        Running::start_via(
            &ns,
            "lucid-operator",
            Some(election(&ns, "a")),
            proxy.as_ref().map(|p| format!("https://{}", p.address)),
        )
    } else {
        Running::start(&ns, "lucid-operator", None)
    };
    let mut standby = None;
    if elected {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !operator.leadership.is_leader() {
            assert!(Instant::now() < deadline, "{fault:?}: a never led");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        standby = Some(Running::start(
            &ns,
            "lucid-operator-b",
            Some(election(&ns, "b")),
        ));
    }
    let kubelet = Kubelet::start(admin.clone(), &ns, Duration::from_millis(200));
    // One last-phase service is kept from Ready until the fault is in: the fault lands
    // mid-rollout however fast the rest goes.
    kubelet.hold(LAST);
    apply_documents(admin, &ns, &stack_documents()).await;

    let deadline = Instant::now() + Duration::from_secs(120);
    while !foundation_ready(admin, &ns).await {
        assert!(
            Instant::now() < deadline,
            "{fault:?}: foundation never Ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = ready_count(admin, &ns).await;
    assert!(
        before < SERVICES,
        "{fault:?}: the fault must land mid-rollout"
    );
    match fault {
        Fault::None => {}
        Fault::ApiServerDown30s => {
            tokio::task::spawn_blocking(|| {
                control_plane().restart(Component::ApiServer, Duration::from_secs(30))
            })
            .await
            .expect("restart");
        }
        Fault::EtcdRestart => {
            tokio::task::spawn_blocking(|| {
                control_plane().restart(Component::Etcd, Duration::from_secs(2))
            })
            .await
            .expect("restart");
        }
        Fault::OperatorKilled => {
            operator.kill();
            operator = Running::start(&ns, "lucid-operator", None);
        }
        Fault::LeaderKilled => {
            operator.kill();
            // The standby is the operator now; `operator` a standby that never leads.
            operator = standby.take().expect("standby");
        }
        Fault::LeaderPartitioned => {
            if let Some(proxy) = &proxy {
                proxy.cut();
            }
        }
    }
    kubelet.release(LAST);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
    let recovered = Instant::now();
    let deadline = recovered + Duration::from_secs(180);
    let mut progress = Vec::new();
    loop {
        // The held one, if its Deployment came while held (the kubelet stand-in marks
        // only what its watch reports after the release).
        // The API server may be down: tried again on the next turn.
        let _ = lucid_e2e::kubelet::mark_available(&deployments, LAST).await;
        let ready = ready_count(admin, &ns).await;
        if progress.last().map(|(n, _)| *n) != Some(ready) {
            progress.push((ready, recovered.elapsed().as_millis()));
        }
        if ready == SERVICES {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{fault:?}: {} of {SERVICES} Ready 180 s after the fault ({before} at it); \
             (ready, ms): {progress:?}; not Ready: {:#?}",
            ready_count(admin, &ns).await,
            not_ready(admin, &ns).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let converged = recovered.elapsed();
    println!(
        "{fault:?}: {before}/{SERVICES} Ready at the fault; all Ready {converged:?} after it ended; (ready, ms): {progress:?}"
    );
    if let Some(proxy) = &proxy {
        // Healed: the old leader finds the Lease taken and stands by.
        proxy.heal().await;
    }
    if elected {
        // The audit log, one identity per replica: never both writing in the same period.
        let cp = control_plane();
        let time = |w: &(String, String, String)| {
            w.0.parse::<k8s_openapi::jiff::Timestamp>()
                .expect("timestamp")
        };
        let a_last = cp.writes_by("lucid-operator", &ns).iter().map(time).max();
        let b_first = cp.writes_by("lucid-operator-b", &ns).iter().map(time).min();
        assert!(
            a_last.is_some() && b_first.is_some() && a_last < b_first,
            "{fault:?}: a last wrote at {a_last:?}, b first wrote at {b_first:?}"
        );
    }
    let objects = snapshot(admin, &ns).await;
    operator.stop().await;
    if let Some(standby) = standby {
        standby.stop().await;
    }
    kubelet.stop();
    (objects, converged)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_converges_to_the_same_objects_through_api_server_etcd_and_operator_faults() {
    // Every request audited, by user: the election scenarios check who wrote when.
    lucid_e2e::control_plane::audit_on();
    init_tracing();
    let admin = control_plane().client().await;
    install_crds(&admin).await;
    let (baseline, _) = run(&admin, Fault::None).await;
    let deployments = baseline
        .keys()
        .filter(|k| k.starts_with("Deployment/"))
        .count();
    let policies = baseline
        .keys()
        .filter(|k| k.starts_with("NetworkPolicy/"))
        .count();
    assert_eq!((deployments, policies), (SERVICES, SERVICES));
    for fault in [
        Fault::ApiServerDown30s,
        Fault::EtcdRestart,
        Fault::OperatorKilled,
        Fault::LeaderKilled,
        Fault::LeaderPartitioned,
    ] {
        let (objects, _) = run(&admin, fault).await;
        let missing: Vec<_> = baseline
            .keys()
            .filter(|k| !objects.contains_key(*k))
            .collect();
        let extra: Vec<_> = objects
            .keys()
            .filter(|k| !baseline.contains_key(*k))
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{fault:?}: missing {missing:?}, extra {extra:?}"
        );
        for (key, expected) in &baseline {
            assert_eq!(&objects[key], expected, "{fault:?}: {key} differs");
        }
    }
}
