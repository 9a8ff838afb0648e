//! `kubectl lucid plan`: the order `import` then `plan` gives is the order compose's
//! `depends_on` gives; graph errors carry the operator's own reasons and messages; `--render`
//! prints exactly what the operator's render functions make.

mod common;

use std::collections::BTreeMap;

use common::*;
use kube::ResourceExt;
use lucid_operator::api::LucidService;
use serde_json::Value;

const PHASE_FILES: &[&str] = &[
    "docker-compose.foundation.yml",
    "docker-compose.core.yml",
    "docker-compose.support.yml",
];

fn imported(name: &str) -> std::path::PathBuf {
    let out = scratch(name);
    let o = run(
        &docker_dir(),
        &[&["import"], PHASE_FILES, &["-o", out.to_str().unwrap()]].concat(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    out
}

#[test]
fn import_then_plan_orders_services_as_compose_depends_on_does() {
    let out = imported("plan-order");
    let o = run(&docker_dir(), &["plan", "-f", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    golden("plan.txt", &stdout(&o));

    let json = run(
        &docker_dir(),
        &["plan", "-f", out.to_str().unwrap(), "-o", "json"],
    );
    let plan: Value = serde_json::from_slice(&json.stdout).unwrap();
    let order: Vec<String> = plan["phases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["services"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["name"].as_str().unwrap().to_string())
        })
        .collect();

    // depends_on as compose itself reads it (the oracle), not as the import does.
    let mut args = Vec::new();
    for f in PHASE_FILES {
        args.extend(["-f", f]);
    }
    args.push("config");
    let config = std::process::Command::new("docker-compose")
        .args(&args)
        .current_dir(docker_dir())
        .output()
        .expect("docker-compose");
    assert!(config.status.success());
    let config: serde_json::Value = serde_saphyr::from_slice(&config.stdout).unwrap();
    let services = config["services"].as_object().unwrap();
    assert_eq!(services.len(), order.len());
    let position: BTreeMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    let mut checked = 0;
    for (name, body) in services {
        let name = name.as_str();
        for dep in body["depends_on"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.keys())
        {
            let dep = dep.as_str();
            assert!(
                position[dep] < position[name],
                "{dep} must come before {name}: {order:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "the fixture has a real dependency graph");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn graph_errors_carry_the_operators_reasons_and_messages_and_fail_the_plan() {
    let broken = fixtures().join("plans/broken.yaml");
    let o = run(&docker_dir(), &["plan", "-f", broken.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    golden("plan-broken.txt", &text);
    for expected in [
        "LucidService/lucid-auth-service: DependencyNotFound: dependsOn names LucidServices that do not exist: lucid-vault",
        "LucidService/lucid-redis: DependencyCycle: dependencies form a cycle: lucid-redis -> lucid-auth-service -> lucid-redis",
        "LucidService/admin-interface: PhaseNotFound: no LucidPhase named \"admin\" in this namespace",
        "LucidService/api-gateway: PhaseCycle: phases depend on each other in a cycle: core -> application -> core",
    ] {
        assert!(text.contains(expected), "expected {expected:?} in:\n{text}");
    }
    // The same errors, machine-readable, and on stderr too.
    let o = run(
        &docker_dir(),
        &["plan", "-f", broken.to_str().unwrap(), "-o", "yaml"],
    );
    assert_eq!(o.status.code(), Some(1));
    let plan: serde_json::Value = serde_saphyr::from_slice(&o.stdout).unwrap();
    assert_eq!(
        plan["errors"].as_array().unwrap().len(),
        4,
        "{}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("error: LucidService/lucid-auth-service: DependencyNotFound"));
}

#[test]
fn render_prints_exactly_the_operators_objects() {
    let out = imported("plan-render");
    let o = run(
        &docker_dir(),
        &[
            "plan",
            "-f",
            out.to_str().unwrap(),
            "--render",
            "-n",
            "lucid",
            "-o",
            "json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    let items = list["items"].as_array().unwrap();

    // The operator's render of the same LucidService, called here directly.
    let text = std::fs::read_to_string(out.join("40-lucidservice-api-gateway.yaml")).unwrap();
    let mut ls: LucidService = serde_saphyr::from_str(&text).unwrap();
    ls.metadata.namespace = Some("lucid".into());
    ls.metadata.uid = Some(kubectl_lucid::render::PLACEHOLDER_UID.into());
    // The config hash by the operator's rule over the imported ConfigMaps and Secrets.
    let manifests = kubectl_lucid::manifests::read(std::slice::from_ref(&out)).unwrap();
    let config_hash =
        lucid_operator::reconcile::config_hash_of(&ls, &manifests.config_maps, &manifests.secrets)
            .unwrap();
    assert_eq!(
        config_hash.len(),
        32,
        "api-gateway reads imported env files"
    );
    let children = lucid_operator::render::render(
        &ls,
        &lucid_operator::render::RenderInputs {
            config_hash,
            ..Default::default()
        },
    )
    .unwrap();
    let find = |kind: &str| {
        items
            .iter()
            .find(|i| i["kind"] == kind && i["metadata"]["name"] == ls.name_any())
            .unwrap_or_else(|| panic!("no {kind}"))
            .clone()
    };
    assert_eq!(
        find("Deployment"),
        serde_json::to_value(&children.deployment).unwrap()
    );
    assert_eq!(
        find("Service"),
        serde_json::to_value(children.service.as_ref().unwrap()).unwrap()
    );
    assert_eq!(
        find("NetworkPolicy"),
        serde_json::to_value(&children.network_policy).unwrap()
    );
    let claims = items
        .iter()
        .filter(|i| {
            i["kind"] == "PersistentVolumeClaim"
                && i["metadata"]["labels"]["lucid.io/service"] == "api-gateway"
        })
        .count();
    assert_eq!(claims, children.claims.len());
    // Rendered in rollout order: the first phase's first service first.
    assert_eq!(items[0]["metadata"]["name"], "lucid-mongodb");

    let yaml = run(
        &docker_dir(),
        &["plan", "-f", out.to_str().unwrap(), "--render"],
    );
    assert!(
        stdout(&yaml).starts_with("---\napiVersion: apps/v1\nkind: Deployment\n"),
        "{}",
        stdout(&yaml)
    );
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_compose_file_given_to_plan_says_to_import_it_first() {
    let o = run(&docker_dir(), &["plan", "-f", "docker-compose.core.yml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("docker-compose.core.yml: document 1: a compose file, not manifests: run `kubectl lucid import` on it first"),
        "{}",
        stderr(&o)
    );
}
