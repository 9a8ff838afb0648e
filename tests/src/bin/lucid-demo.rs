//! `cargo run -p lucid-e2e --bin lucid-demo`: brings up the local control plane, runs the
//! operator, applies the example stack from `crds/examples/`, plays the kubelet, and prints
//! what was created and the status. `--keep` leaves it all running (Ctrl-C to stop) and
//! prints a KUBECONFIG to use with kubectl.

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::{ApiResource, Discovery};
use kube::{Api, ResourceExt};
use lucid_e2e::{Kubelet, control_plane, install_crds};
use lucid_operator::reconcile::{self, Scope, Shared};

const NAMESPACE: &str = "lucid";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    lucid_e2e::init_tracing();
    let keep = std::env::args().any(|a| a == "--keep");
    let cp = control_plane();
    println!(
        "control plane: {} (KUBECONFIG={})",
        cp.server,
        cp.kubeconfig.display()
    );
    let client = cp.client().await;
    install_crds(&client).await;
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let body = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    ns.patch(
        NAMESPACE,
        &PatchParams::apply("lucid-demo"),
        &Patch::Apply(body),
    )
    .await?;

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(reconcile::run(
        client.clone(),
        Shared::standalone(),
        Scope::Cluster,
        async move {
            let _ = stopped.await;
        },
    ));
    let _kubelet = Kubelet::start(client.clone(), NAMESPACE, Duration::from_millis(500));

    let discovery = Discovery::new(client.clone()).run().await?;
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/examples");
    for file in [
        "phases.yaml",
        "environment.yaml",
        "foundation.yaml",
        "api-gateway.yaml",
    ] {
        let text = std::fs::read_to_string(format!("{examples}/{file}"))?;
        for doc in serde_saphyr::from_multiple::<serde_json::Value>(&text)
            .expect("YAML")
            .into_iter()
        {
            let value: serde_json::Value = doc;
            let gvk = GroupVersionKind::try_from(&serde_json::from_value::<kube::api::TypeMeta>(
                value.clone(),
            )?)?;
            let (resource, _) = discovery
                .resolve_gvk(&gvk)
                .ok_or("unknown kind in example")?;
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), NAMESPACE, &resource);
            let name = value["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            api.patch(
                &name,
                &PatchParams::apply("lucid-demo").force(),
                &Patch::Apply(&value),
            )
            .await?;
            println!("applied {} {name}", gvk.kind);
        }
    }

    // The kubelet stand-in takes 0.5 s per Deployment, so this catches the rollout midway.
    tokio::time::sleep(Duration::from_millis(700)).await;
    println!("\n--- 0.7 s after applying (rolling out) ---");
    print_table(&client, &discovery).await?;

    let services: Api<lucid_operator::api::LucidService> =
        Api::namespaced(client.clone(), NAMESPACE);
    for _ in 0..120 {
        let list = services.list(&Default::default()).await?;
        let phases: Api<lucid_operator::api::LucidPhase> =
            Api::namespaced(client.clone(), NAMESPACE);
        let phases_ready = phases
            .list(&Default::default())
            .await?
            .items
            .iter()
            .all(|p| {
                p.status.as_ref().is_some_and(|s| {
                    s.observed_generation == p.metadata.generation
                        && s.state.as_deref() == Some("Ready")
                })
            });
        if phases_ready && list.items.iter().all(lucid_operator::graph::service_ready) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!("\n--- rolled out ---");
    print_table(&client, &discovery).await?;

    if keep {
        println!(
            "\nrunning; try: KUBECONFIG={} kubectl -n {NAMESPACE} get lucidphases,lucidservices",
            cp.kubeconfig.display()
        );
        tokio::signal::ctrl_c().await?;
    }
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), operator).await;
    Ok(())
}

async fn print_table(
    client: &kube::Client,
    discovery: &Discovery,
) -> Result<(), Box<dyn std::error::Error>> {
    let phases: Api<lucid_operator::api::LucidPhase> = Api::namespaced(client.clone(), NAMESPACE);
    println!(
        "\n{:<14} {:<7} {:<12} WAITING-ON",
        "LUCIDPHASE", "READY", "STATUS"
    );
    for p in phases.list(&Default::default()).await? {
        let s = p.status.clone().unwrap_or_default();
        println!(
            "{:<14} {:<7} {:<12} {}",
            p.name_any(),
            s.ready.unwrap_or_default(),
            s.state.unwrap_or_default(),
            s.waiting_on.unwrap_or_default()
        );
    }
    let services: Api<lucid_operator::api::LucidService> =
        Api::namespaced(client.clone(), NAMESPACE);
    println!(
        "\n{:<16} {:<12} {:<6} {:<12} MESSAGE",
        "LUCIDSERVICE", "PHASE", "READY", "STATUS"
    );
    for s in services.list(&Default::default()).await? {
        let st = s.status.clone().unwrap_or_default();
        let msg = st
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.message.clone())
            .unwrap_or_default();
        println!(
            "{:<16} {:<12} {:<6} {:<12} {}",
            s.name_any(),
            s.spec.phase,
            st.ready.unwrap_or_default(),
            st.state.unwrap_or_default(),
            msg
        );
    }
    println!("\ncreated by the operator:");
    for (group, version, kind) in [
        ("apps", "v1", "Deployment"),
        ("", "v1", "Service"),
        ("", "v1", "PersistentVolumeClaim"),
        ("networking.k8s.io", "v1", "NetworkPolicy"),
    ] {
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let Some((resource, _)) = discovery.resolve_gvk(&gvk) else {
            continue;
        };
        let resource: ApiResource = resource;
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), NAMESPACE, &resource);
        let names: Vec<String> = api
            .list(&Default::default())
            .await?
            .items
            .iter()
            .map(|o| o.name_any())
            .collect();
        println!("  {kind:<22} {}", names.join(", "));
    }
    Ok(())
}
