//! LucidPhase against a real kube-apiserver: the whole 27-service stack from the
//! `lucid-stack` chart (rendered by the real Helm engine) rolls out phase by phase, in
//! dependency order; updates respect the order and restart nothing unchanged; bad graphs
//! are reported.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams};
use lucid_e2e::{TestEnv, condition, control_plane, is_ready, kubelet::mark_available};
use lucid_operator::api::{LucidPhase, LucidService};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const HELM: &str = "/var/cache/lucid-tools/kubectl-v37-2.0.0/helm";

fn tool(name: &str, default: &str) -> Option<String> {
    std::env::var(name).ok().or_else(|| {
        std::path::Path::new(default)
            .exists()
            .then(|| default.to_string())
    })
}

fn helm_template(chart: &str, namespace: &str) -> String {
    let helm = tool("LUCID_HELM", HELM).expect("helm: run tests/harness/install-tools.sh");
    let out = std::process::Command::new(helm)
        .args([
            "template",
            "lucid",
            &format!("{ROOT}/charts/{chart}"),
            "-n",
            namespace,
        ])
        .output()
        .expect("helm");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

/// Every phase Ready and, together, counting `services` Ready members: a phase whose
/// members are not all created yet is (vacuously) Ready too.
async fn all_phases_ready(env: &TestEnv, services: i32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let phases = env
            .api::<LucidPhase>()
            .list(&Default::default())
            .await
            .unwrap();
        let ready = phases.items.iter().all(|p| {
            p.status.as_ref().is_some_and(|s| {
                s.observed_generation == p.metadata.generation
                    && s.state.as_deref() == Some("Ready")
            })
        });
        let counted: i32 = phases
            .items
            .iter()
            .filter_map(|p| p.status.as_ref())
            .map(|s| s.ready_services)
            .sum();
        if ready && phases.items.len() == 4 && counted == services {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let summary: Vec<_> = phases
                .items
                .iter()
                .map(|p| {
                    (
                        p.name_any(),
                        p.status.clone().unwrap_or_default().ready,
                        p.status.clone().unwrap_or_default().waiting_on,
                    )
                })
                .collect();
            panic!("phases not Ready in time: {summary:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn kubectl_get(env: &TestEnv, what: &str) -> String {
    let Some(kubectl) = tool(
        "LUCID_KUBECTL",
        "/var/cache/lucid-tools/kubectl-v37-2.0.0/kubectl",
    ) else {
        return String::new();
    };
    let kubeconfig = control_plane().kubeconfig.display().to_string();
    let out = std::process::Command::new(kubectl)
        .args([
            "--kubeconfig",
            &kubeconfig,
            "-n",
            &env.namespace,
            "get",
            what,
        ])
        .output()
        .expect("kubectl");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_stack_rolls_out_phase_by_phase_and_updates_keep_the_order() {
    let env = TestEnv::start("stack", Duration::from_millis(150)).await;
    env.apply_documents(
        &std::fs::read_to_string(format!("{ROOT}/crds/examples/environment.yaml")).unwrap(),
    )
    .await;
    env.apply_documents(&helm_template("lucid-stack", &env.namespace))
        .await;
    all_phases_ready(&env, 27).await;

    let services = env
        .api::<LucidService>()
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    assert_eq!(services.len(), 27);
    let phases: BTreeMap<String, LucidPhase> = env
        .api::<LucidPhase>()
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| (p.name_any(), p))
        .collect();
    let log = env.kubelet.log.lock().unwrap().clone();
    let upstream = |phase: &str| -> Vec<String> {
        let mut out = Vec::new();
        let mut next: Vec<String> = phases[phase].spec.depends_on.clone();
        while let Some(p) = next.pop() {
            next.extend(phases[&p].spec.depends_on.clone());
            out.push(p);
        }
        out
    };
    for s in &services {
        let started = log[&s.name_any()].first_seen.unwrap();
        for dep in &s.spec.depends_on {
            let ready = log[dep].available_at.unwrap();
            assert!(
                started >= ready,
                "{} started before its dependency {dep} was Ready",
                s.name_any()
            );
        }
        for p in upstream(&s.spec.phase) {
            for m in services.iter().filter(|m| m.spec.phase == p) {
                assert!(
                    started >= log[&m.name_any()].available_at.unwrap(),
                    "{} (phase {}) started before {} of phase {p} was Ready",
                    s.name_any(),
                    s.spec.phase,
                    m.name_any()
                );
            }
        }
    }
    let mut order: Vec<_> = log.iter().map(|(n, s)| (s.order, n.clone())).collect();
    order.sort();
    println!(
        "Deployment creation order: {:?}",
        order.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>()
    );

    let policies = env
        .api::<NetworkPolicy>()
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    assert_eq!(policies.len(), 27);
    let tron = policies
        .iter()
        .find(|p| p.name_any() == "tron-client")
        .unwrap();
    assert!(
        tron.spec
            .as_ref()
            .unwrap()
            .policy_types
            .as_ref()
            .unwrap()
            .contains(&"Egress".to_string())
    );
    let report = format!(
        "$ kubectl get lucidphases\n{}\n$ kubectl get lucidservices\n{}",
        kubectl_get(&env, "lucidphases"),
        kubectl_get(&env, "lucidservices")
    );
    println!("{report}");
    let _ = std::fs::write(format!("{ROOT}/target/stack-rollout.txt"), &report);

    // An update of a foundation service, and of a core service whose spec also changed.
    let generations: BTreeMap<String, Option<i64>> = env
        .api::<Deployment>()
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|d| (d.name_any(), d.metadata.generation))
        .collect();
    env.kubelet.hold("lucid-redis");
    let image = |tag: &str| serde_json::json!({"spec": {"image": {"tag": tag}}});
    env.api::<LucidService>()
        .patch(
            "lucid-redis",
            &PatchParams::default(),
            &Patch::Merge(image("v2")),
        )
        .await
        .unwrap();
    env.wait_service("lucid-redis", "rolling out v2", |ls| {
        ls.status.as_ref().is_some_and(|s| {
            s.observed_generation == ls.metadata.generation
                && s.state.as_deref() == Some("Progressing")
        })
    })
    .await;
    env.api::<LucidService>()
        .patch(
            "api-gateway",
            &PatchParams::default(),
            &Patch::Merge(image("v2")),
        )
        .await
        .unwrap();
    let waiting = env
        .wait_service("api-gateway", "waiting for foundation", |ls| {
            ls.status.as_ref().is_some_and(|s| {
                s.observed_generation == ls.metadata.generation
                    && s.state.as_deref() == Some("Waiting")
            })
        })
        .await;
    let status = waiting.status.unwrap();
    assert_eq!(status.waiting_on.as_deref(), Some("phase/foundation"));
    assert_eq!(
        condition(&status.conditions, "Ready").unwrap().1,
        "WaitingForPhase"
    );
    env.wait_phase("foundation", "not Ready while redis rolls out", |p| {
        p.status
            .as_ref()
            .is_some_and(|s| s.state.as_deref() == Some("Progressing"))
    })
    .await;
    // Waiting at generation 2 is the operator's decision on the new spec, written after any
    // apply it would have made; redis is held, so no later reconcile can open the gate.
    let gateway = env.api::<Deployment>().get("api-gateway").await.unwrap();
    assert_eq!(
        gateway.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("pickme/lucid-api-gateway:latest-arm64"),
        "api-gateway changed before foundation was Ready again"
    );

    env.kubelet.release("lucid-redis");
    mark_available(&env.api(), "lucid-redis")
        .await
        .expect("mark available");
    env.wait_service("api-gateway", "Ready on v2", |ls| {
        is_ready(ls) && ls.metadata.generation == Some(2)
    })
    .await;
    let gateway = env.api::<Deployment>().get("api-gateway").await.unwrap();
    assert_eq!(
        gateway.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("pickme/lucid-api-gateway:v2")
    );
    all_phases_ready(&env, 27).await;
    let after: BTreeMap<String, Option<i64>> = env
        .api::<Deployment>()
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|d| (d.name_any(), d.metadata.generation))
        .collect();
    let changed: Vec<&String> = after
        .iter()
        .filter(|(n, g)| generations[*n] != **g)
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        changed,
        vec!["api-gateway", "lucid-redis"],
        "only the services whose spec changed were rolled"
    );
    env.stop().await;
}

/// Names are quoted: YAML 1.1 (compose's, and kubectl's) reads a bare `y` or `n` as a
/// boolean, and this test has a phase named `y`.
fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn service(name: &str, phase: &str, deps: &[&str]) -> String {
    format!(
        "apiVersion: lucid.io/v1alpha1\nkind: LucidService\nmetadata: {{name: \"{name}\"}}\nspec:\n  image: {{repository: x}}\n  phase: \"{phase}\"\n  dependsOn: [{}]\n  storage: {{data: {{kind: EmptyDir}}, logs: {{kind: EmptyDir}}}}\n",
        quoted(deps)
    )
}

fn phase(name: &str, deps: &[&str], paused: bool) -> String {
    format!(
        "apiVersion: lucid.io/v1alpha1\nkind: LucidPhase\nmetadata: {{name: \"{name}\"}}\nspec:\n  dependsOn: [{}]\n  paused: {paused}\n",
        quoted(deps)
    )
}

fn degraded_with(reason: &'static str) -> impl Fn(&LucidService) -> bool {
    move |ls| {
        ls.status.as_ref().is_some_and(|s| {
            condition(&s.conditions, "Degraded").is_some_and(|c| c.0 == "True" && c.1 == reason)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_phases_cycles_and_missing_references_are_reported() {
    let env = TestEnv::start("graph", Duration::from_millis(100)).await;
    let docs = [
        phase("foundation", &[], false),
        phase("core", &["foundation"], true),
        phase("x", &["y"], false),
        phase("y", &["x"], false),
        service("a", "foundation", &[]),
        service("b", "core", &["a"]),
        service("c", "foundation", &["d"]),
        service("d", "foundation", &["c"]),
        service("e", "foundation", &["ghost"]),
        service("f", "nowhere", &[]),
    ];
    env.apply_documents(&docs.join("---\n")).await;

    env.wait_service("a", "Ready", is_ready).await;
    let b = env
        .wait_service("b", "held by the paused phase", |ls| {
            ls.status
                .as_ref()
                .is_some_and(|s| s.waiting_on.as_deref() == Some("phase/core"))
        })
        .await;
    assert_eq!(
        condition(&b.status.unwrap().conditions, "Ready").unwrap().1,
        "PhasePaused"
    );
    assert!(
        env.api::<Deployment>()
            .get_opt("b")
            .await
            .unwrap()
            .is_none()
    );
    env.wait_phase("core", "Paused", |p| {
        p.status
            .as_ref()
            .is_some_and(|s| s.state.as_deref() == Some("Paused"))
    })
    .await;

    for name in ["c", "d"] {
        let ls = env
            .wait_service(name, "DependencyCycle", degraded_with("DependencyCycle"))
            .await;
        let message = condition(&ls.status.unwrap().conditions, "Degraded")
            .unwrap()
            .2;
        assert!(
            message.contains("c -> d -> c") || message.contains("d -> c -> d"),
            "{message}"
        );
    }
    let e = env
        .wait_service(
            "e",
            "DependencyNotFound",
            degraded_with("DependencyNotFound"),
        )
        .await;
    assert!(
        condition(&e.status.unwrap().conditions, "Degraded")
            .unwrap()
            .2
            .contains("ghost")
    );
    env.wait_service("f", "PhaseNotFound", degraded_with("PhaseNotFound"))
        .await;
    // Degraded with the cycle named (x may first say PhaseDependencyNotFound, for as
    // long as its partner y is not created yet).
    let x = env
        .wait_phase("x", "Degraded PhaseCycle", |p| {
            p.status.as_ref().is_some_and(|s| {
                s.state.as_deref() == Some("Degraded")
                    && condition(&s.conditions, "Degraded").is_some_and(|c| c.1 == "PhaseCycle")
            })
        })
        .await;
    let (_, _, message) = condition(&x.status.unwrap().conditions, "Degraded").unwrap();
    assert!(
        message.contains("x -> y -> x") || message.contains("y -> x -> y"),
        "the cycle is named: {message}"
    );
    // The phase summarises its members' statuses as its cache has them, at most every
    // 300 ms: waited for until it lists the three broken ones (a status written a moment
    // before e's own Degraded reached the cache lists only c and d).
    let degraded_members = |p: &LucidPhase| -> Vec<String> {
        p.status
            .iter()
            .flat_map(|s| &s.members)
            .filter(|m| m.state == lucid_operator::api::MemberState::Degraded)
            .map(|m| m.name.clone())
            .collect()
    };
    let foundation = env
        .wait_phase(
            "foundation",
            "Degraded by its broken members c, d and e, all four listed",
            |p| {
                p.status
                    .as_ref()
                    .is_some_and(|s| s.state.as_deref() == Some("Degraded") && s.members.len() == 4)
                    && degraded_members(p) == ["c", "d", "e"]
            },
        )
        .await;
    assert_eq!(degraded_members(&foundation), ["c", "d", "e"]);

    // Fixing things recovers: the missing dependency appears, the phase is unpaused.
    env.apply_documents(&service("ghost", "foundation", &[]))
        .await;
    env.wait_service("e", "Ready once ghost exists", is_ready)
        .await;
    env.api::<LucidPhase>()
        .patch(
            "core",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"paused": false}})),
        )
        .await
        .unwrap();
    // core still waits: foundation has broken members (c, d, f). Remove them.
    for name in ["c", "d", "f"] {
        env.api::<LucidService>()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    env.wait_service("b", "Ready after unpausing", is_ready)
        .await;

    // Deleting a phase deletes nothing of its services.
    env.api::<LucidPhase>()
        .delete("core", &DeleteParams::default())
        .await
        .unwrap();
    // Once b says its phase is gone, the operator has acted on the deletion.
    env.wait_service("b", "PhaseNotFound once core is deleted", |ls| {
        ls.status.as_ref().is_some_and(|s| {
            condition(&s.conditions, "Degraded").is_some_and(|c| c.1 == "PhaseNotFound")
        })
    })
    .await;
    assert!(
        env.api::<Deployment>()
            .get_opt("b")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        env.api::<LucidService>()
            .get_opt("b")
            .await
            .unwrap()
            .is_some()
    );
    env.stop().await;
}
