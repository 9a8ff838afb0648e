//! The lucid-stack chart's values restate the design catalog (`../shared/lucid-catalog.yaml`):
//! this fails when they drift apart. Ports the catalog leaves open are the chart's choice.

use std::collections::BTreeMap;

use serde_yaml::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn ports(v: &Value) -> Vec<i64> {
    v.as_sequence()
        .map(|s| s.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default()
}

#[test]
fn the_stack_chart_has_the_catalogs_phases_services_dependencies_ports_and_networks() {
    let catalog_path = format!("{ROOT}/../shared/lucid-catalog.yaml");
    let Ok(catalog) = std::fs::read_to_string(&catalog_path) else {
        eprintln!("skipping: no catalog at {catalog_path}");
        return;
    };
    let catalog: Value = serde_yaml::from_str(&catalog).unwrap();
    let values: Value = serde_yaml::from_str(
        &std::fs::read_to_string(format!("{ROOT}/charts/lucid-stack/values.yaml")).unwrap(),
    )
    .unwrap();

    let chart_services: BTreeMap<String, &Value> = values["services"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_string(), s))
        .collect();
    let mut previous: Option<String> = None;
    let mut count = 0;
    let mut phases = catalog["phases"].as_sequence().unwrap().clone();
    phases.sort_by_key(|p| p["order"].as_i64());
    for phase in &phases {
        let name = phase["name"].as_str().unwrap();
        let chart_phase = values["phases"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("phase {name} missing"));
        assert_eq!(
            strings(&chart_phase["dependsOn"]),
            previous.iter().cloned().collect::<Vec<_>>(),
            "phase {name} order"
        );
        previous = Some(name.to_string());
        for svc in phase["services"].as_sequence().unwrap() {
            count += 1;
            let sname = svc["name"].as_str().unwrap();
            let chart = chart_services
                .get(sname)
                .unwrap_or_else(|| panic!("{sname} missing from the chart"));
            assert_eq!(chart["phase"].as_str(), Some(name), "{sname} phase");
            assert_eq!(
                strings(&chart["dependsOn"]),
                strings(&svc["dependsOn"]),
                "{sname} dependsOn"
            );
            if !svc["ports"].is_null() {
                assert_eq!(
                    ports(&chart["ports"]),
                    ports(&svc["ports"]),
                    "{sname} ports"
                );
                assert!(
                    chart["chosen"].is_null(),
                    "{sname}: port is from the catalog, not chosen"
                );
            } else {
                assert_eq!(
                    chart["chosen"].as_bool(),
                    Some(true),
                    "{sname}: a port the catalog lacks must be marked chosen"
                );
            }
            assert_eq!(
                chart["external"].as_bool().unwrap_or(false),
                svc["external"].as_bool().unwrap_or(false),
                "{sname} external"
            );
            assert_eq!(
                chart["network"].as_str(),
                svc["network"].as_str(),
                "{sname} network"
            );
        }
    }
    assert_eq!(count, 27);
    assert_eq!(chart_services.len(), 27);
}
