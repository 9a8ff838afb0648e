//! What the operator does at start (`main` calls `check::crds_served` before anything else):
//! on an API server without the CRDs it stops with a message that says what to do; once the
//! CRDs are installed it starts.

use lucid_e2e::{control_plane, install_crds};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_crds_the_operator_says_what_to_do_and_with_them_it_starts() {
    let client = control_plane().client().await;
    let error = lucid_operator::check::crds_served(&client)
        .await
        .expect_err("no CRDs on a fresh API server");
    let message = error.to_string();
    println!("{message}");
    for part in [
        "lucidservices and lucidphases",
        "helm upgrade --install",
        "crds/lucid.io.yaml",
    ] {
        assert!(message.contains(part), "{part:?} missing from {message:?}");
    }
    install_crds(&client).await;
    lucid_operator::check::crds_served(&client)
        .await
        .expect("the CRDs are served");
}
