//! The Grafana dashboard shipped in the operator chart queries only metrics the operator
//! exports: renaming a metric without the dashboard fails here.

use std::collections::BTreeSet;

#[test]
fn every_metric_the_dashboard_queries_is_exported() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/lucid-operator/dashboards/lucid-operator.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("JSON");
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for (i, _) in expr.match_indices("lucid_operator_") {
                let name: String = expr[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                queried.insert(name);
            }
        }
    }
    assert!(queried.len() >= 6, "the dashboard queries {queried:?}");
    // A family shows once it has a sample: one of each.
    let metrics = lucid_operator::metrics::Metrics::default();
    metrics.reconcile_started("lucidservice").finish("ok");
    metrics.failed("lucidservice", "ApplyFailed");
    metrics.api_error_code("patch", 500);
    metrics.phase("lucid", "core", 1, 1);
    let exported = metrics.encode();
    for name in &queried {
        let family = ["_bucket", "_count", "_sum", "_total"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        assert!(
            exported.contains(&format!("# TYPE {family} ")),
            "the dashboard queries {name}, which the operator does not export:\n{exported}"
        );
    }
}
