//! What every reconcile of either kind goes through: the leader check, one span, one timer,
//! the metrics of how it ended, and one error policy with a backoff per object.

use std::future::Future;
use std::sync::Arc;

use kube::Resource;
use kube::runtime::controller::Action;
use tracing::Instrument;

use super::context::Context;
use crate::error::Error;

/// How one reconcile ended, for the controller, the metrics and the log.
pub(super) struct Reconciled {
    pub action: Action,
    /// The state written to status (`Ready`, `Waiting`, ...), or what was done instead.
    pub outcome: String,
    /// Why it is retrying, when an API call failed and the failure is shown on the object.
    pub retrying: Option<String>,
}

impl Reconciled {
    pub fn done(action: Action, outcome: impl Into<String>) -> Self {
        Reconciled {
            action,
            outcome: outcome.into(),
            retrying: None,
        }
    }
}

/// Runs `reconcile` for `object` on the leader only (a standby keeps its caches warm and
/// writes nothing; leading re-runs everything), inside a span that says what it was about,
/// how it ended and how long it took, and counts it under `controller`.
pub(super) async fn instrumented<K>(
    controller: &'static str,
    object: &K,
    ctx: &Context,
    reconcile: impl Future<Output = Result<Reconciled, Error>>,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
{
    if !ctx.leadership.is_leader() {
        return Ok(Action::await_change());
    }
    let meta = object.meta();
    let span = tracing::info_span!(
        "reconcile",
        kind = %K::kind(&()),
        namespace = %meta.namespace.as_deref().unwrap_or_default(),
        name = %meta.name.as_deref().unwrap_or_default(),
        generation = meta.generation.unwrap_or_default(),
        outcome = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
    );
    async {
        let mut timer = ctx.metrics.reconcile_started(controller);
        let result = reconcile.await;
        let span = tracing::Span::current();
        span.record("duration_ms", timer.elapsed().as_millis() as u64);
        match &result {
            Ok(done) => {
                span.record("outcome", done.outcome.as_str());
                if let Some(reason) = &done.retrying {
                    ctx.metrics.failed(controller, reason);
                    timer.finish("retrying");
                } else {
                    ctx.succeeded(&backoff_key(object));
                    timer.finish("ok");
                }
                tracing::debug!("reconciled");
            }
            // Fenced mid-reconcile: not a failure, the new leader carries on.
            Err(Error::NotLeader) => {
                span.record("outcome", "fenced");
                timer.finish("fenced");
            }
            Err(error) => {
                span.record("outcome", "error");
                ctx.metrics.failed(controller, error.metric_label());
            }
        }
        result.map(|done| done.action)
    }
    .instrument(span)
    .await
}

/// The one error policy: retried with a backoff per object, unless the lease was lost
/// mid-reconcile (the new leader takes it from here).
pub(super) fn error_policy<K>(object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action
where
    K: Resource<DynamicType = ()>,
{
    if matches!(error, Error::NotLeader) {
        return Action::await_change();
    }
    let delay = ctx.backoff(backoff_key(object.as_ref()));
    let meta = object.meta();
    tracing::warn!(
        kind = %K::kind(&()),
        name = %meta.name.as_deref().unwrap_or_default(),
        namespace = %meta.namespace.as_deref().unwrap_or_default(),
        error = %error,
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// Whose failures a backoff counts: `Kind/namespace/name`.
pub(super) fn backoff_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    let meta = object.meta();
    format!(
        "{}/{}/{}",
        K::kind(&()),
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}
