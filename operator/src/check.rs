//! `lucid-operator check`: what the operator chart's `helm test` hook runs, from the operator's
//! own image under its own ServiceAccount: the operator answers on its HTTP port, and both
//! CRDs are served and readable with the chart's RBAC in every watched namespace.

use std::time::Duration;

use kube::api::ListParams;
use kube::{Api, Client, Resource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api::{LucidPhase, LucidService};
use crate::reconcile::Scope;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cannot reach the operator at {address}: {source}")]
    Unreachable {
        address: String,
        source: std::io::Error,
    },
    #[error("the operator at {address} answered {status_line:?} on {path}")]
    NotReady {
        address: String,
        path: String,
        status_line: String,
    },
    #[error(
        "cannot list {kind} in {scope}: {source} (are the CRDs installed and the chart's RBAC in place?)"
    )]
    NotServed {
        kind: &'static str,
        scope: String,
        source: kube::Error,
    },
    #[error("no Kubernetes client: {0}")]
    Client(#[from] kube::Error),
    #[error(
        "the API server does not serve {missing} ({api_version}): the CRDs are not installed \
         or are out of date. Install or upgrade the operator chart (`helm upgrade --install \
         lucid-operator charts/lucid-operator`, which installs the CRDs), or `kubectl apply -f \
         crds/lucid.io.yaml` from this version of the repository, then start the operator again"
    )]
    CrdsMissing {
        missing: String,
        api_version: String,
    },
    #[error("cannot ask the API server which resources it serves: {0}")]
    Discovery(kube::Error),
}

/// At start: both CRDs must be served, or the operator would wait for ever while looking
/// healthy. Discovery is open to every authenticated client, so this needs no extra RBAC.
pub async fn crds_served(client: &Client) -> Result<(), CheckError> {
    // An API server that is down or restarting is waited for (a minute), not a reason to
    // exit: exiting would put the pod in a crash loop that outlasts the outage.
    let patience = std::time::Instant::now() + Duration::from_secs(60);
    let api_version = LucidService::api_version(&()).into_owned();
    let served = loop {
        match client.list_api_group_resources(&api_version).await {
            Ok(list) => break list.resources.into_iter().map(|r| r.name).collect(),
            Err(kube::Error::Api(status)) if status.code == 404 => break Vec::new(),
            Err(error) => {
                let transient = match &error {
                    kube::Error::Api(status) => status.code >= 500,
                    _ => true,
                };
                if !transient || std::time::Instant::now() > patience {
                    return Err(CheckError::Discovery(error));
                }
                tracing::warn!(error = %error, "cannot reach the API server yet; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let missing: Vec<&str> = ["lucidservices", "lucidphases"]
        .into_iter()
        .filter(|r| !served.iter().any(|s| s == r))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CheckError::CrdsMissing {
            missing: missing.join(" and "),
            api_version,
        })
    }
}

/// `address` is `host:port` of the operator's metrics Service (empty: skip the HTTP check).
pub async fn run(address: &str, scopes: &[Scope]) -> Result<(), CheckError> {
    if !address.is_empty() {
        http_ok(address, "/readyz").await?;
        println!("operator at {address} is ready");
    }
    let client = Client::try_default().await?;
    for scope in scopes {
        let (services, phases, name): (Api<LucidService>, Api<LucidPhase>, String) = match scope {
            Scope::Cluster => (
                Api::all(client.clone()),
                Api::all(client.clone()),
                "the cluster".into(),
            ),
            Scope::Namespace(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
                format!("namespace {ns}"),
            ),
        };
        let one = ListParams::default().limit(1);
        let not_served = |kind| {
            let scope = name.clone();
            move |source| CheckError::NotServed {
                kind,
                scope,
                source,
            }
        };
        services
            .list(&one)
            .await
            .map_err(not_served("lucidservices"))?;
        phases.list(&one).await.map_err(not_served("lucidphases"))?;
        println!("lucidservices and lucidphases are served in {name}");
    }
    Ok(())
}

/// A plain HTTP/1.0 GET: the image has no curl, and this needs no HTTP client library.
async fn http_ok(address: &str, path: &str) -> Result<(), CheckError> {
    let unreachable = |source| CheckError::Unreachable {
        address: address.to_string(),
        source,
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes())
            .await?;
        let mut response = Vec::new();
        stream.take(4096).read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| unreachable(std::io::ErrorKind::TimedOut.into()))?
        .map_err(unreachable)?;
    let text = String::from_utf8_lossy(&response);
    let status_line = text.lines().next().unwrap_or_default().to_string();
    if status_line.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(CheckError::NotReady {
            address: address.to_string(),
            path: path.to_string(),
            status_line,
        })
    }
}
