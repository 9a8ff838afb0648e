//! What runs on the real cluster, shared by its tests and the `lucid-cluster` command: the
//! operator installed by Helm as a user would, and the session pipeline as LucidServices.

use std::process::Command;
use std::sync::OnceLock;

use super::RealCluster;

pub const OPERATOR_NAMESPACE: &str = "lucid-system";
/// The signing key in the pipeline's `lucid-secrets` (a test value, not a secret).
pub const JWT_KEY: &str = "real-cluster-test-signing-key-0123456789";
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// lucid-auth-service's private key in the pipeline's `lucid-auth-secrets` (Ed25519,
/// PKCS#8 PEM; a test value, not a secret), and the public key set the gateway gets
/// (`lucid-auth-service --public-keys` of it).
pub const AUTH_SIGNING_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEILnL9FforjtuN6+Qa51koU6vUovmd/1GP8zCPDa/0+zR
-----END PRIVATE KEY-----";
pub const AUTH_PUBLIC_KEYS: &str = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"SlF7YjNV0aF0uvojzDkjXtXCM3F233abkYNgGYn4i18","x":"t2ZIWiPz3sT-MmakPEaA1e4lWam7NmT4Uxsj6BVwKZU","alg":"EdDSA","use":"sig"}]}"#;
/// The initial administrator the auth service creates (test values, not secrets): the
/// real-cluster session logs in as it through the api-gateway.
pub const ADMIN_USERNAME: &str = "admin";
pub const ADMIN_PASSWORD: &str = "real-cluster-test-admin-password";

/// The six LucidServices of the session pipeline, in rollout order.
pub const PIPELINE: [&str; 6] = [
    "lucid-mongodb",
    "lucid-redis",
    "lucid-auth-service",
    "api-gateway",
    "session-storage",
    "session-recorder",
];

pub fn host_arch() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    }
}

/// `helm install` of `charts/lucid-operator` with its defaults (the image `images/build.sh`
/// makes), once per process; waits for the operator to be Ready by its probes.
pub fn install_operator(cluster: &RealCluster) {
    // A failed install fails every later caller with the same message, not a second install.
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let installed = INSTALLED.get_or_init(|| {
        let mut helm = cluster.helm();
        helm.args(["install", "lucid-operator"])
            .arg(format!("{ROOT}/charts/lucid-operator"))
            .args(["-n", OPERATOR_NAMESPACE, "--create-namespace"])
            // Each reconcile's outcome in the operator's log (kept after teardown).
            .args(["--set", "logLevel=info\\,lucid_operator=debug"])
            .args(["--wait", "--timeout", "3m"]);
        let out = helm.output().expect("helm");
        if out.status.success() {
            return Ok(());
        }
        let describe = cluster
            .kubectl()
            .args(["-n", OPERATOR_NAMESPACE, "describe", "pods"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        Err(format!(
            "helm install failed:\n{}\n{}\noperator pods:\n{describe}\nkubelet:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            cluster.log_tail("kubelet", 30)
        ))
    });
    if let Err(message) = installed {
        panic!("{message}");
    }
}

pub use crate::create_namespace;

/// LucidService documents with `nodeSelector` set to this node's architecture: the default
/// (`arm64`, for Pis) would leave them unschedulable here, and rightly so.
pub fn for_this_node(text: &str) -> String {
    let mut docs = Vec::new();
    for doc in serde_saphyr::from_multiple::<serde_json::Value>(text)
        .expect("YAML")
        .into_iter()
    {
        let mut value = doc;
        if value.is_null() {
            continue;
        }
        if value["kind"].as_str() == Some("LucidService")
            && let Some(spec) = value.get_mut("spec").and_then(|s| s.as_object_mut())
        {
            let mut selector = serde_json::Map::new();
            selector.insert("kubernetes.io/arch".into(), host_arch().into());
            spec.insert("nodeSelector".into(), selector.into());
        }
        docs.push(serde_saphyr::to_string(&value).expect("yaml"));
    }
    docs.join("---\n")
}

/// Redis and the MongoDB wire-protocol server, as LucidServices like every other service:
/// hardened by the operator, gated by phase, probed over TCP. Their images are the
/// harness's (`tests/harness/build-node-images.sh`): Redis built from Debian's source with
/// libc malloc, and nx-27017, because no real mongod is packaged.
pub const DATABASES: &str = r#"
apiVersion: lucid.io/v1alpha1
kind: LucidService
metadata: {name: lucid-mongodb}
spec:
  image: {repository: lucid/mongo-wire, tag: harness, pullPolicy: Never}
  phase: foundation
  ports: [{name: mongodb, port: 27017}]
  args: [--host, 0.0.0.0, -p, "27017", --data-dir, /app/data, --log-file, /app/logs/nx-27017.log, --pid-file, /tmp/nx-27017.pid]
  healthCheck: {kind: Tcp, intervalSeconds: 5}
---
apiVersion: lucid.io/v1alpha1
kind: LucidService
metadata: {name: lucid-redis}
spec:
  image: {repository: lucid/redis, tag: harness, pullPolicy: Never}
  phase: foundation
  ports: [{name: redis, port: 6379}]
  # AOF, fsynced per write: the recorder acknowledges an upload once its chunk is in the
  # session's list in Redis (services/README.md, durability).
  args: [--port, "6379", --bind, 0.0.0.0, --dir, /app/data, --protected-mode, "no", --appendonly, "yes", --appendfsync, always]
  healthCheck: {kind: Tcp, intervalSeconds: 5}
"#;

/// The pipeline's environment: the foundation ConfigMap, the service key's Secret, the
/// auth service's Secret (private key, initial administrator) and the public keys'
/// ConfigMap for the gateway.
pub fn environment() -> String {
    let indented_key = AUTH_SIGNING_KEY.replace('\n', "\n    ");
    format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: lucid-env-foundation}}
data:
  MONGODB_URL: mongodb://lucid-mongodb:27017/lucid?directConnection=true
  REDIS_URL: redis://lucid-redis:6379/0
---
apiVersion: v1
kind: Secret
metadata: {{name: lucid-secrets}}
type: Opaque
stringData:
  JWT_SECRET_KEY: {JWT_KEY}
---
apiVersion: v1
kind: Secret
metadata: {{name: lucid-auth-secrets}}
type: Opaque
stringData:
  AUTH_SIGNING_KEY: |
    {indented_key}
  LUCID_ADMIN_PASSWORD: {ADMIN_PASSWORD}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: lucid-auth-public-keys}}
data:
  AUTH_PUBLIC_KEYS: '{AUTH_PUBLIC_KEYS}'
"#
    )
}

pub fn repo_file(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Everything the session pipeline needs in one namespace: environment, the four phases,
/// the databases and `services/deploy/lucidservices.yaml`, all for this node.
pub fn pipeline_documents() -> String {
    [
        environment(),
        repo_file("crds/examples/phases.yaml"),
        for_this_node(DATABASES),
        for_this_node(&repo_file("services/deploy/lucidservices.yaml")),
    ]
    .join("\n---\n")
}

/// The services workspace's `record_session` example, built for this machine.
pub fn record_session_binary() -> String {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        let manifest = format!("{ROOT}/services/Cargo.toml");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--locked", "--quiet", "--manifest-path", &manifest])
            .args(["-p", "lucid-services", "--example", "record_session"])
            .status()
            .expect("cargo");
        assert!(status.success(), "build the record_session example");
        // Where cargo put it: CARGO_TARGET_DIR when set (a shared target directory), else
        // the services workspace's own.
        let target =
            std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| format!("{ROOT}/services/target"));
        format!("{target}/debug/examples/record_session")
    })
    .clone()
}
