//! `kubectl lucid retry <service>`: asks the operator to try a rolled-back update again.
//! It sets the `lucid.io/retry` annotation to a new value; the operator treats an attempt
//! as new when the annotation differs from the one recorded when it failed. The spec, which
//! GitOps tools own, is never touched.

use kube::Api;
use kube::api::{Patch, PatchParams};
use lucid_operator::api::LucidService;
use lucid_operator::upgrade::RETRY_ANNOTATION;

use crate::cli::{KubeArgs, RetryArgs};
use crate::error::{Error, Result};

pub fn run(k: &KubeArgs, args: &RetryArgs) -> Result<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Kubeconfig(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        let (client, namespace) = crate::status::client(k).await?;
        let api: Api<LucidService> = Api::namespaced(client, &namespace);
        // A value never used before: the time, to the nanosecond.
        let value = jiff::Timestamp::now().to_string();
        let patch = serde_json::json!({"metadata": {"annotations": {RETRY_ANNOTATION: value}}});
        let params = PatchParams {
            field_manager: Some("kubectl-lucid".into()),
            ..Default::default()
        };
        match api
            .patch(&args.service, &params, &Patch::Merge(&patch))
            .await
        {
            Ok(ls) => {
                let rolled_back = ls
                    .status
                    .as_ref()
                    .and_then(|s| s.rollback.as_ref())
                    .map(|r| {
                        format!(
                            " (generation {} was rolled back: {})",
                            r.failed_generation, r.reason
                        )
                    })
                    .unwrap_or_default();
                println!(
                    "lucidservice/{} in {namespace}: retry asked{rolled_back}",
                    args.service
                );
                Ok(0)
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Err(Error::Kubeconfig(format!(
                "no LucidService {} in namespace {namespace}",
                args.service
            ))),
            Err(e) => Err(Error::Kube(e)),
        }
    })
}
