//! Prometheus metrics: reconciles, failures and their duration, per controller.

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

pub struct Metrics {
    pub reconciles: Family<ControllerLabel, Counter>,
    pub failures: Family<ControllerLabel, Counter>,
    pub duration: Family<ControllerLabel, Histogram>,
    /// 1 while this replica leads (or runs without election), 0 on standby.
    pub leader: Gauge,
    /// Times this replica started or stopped leading.
    pub leader_transitions: Counter,
    pub registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let reconciles = Family::<ControllerLabel, Counter>::default();
        let failures = Family::<ControllerLabel, Counter>::default();
        let duration = Family::<ControllerLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0])
        });
        let mut registry = Registry::with_prefix("lucid_operator");
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Reconciles that returned an error",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            duration.clone(),
        );
        let leader = Gauge::default();
        let leader_transitions = Counter::default();
        registry.register(
            "leader",
            "1 while this replica leads, 0 on standby",
            leader.clone(),
        );
        registry.register(
            "leader_transitions",
            "Times this replica started or stopped leading",
            leader_transitions.clone(),
        );
        Self {
            reconciles,
            failures,
            duration,
            leader,
            leader_transitions,
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
}
