//! Writes the operator's CRDs where they are checked in: `crds/lucid.io.yaml` (plain YAML, for
//! `kubectl apply`) and the operator chart's `templates/crds.yaml` (the same, templated).
//! Run from anywhere: `cargo run --bin crdgen`.

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let plain = root.join(lucid_operator::api::CRDS_PATH);
    let chart = root.join(lucid_operator::api::CHART_CRDS_PATH);
    std::fs::write(&plain, lucid_operator::api::crds_yaml()?)?;
    std::fs::write(&chart, lucid_operator::api::crds_helm_template()?)?;
    println!("wrote {} and {}", plain.display(), chart.display());
    Ok(())
}
