//! The one status writer, for services and phases alike: server-side apply of the status
//! subresource with the operator's field manager, asked of the fence first.

use k8s_openapi::NamespaceResourceScope;
use kube::api::Patch;
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::apply::apply_params;
use super::context::Context;
use crate::error::{Error, Step};

/// Writes `status` to `name`'s status; returns the object the API server stored, or None
/// when it was deleted while the reconcile ran (nothing left to describe). The body names
/// the kind's own apiVersion and kind: server-side apply needs them.
pub(super) async fn write<K>(
    ctx: &Context,
    namespace: &str,
    name: &str,
    status: &impl Serialize,
) -> Result<Option<K>, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    ctx.leadership.ensure()?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    match api
        .patch_status(name, &apply_params(), &Patch::Apply(body))
        .await
    {
        Ok(stored) => Ok(Some(stored)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(error) => {
            ctx.metrics.api_error("patch", &error);
            Err(Error::Api {
                step: Step::WriteStatus,
                source: error,
            })
        }
    }
}
