//! Prints the operator's CRDs as one multi-document YAML stream: `cargo run --bin crdgen > crds/lucid.io.yaml`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    print!("{}", lucid_operator::api::crds_yaml()?);
    Ok(())
}
