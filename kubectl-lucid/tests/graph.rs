//! `kubectl lucid plan -o dot` and `-o svg` over the stack chart's 27 services (rendered by the
//! real Helm engine): golden files, and every `dependsOn` of the chart and of the catalog
//! drawn. Regenerate the goldens with `LUCID_UPDATE_GOLDEN=1 cargo test -p kubectl-lucid
//! --test graph`; the test fails while they are stale.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;

const HELM: &str = "/var/cache/lucid-tools/kubectl-v37-2.0.0/helm";

/// The stack chart rendered into one manifest file, as a user would feed it to `plan`.
fn stack_manifests(test: &str) -> std::path::PathBuf {
    let helm = std::env::var("LUCID_HELM")
        .ok()
        .or_else(|| Path::new(HELM).exists().then(|| HELM.to_string()))
        .expect("helm: run tests/harness/install-tools.sh, or set LUCID_HELM");
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/lucid-stack");
    let o = std::process::Command::new(helm)
        .args(["template", "lucid", "-n", "lucid"])
        .arg(&chart)
        .output()
        .expect("helm runs");
    assert!(o.status.success(), "helm template: {}", stderr(&o));
    let dir = scratch(test);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("stack.yaml");
    std::fs::write(&file, &o.stdout).unwrap();
    file
}

/// (dependency, dependent) for every `dependsOn` in the rendered chart.
fn chart_edges(file: &Path) -> BTreeSet<(String, String)> {
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&std::fs::read_to_string(file).unwrap()).unwrap();
    let mut edges = BTreeSet::new();
    for d in docs.iter().filter(|d| d["kind"] == "LucidService") {
        let name = d["metadata"]["name"].as_str().unwrap().to_string();
        for dep in d["spec"]["dependsOn"].as_array().into_iter().flatten() {
            edges.insert((dep.as_str().unwrap().to_string(), name.clone()));
        }
    }
    edges
}

/// The catalog's edges, when the shared catalog is beside the repository.
fn catalog_edges() -> Option<BTreeSet<(String, String)>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/lucid-catalog.yaml");
    let text = std::fs::read_to_string(&path).ok()?;
    let catalog: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let mut edges = BTreeSet::new();
    for phase in catalog["phases"].as_array().unwrap() {
        for s in phase["services"].as_array().unwrap() {
            let name = s["name"].as_str().unwrap();
            for dep in s["dependsOn"].as_array().into_iter().flatten() {
                edges.insert((dep.as_str().unwrap().to_string(), name.to_string()));
            }
        }
    }
    Some(edges)
}

fn plan(file: &Path, format: &str) -> String {
    let o = run(
        file.parent().unwrap(),
        &["plan", "-f", file.to_str().unwrap(), "-o", format],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    stdout(&o)
}

#[test]
fn the_stack_charts_graph_matches_the_golden_dot_and_svg() {
    let file = stack_manifests("golden");
    let dot = plan(&file, "dot");
    let svg = plan(&file, "svg");
    golden("stack.dot", &dot);
    golden("stack.svg", &svg);
    // The docs show the same picture.
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/stack-plan.svg");
    if std::env::var_os("LUCID_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(docs.parent().unwrap()).unwrap();
        std::fs::write(&docs, &svg).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&docs).unwrap_or_default(),
        svg,
        "{} is stale: run with LUCID_UPDATE_GOLDEN=1",
        docs.display()
    );
}

#[test]
fn every_depends_on_of_the_chart_and_the_catalog_is_drawn() {
    let file = stack_manifests("edges");
    let dot = plan(&file, "dot");
    let svg = plan(&file, "svg");
    let services = svg.matches("<g class=\"node phase\"").count();
    assert_eq!(services, 27, "the stack's 27 services");
    let mut edges = chart_edges(&file);
    assert!(edges.len() > 70, "{}", edges.len());
    match catalog_edges() {
        Some(catalog) => {
            assert_eq!(
                catalog, edges,
                "the chart's dependsOn are the catalog's (stack_matches_catalog holds the rest)"
            );
            edges.extend(catalog);
        }
        None => eprintln!("no shared catalog beside the repository: chart edges only"),
    }
    let drawn = svg.matches("<path class=\"edge").count();
    assert_eq!(drawn, edges.len(), "one path per edge, no more");
    for (from, to) in &edges {
        assert!(
            svg.contains(&format!(
                "<path class=\"edge\" data-from=\"{from}\" data-to=\"{to}\""
            )),
            "SVG lacks {from} -> {to}"
        );
        assert!(
            dot.contains(&format!("  \"{from}\" -> \"{to}\";\n")),
            "DOT lacks {from} -> {to}"
        );
    }
}

#[test]
fn render_with_a_picture_format_is_refused() {
    let file = stack_manifests("render");
    let o = run(
        file.parent().unwrap(),
        &[
            "plan",
            "-f",
            file.to_str().unwrap(),
            "--render",
            "-o",
            "svg",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("use -o yaml or -o json"),
        "{}",
        stderr(&o)
    );
}
