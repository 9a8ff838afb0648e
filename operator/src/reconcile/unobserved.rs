//! Missing, or not yet seen? The watches of phases and of services run apart, so one cache
//! can lag the other: a LucidPhase created a moment before its first service may not be in
//! the cache yet when that service is reconciled. Before a user is told to create
//! something, the API server is asked; what it has and the cache has not is waited for
//! (its watch event wakes whoever named it), not reported as Degraded.
//!
//! The lookup only spares a moment's false report, so it never makes things worse: only a
//! cache miss asks (a namespace whose graph is whole costs no request), an object the
//! cache holds but cannot read is not asked about (seen, not missing: the report stands),
//! and a failed lookup (a Role without `get`) leaves the cache's word standing.

use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use kube::core::ObjectMeta;
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use super::context::Context;
use crate::graph::NamedObject;
use crate::status::{ConditionType, Reason};

/// How soon a service or phase waiting for a watch event looks again, in case the event
/// never comes (a watch down and not yet re-listed).
pub const RECHECK: Duration = Duration::from_secs(5);

/// The first of `references` (missing from the snapshot) that the API server has.
pub async fn first_unobserved<'r>(
    ctx: &Context,
    namespace: &str,
    references: &[NamedObject<'r>],
) -> Option<NamedObject<'r>> {
    for reference in references {
        let lookup = match reference {
            NamedObject::Phase(name) => look_up(ctx, &ctx.caches.phases, namespace, name).await,
            NamedObject::Service(name) => look_up(ctx, &ctx.caches.services, namespace, name).await,
        };
        let Some(lookup) = lookup else { continue };
        match lookup {
            Ok(Some(found)) if found.deletion_timestamp.is_none() => {
                return Some(*reference);
            }
            Ok(_) => {}
            Err(error) => {
                ctx.metrics.api_error("get", &error);
                tracing::warn!(
                    name = %reference.name(),
                    %namespace,
                    error = %error,
                    "cannot look up what the cache misses; reporting it missing"
                );
                return None;
            }
        }
    }
    None
}

/// What the API server has of `name`, unless the cache holds it (seen, if unreadable: not
/// missing, so not asked about).
async fn look_up<K>(
    ctx: &Context,
    cache: &Store<DeserializeGuard<K>>,
    namespace: &str,
    name: &str,
) -> Option<Result<Option<ObjectMeta>, kube::Error>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + 'static,
{
    if cache.get(&ObjectRef::new(name).within(namespace)).is_some() {
        return None;
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    Some(
        api.get_metadata_opt(name)
            .await
            .map(|found| found.map(|o| o.metadata)),
    )
}

/// Whether `conditions` already say `reason` about the current `generation`: the user has
/// been told, and asking again on every wake-up would cost a request each time.
pub fn already_reported(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    observed_generation: Option<i64>,
    generation: Option<i64>,
    reason: Reason,
) -> bool {
    observed_generation == generation
        && conditions.iter().any(|c| {
            c.type_ == ConditionType::Degraded.as_str() && c.status == "True" && c.reason == reason
        })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    use super::already_reported;
    use crate::status::Reason;

    fn degraded(reason: &str) -> Condition {
        Condition {
            type_: "Degraded".into(),
            status: "True".into(),
            reason: reason.into(),
            message: String::new(),
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
            observed_generation: None,
        }
    }

    #[test]
    fn a_missing_reference_is_looked_up_until_the_status_says_so_for_this_generation() {
        let said = [degraded("PhaseNotFound")];
        assert!(already_reported(
            &said,
            Some(2),
            Some(2),
            Reason::PhaseNotFound
        ));
        // Said of an older spec, or another problem: asked again.
        assert!(!already_reported(
            &said,
            Some(1),
            Some(2),
            Reason::PhaseNotFound
        ));
        assert!(!already_reported(
            &said,
            Some(2),
            Some(2),
            Reason::DependencyNotFound
        ));
        let mut cleared = degraded("PhaseNotFound");
        cleared.status = "False".into();
        assert!(!already_reported(
            &[cleared],
            Some(2),
            Some(2),
            Reason::PhaseNotFound
        ));
        assert!(!already_reported(&[], None, Some(1), Reason::PhaseNotFound));
    }
}
