//! A call the API server fails shows on the LucidService: its Service Cluster IP range is
//! made tiny here and filled, and the next LucidService says which child failed, the API
//! server's message and when it retries; freeing an address clears it.

use std::time::Duration;

use lucid_e2e::{TestEnv, condition, is_ready};
use lucid_operator::api::LucidService;

const PHASE: &str =
    "apiVersion: lucid.io/v1alpha1\nkind: LucidPhase\nmetadata: {name: lab}\nspec: {}\n";

fn service(name: &str) -> String {
    format!(
        "apiVersion: lucid.io/v1alpha1\nkind: LucidService\nmetadata: {{name: {name}}}\nspec:\n  image: {{repository: lucid/{name}, tag: \"1\"}}\n  phase: lab\n  ports: [{{name: http, port: 8080}}]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_service_ip_range_is_reported_on_the_service_and_clears_when_freed() {
    // A /29: 6 addresses, one taken by the `kubernetes` Service.
    // SAFETY: set before this binary's control plane (the only reader) starts.
    unsafe { std::env::set_var("LUCID_E2E_SERVICE_CIDR", "10.97.0.0/29") };
    let env = TestEnv::start("iprange", Duration::from_millis(50)).await;
    env.apply_yaml::<lucid_operator::api::LucidPhase>(PHASE)
        .await
        .expect("phase");
    let names: Vec<String> = (1..=6).map(|i| format!("svc-{i}")).collect();
    for name in &names[..5] {
        env.apply_yaml::<LucidService>(&service(name))
            .await
            .expect("apply");
        env.wait_service(name, "Ready while addresses last", is_ready)
            .await;
    }
    let last = &names[5];
    env.apply_yaml::<LucidService>(&service(last))
        .await
        .expect("apply");
    let failing = env
        .wait_service(last, "Degraded ApplyFailed", |ls| {
            ls.status
                .as_ref()
                .and_then(|s| condition(&s.conditions, "Degraded"))
                .is_some_and(|c| c.0 == "True" && c.1 == "ApplyFailed")
        })
        .await;
    let status = failing.status.expect("status");
    assert_eq!(status.state.as_deref(), Some("Degraded"));
    let (_, _, message) = condition(&status.conditions, "Degraded").expect("Degraded");
    println!("{last}: Degraded ApplyFailed: {message}");
    for part in [&format!("Service {last}"), "range is full", "retrying in"] {
        assert!(message.contains(part), "{part:?} missing from {message:?}");
    }

    // Free an address: the retry gets through and the reason goes.
    let services: kube::Api<LucidService> = env.api();
    services
        .delete(&names[0], &Default::default())
        .await
        .expect("delete");
    // Its Service goes with it by garbage collection, whose pace is the collector's (it
    // finds a new CRD's owners by periodic discovery): deleted here, the address is free
    // now, and the test measures the operator's retry, not the collector.
    let children: kube::Api<k8s_openapi::api::core::v1::Service> = env.api();
    match children.delete(&names[0], &Default::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => panic!("delete Service {}: {e}", names[0]),
    }
    let ready = env
        .wait_service(last, "Ready once an address is free", is_ready)
        .await;
    let degraded =
        condition(&ready.status.expect("status").conditions, "Degraded").map(|c| c.0.to_string());
    assert_eq!(degraded.as_deref(), Some("False"));
    env.stop().await;
}
