//! The CRD YAML is generated from the Rust types; these fail when a checked-in copy is stale.
//! Regenerate with `cargo run --bin crdgen > crds/lucid.io.yaml` and copy it into the chart.

use std::path::Path;

fn check(relative: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    let checked_in = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{relative}: {e}"));
    let generated = lucid_operator::api::crds_yaml().expect("CRDs serialise");
    assert!(
        checked_in == generated,
        "{relative} is stale: run `cargo run --bin crdgen > crds/lucid.io.yaml && cp crds/lucid.io.yaml charts/lucid-operator/crds/`"
    );
}

#[test]
fn crds_yaml_matches_the_rust_types() {
    check("crds/lucid.io.yaml");
}

#[test]
fn the_operator_chart_ships_the_same_crds() {
    check("charts/lucid-operator/crds/lucid.io.yaml");
}
