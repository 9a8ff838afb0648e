//! Where the operator looks and how its waits are spread: the watched scope (the whole
//! cluster or a list of namespaces), an `Api` for it, how a failed watch retries, and the
//! jitter that keeps many objects from re-checking in the same second.

use std::time::Duration;

use kube::runtime::controller::Action;
use kube::{Api, Client};

/// Which namespaces the operator watches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// The whole cluster (the chart's default).
    #[default]
    Cluster,
    /// One namespace: for a namespaced install, and for tests that run several operators side
    /// by side on one API server.
    Namespace(String),
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Cluster => f.write_str("cluster"),
            Scope::Namespace(ns) => f.write_str(ns),
        }
    }
}

impl Scope {
    /// Scopes from a comma-separated namespace list (`LUCID_WATCH_NAMESPACES`): empty means the
    /// whole cluster; duplicates and blanks are dropped.
    pub fn from_list(list: &str) -> Vec<Scope> {
        let mut namespaces: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|ns| !ns.is_empty())
            .collect();
        namespaces.sort_unstable();
        namespaces.dedup();
        if namespaces.is_empty() {
            return vec![Scope::Cluster];
        }
        namespaces
            .into_iter()
            .map(|ns| Scope::Namespace(ns.to_string()))
            .collect()
    }
}

/// An `Api` of any namespaced kind over one scope.
pub(super) struct ScopedApi {
    pub client: Client,
    pub scope: Scope,
}

impl ScopedApi {
    pub fn of<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match &self.scope {
            Scope::Cluster => Api::all(self.client.clone()),
            Scope::Namespace(ns) => Api::namespaced(self.client.clone(), ns),
        }
    }
}

/// How a failed watch retries: 0.5 s doubling to 5 s, with jitter. kube-runtime's default
/// grows to 30 s, so a watch that failed through a 30 s API server outage could wait almost as
/// long again once the server is back (measured: 72 s to converge after a 30 s outage). A
/// few watches retried every 5 s cost a small cluster nothing.
pub struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    const FIRST: Duration = Duration::from_millis(500);
    const CAP: Duration = Duration::from_secs(5);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Self::Item> {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::CAP);
        // Up to a fifth more, so many watches failing together do not retry in step.
        Some(spread(delay, 5))
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// A periodic re-check `base` from now, spread by up to a tenth more: services reconciled
/// together (a restart, a phase turning Ready) must not all re-check in the same second.
pub(crate) fn resync(base: Duration) -> Action {
    Action::requeue(spread(base, 10))
}

/// `base` plus up to `base / fraction`, taken from the clock's nanoseconds: enough to spread
/// waits that started together, with no random number generator to carry.
fn spread(base: Duration, fraction: u32) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    base + base.mul_f64(f64::from(nanos % 1000) / (1000.0 * f64::from(fraction)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_namespace_list_is_the_whole_cluster() {
        assert_eq!(Scope::from_list(""), vec![Scope::Cluster]);
        assert_eq!(Scope::from_list(" , "), vec![Scope::Cluster]);
    }

    #[test]
    fn a_namespace_list_is_one_scope_per_distinct_namespace() {
        assert_eq!(
            Scope::from_list("b, a,b,"),
            vec![Scope::Namespace("a".into()), Scope::Namespace("b".into())]
        );
    }

    #[test]
    fn a_spread_wait_is_at_least_the_base_and_at_most_a_fraction_more() {
        let base = Duration::from_secs(10);
        for _ in 0..100 {
            let wait = spread(base, 5);
            assert!(wait >= base && wait <= base + base / 5, "{wait:?}");
        }
    }

    #[test]
    fn a_failed_watch_retries_sooner_than_kube_runtime_would_and_starts_over_on_reset() {
        use kube::runtime::utils::Backoff;
        let mut backoff = WatchBackoff::default();
        let waits: Vec<Duration> = (&mut backoff).take(6).collect();
        assert!(waits[0] < Duration::from_millis(601), "{waits:?}");
        assert!(waits[5] <= Duration::from_secs(6), "capped: {waits:?}");
        backoff.reset();
        assert!(
            backoff
                .next()
                .is_some_and(|w| w < Duration::from_millis(601))
        );
    }
}
