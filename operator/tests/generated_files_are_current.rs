//! The CRD YAML is generated from the Rust types; these fail when a checked-in copy is stale.
//! Regenerate both with `cargo run --bin crdgen`.

use std::path::Path;

use lucid_operator::api::{CHART_CRDS_PATH, CRDS_PATH, crds_helm_template, crds_yaml};

fn check(relative: &str, generated: String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    let checked_in = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{relative}: {e}"));
    assert!(
        checked_in == generated,
        "{relative} is stale: run `cargo run --bin crdgen`"
    );
}

#[test]
fn crds_yaml_matches_the_rust_types() {
    check(CRDS_PATH, crds_yaml().expect("CRDs serialise"));
}

#[test]
fn the_operator_chart_templates_the_same_crds() {
    check(
        CHART_CRDS_PATH,
        crds_helm_template().expect("CRDs serialise as a template"),
    );
}
