//! Prometheus metrics (text format on `/metrics`), all prefixed `lucid_operator_`:
//!
//! - `reconciles_total{controller, result}`: result `ok`, `retrying` (an API call failed and is
//!   shown on the object), `error` (the reconcile returned an error);
//! - `reconcile_failures_total{controller, reason}`: why, by the step that failed, as its
//!   condition says (`ReadConfigFailed`, `ApplyFailed`, `DeleteFailed`, `StatusWriteFailed`,
//!   `RenderFailed`, ...: `Error::metric_label`);
//! - `reconcile_duration_seconds{controller}` and `reconciles_in_flight{controller}`, from a
//!   guard that records on every path out of a reconcile, errors and panics included;
//! - `phase_members{namespace, phase}`, `phase_ready_members{namespace, phase}`;
//! - `leader` (1 leading, 0 standby) and `leader_transitions_total`;
//! - `api_errors_total{verb, code}`: failed calls to the API server (`code` 0: no answer);
//! - `rollbacks_total{reason}`: updates that failed and were rolled back, by the failure's
//!   reason (`ImagePullFailed`, `CrashLoopBackOff`, `RolloutStuck`, `PhaseRolledBack`, ...);
//! - `service_dependencies_ready{service_namespace, service}`: 1 when every service it
//!   depends on is Ready, 0 when one is not (after its rollout as well as before);
//! - `backed_off_pods_restarted_total`: pods in crash-loop back-off since a crash from
//!   before their dependencies were Ready, deleted so they start at once (see `recovery`).
//!
//! kube-runtime 5 keeps its work queue private: the in-flight gauge is what is exposed.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub controller: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub controller: &'static str,
    pub reason: String,
}

/// `phase_namespace`, not `namespace`: Prometheus would rename a target's own `namespace`
/// label away (to `exported_namespace`) without `honorLabels`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase_namespace: String,
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RollbackLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabel {
    pub service_namespace: String,
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiErrorLabel {
    pub verb: &'static str,
    pub code: u16,
}

pub struct Metrics {
    pub reconciles: Family<ResultLabel, Counter>,
    pub failures: Family<ReasonLabel, Counter>,
    pub duration: Family<ControllerLabel, Histogram>,
    pub in_flight: Family<ControllerLabel, Gauge>,
    pub phase_members: Family<PhaseLabel, Gauge>,
    pub phase_ready_members: Family<PhaseLabel, Gauge>,
    /// 1 while this replica leads (or runs without election), 0 on standby.
    pub leader: Gauge,
    /// Times this replica started or stopped leading.
    pub leader_transitions: Counter,
    pub api_errors: Family<ApiErrorLabel, Counter>,
    pub rollbacks: Family<RollbackLabel, Counter>,
    pub dependencies_ready: Family<ServiceLabel, Gauge>,
    pub backed_off_restarts: Counter,
    pub registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("lucid_operator");
        let reconciles = Family::<ResultLabel, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles run, by result",
            reconciles.clone(),
        );
        let failures = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "reconcile_failures",
            "Reconciles that failed or are retrying, by reason",
            failures.clone(),
        );
        let duration = Family::<ControllerLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        });
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            duration.clone(),
        );
        let in_flight = Family::<ControllerLabel, Gauge>::default();
        registry.register(
            "reconciles_in_flight",
            "Reconciles running now",
            in_flight.clone(),
        );
        let phase_members = Family::<PhaseLabel, Gauge>::default();
        registry.register(
            "phase_members",
            "LucidServices in each phase",
            phase_members.clone(),
        );
        let phase_ready_members = Family::<PhaseLabel, Gauge>::default();
        registry.register(
            "phase_ready_members",
            "Ready LucidServices in each phase",
            phase_ready_members.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica leads, 0 on standby",
            leader.clone(),
        );
        let leader_transitions = Counter::default();
        registry.register(
            "leader_transitions",
            "Times this replica started or stopped leading",
            leader_transitions.clone(),
        );
        let api_errors = Family::<ApiErrorLabel, Counter>::default();
        registry.register(
            "api_errors",
            "Failed calls to the API server, by verb and HTTP code (0: no answer)",
            api_errors.clone(),
        );
        let rollbacks = Family::<RollbackLabel, Counter>::default();
        registry.register(
            "rollbacks",
            "Updates that failed and were rolled back, by the failure's reason",
            rollbacks.clone(),
        );
        let dependencies_ready = Family::<ServiceLabel, Gauge>::default();
        registry.register(
            "service_dependencies_ready",
            "1 when every service a LucidService depends on is Ready, else 0",
            dependencies_ready.clone(),
        );
        let backed_off_restarts = Counter::default();
        registry.register(
            "backed_off_pods_restarted",
            "Pods in crash-loop back-off from a crash before their dependencies were Ready, restarted",
            backed_off_restarts.clone(),
        );
        Self {
            rollbacks,
            dependencies_ready,
            backed_off_restarts,
            reconciles,
            failures,
            duration,
            in_flight,
            phase_members,
            phase_ready_members,
            leader,
            leader_transitions,
            api_errors,
            registry,
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Starts timing one reconcile; the guard records when dropped, on every path.
    pub fn reconcile_started(&self, controller: &'static str) -> ReconcileTimer<'_> {
        let label = ControllerLabel { controller };
        self.in_flight.get_or_create(&label).inc();
        ReconcileTimer {
            metrics: self,
            label,
            started: Instant::now(),
            result: "error",
        }
    }

    pub fn failed(&self, controller: &'static str, reason: &str) {
        self.failures
            .get_or_create(&ReasonLabel {
                controller,
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn api_error(&self, verb: &'static str, error: &kube::Error) {
        let code = match error {
            kube::Error::Api(status) => status.code,
            _ => 0,
        };
        self.api_error_code(verb, code);
    }

    /// `code` 0: the API server never answered.
    pub fn api_error_code(&self, verb: &'static str, code: u16) {
        self.api_errors
            .get_or_create(&ApiErrorLabel { verb, code })
            .inc();
    }

    pub fn rolled_back(&self, reason: &str) {
        self.rollbacks
            .get_or_create(&RollbackLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn dependencies(&self, namespace: &str, service: &str, ready: bool) {
        self.dependencies_ready
            .get_or_create(&ServiceLabel {
                service_namespace: namespace.to_string(),
                service: service.to_string(),
            })
            .set(i64::from(ready));
    }

    /// A standby does not summarise phases: it drops the leader-era figures rather than
    /// exporting them frozen beside the new leader's.
    pub fn forget_phases(&self) {
        self.phase_members.clear();
        self.phase_ready_members.clear();
    }

    pub fn phase(&self, namespace: &str, phase: &str, members: i64, ready: i64) {
        let label = PhaseLabel {
            phase_namespace: namespace.to_string(),
            phase: phase.to_string(),
        };
        self.phase_members.get_or_create(&label).set(members);
        self.phase_ready_members.get_or_create(&label).set(ready);
    }
}

pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    label: ControllerLabel,
    started: Instant,
    result: &'static str,
}

impl ReconcileTimer<'_> {
    /// How the reconcile ended; unset means it returned an error (or panicked).
    pub fn finish(&mut self, result: &'static str) {
        self.result = result;
    }

    pub fn elapsed(&self) -> std::time::Duration {
        self.started.elapsed()
    }
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .get_or_create(&self.label)
            .observe(self.started.elapsed().as_secs_f64());
        self.metrics.in_flight.get_or_create(&self.label).dec();
        self.metrics
            .reconciles
            .get_or_create(&ResultLabel {
                controller: self.label.controller,
                result: self.result,
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconcile_is_counted_and_timed_on_every_path_out() {
        let metrics = Metrics::default();
        {
            let mut ok = metrics.reconcile_started("lucidservice");
            ok.finish("ok");
        }
        {
            // Dropped without finish: an error path (or a panic) still counts.
            let _failed = metrics.reconcile_started("lucidservice");
        }
        metrics.failed("lucidservice", "ApplyFailed");
        metrics.phase("lucid", "core", 6, 4);
        metrics.rolled_back("ImagePullFailed");
        metrics.dependencies("lucid", "api-gateway", false);
        let text = metrics.encode();
        for line in [
            "lucid_operator_reconciles_total{controller=\"lucidservice\",result=\"ok\"} 1",
            "lucid_operator_reconciles_total{controller=\"lucidservice\",result=\"error\"} 1",
            "lucid_operator_reconciles_in_flight{controller=\"lucidservice\"} 0",
            "lucid_operator_reconcile_duration_seconds_count{controller=\"lucidservice\"} 2",
            "lucid_operator_reconcile_failures_total{controller=\"lucidservice\",reason=\"ApplyFailed\"} 1",
            "lucid_operator_phase_ready_members{phase_namespace=\"lucid\",phase=\"core\"} 4",
            "lucid_operator_rollbacks_total{reason=\"ImagePullFailed\"} 1",
            "lucid_operator_service_dependencies_ready{service_namespace=\"lucid\",service=\"api-gateway\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
