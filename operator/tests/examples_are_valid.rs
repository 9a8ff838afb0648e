//! Every LucidService and LucidPhase example users copy parses as the types say and passes
//! the operator's own checks (the API server's schema checks run in the e2e tests).

use lucid_operator::api::{LucidPhase, LucidService};

fn documents(relative: &str) -> Vec<serde_json::Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{relative}: {e}"));
    serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

#[test]
fn example_resources_parse_and_validate() {
    let mut services = 0;
    for file in [
        "crds/examples/phases.yaml",
        "crds/examples/foundation.yaml",
        "crds/examples/api-gateway.yaml",
        "services/deploy/lucidservices.yaml",
    ] {
        for doc in documents(file) {
            match doc["kind"].as_str() {
                Some("LucidService") => {
                    let ls: LucidService =
                        serde_json::from_value(doc).unwrap_or_else(|e| panic!("{file}: {e}"));
                    assert_eq!(
                        lucid_operator::validate::problems(&ls),
                        Vec::<String>::new(),
                        "{file}"
                    );
                    services += 1;
                }
                Some("LucidPhase") => drop(
                    serde_json::from_value::<LucidPhase>(doc)
                        .unwrap_or_else(|e| panic!("{file}: {e}")),
                ),
                other => panic!("{file}: unexpected kind {other:?}"),
            }
        }
    }
    assert!(services >= 6);
}
