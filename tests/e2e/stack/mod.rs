//! What the stack tests share: the chart rendered by the real Helm engine, a check of custom
//! resources against their CRD's schema, and an evaluator of NetworkPolicies.

pub mod crd_schema;
pub mod policy;

use lucid_operator::api::LucidService;
use serde_json::Value;

pub const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const HELM: &str = "/var/cache/lucid-tools/kubectl-v37-2.0.0/helm";
pub const NAMESPACE: &str = "lucid";

fn helm() -> String {
    std::env::var("LUCID_HELM")
        .ok()
        .or_else(|| {
            std::path::Path::new(HELM)
                .exists()
                .then(|| HELM.to_string())
        })
        .expect("helm: run tests/harness/install-tools.sh, or set LUCID_HELM")
}

/// `helm <args> charts/lucid-stack`: Ok(stdout) or Err(stderr).
pub fn helm_run(subcommand: &[&str], sets: &[&str]) -> Result<String, String> {
    let chart = format!("{ROOT}/charts/lucid-stack");
    let mut args: Vec<&str> = subcommand.to_vec();
    args.push(&chart);
    for set in sets {
        args.extend(["--set", set]);
    }
    let out = std::process::Command::new(helm())
        .args(&args)
        .output()
        .expect("helm runs");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).expect("utf8"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `helm template` of the stack chart into namespace lucid, with `--set` overrides.
pub fn template(sets: &[&str]) -> Result<Vec<Value>, String> {
    let text = helm_run(&["template", "lucid", "-n", NAMESPACE], sets)?;
    Ok(serde_saphyr::from_multiple::<serde_json::Value>(&text)
        .expect("YAML")
        .into_iter()
        .filter(|v: &Value| !v.is_null())
        .collect())
}

/// The rendered documents of one kind.
pub fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect()
}

/// The rendered LucidServices as the operator reads them, with the uid the API server
/// would give them (rendering needs one for owner references).
pub fn lucid_services(docs: &[Value]) -> Vec<LucidService> {
    of_kind(docs, "LucidService")
        .into_iter()
        .map(|d| {
            let mut ls: LucidService =
                serde_json::from_value(d.clone()).expect("a LucidService the operator reads");
            ls.metadata.uid = Some(format!("uid-{}", ls.metadata.name.as_deref().unwrap()));
            ls
        })
        .collect()
}

pub fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().expect("metadata.name")
}
