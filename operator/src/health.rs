//! What `/healthz` and `/readyz` answer, from facts the controllers report as they happen.
//!
//! - live (`/healthz`): no watch has been failing for longer than `stall_limit` (the
//!   watcher retries with backoff; a watch that cannot recover means a restart may help);
//! - ready (`/readyz`): every watched scope's caches have listed, and this replica knows
//!   whether it leads or stands by.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::leader::{Leadership, Role};

/// The operator process's own health (watches, caches, leadership), not a LucidService's:
/// that is `status::Health`.
pub struct OperatorHealth {
    /// Bumped each time a failing watch works again: after an outage every object is looked
    /// at once, rather than each waiting out its own error backoff.
    recoveries: tokio::sync::watch::Sender<u64>,
    scopes: usize,
    synced: AtomicUsize,
    stall_limit: Duration,
    failing_since: Mutex<BTreeMap<String, Instant>>,
    leadership: Leadership,
}

impl OperatorHealth {
    pub fn new(scopes: usize, stall_limit: Duration, leadership: Leadership) -> Self {
        Self {
            recoveries: tokio::sync::watch::Sender::new(0),
            scopes,
            synced: AtomicUsize::new(0),
            stall_limit,
            failing_since: Mutex::new(BTreeMap::new()),
            leadership,
        }
    }

    /// One scope's caches have all listed.
    pub fn caches_synced(&self) {
        self.synced.fetch_add(1, Ordering::SeqCst);
    }

    pub fn watch_failed(&self, watch: &str) {
        self.failing()
            .entry(watch.to_string())
            .or_insert_with(Instant::now);
    }

    pub fn watch_recovered(&self, watch: &str) {
        if self.failing().remove(watch).is_some() {
            self.recoveries.send_modify(|n| *n += 1);
        }
    }

    /// Changes each time a failing watch recovers.
    pub fn recoveries(&self) -> tokio::sync::watch::Receiver<u64> {
        self.recoveries.subscribe()
    }

    pub fn live(&self) -> Result<(), String> {
        self.live_at(Instant::now())
    }

    fn live_at(&self, now: Instant) -> Result<(), String> {
        let stuck: Vec<String> = self
            .failing()
            .iter()
            .filter(|(_, since)| now.duration_since(**since) > self.stall_limit)
            .map(|(watch, since)| {
                format!(
                    "{watch} failing for {}s",
                    now.duration_since(*since).as_secs()
                )
            })
            .collect();
        if stuck.is_empty() {
            Ok(())
        } else {
            Err(format!("watches not recovering: {}", stuck.join(", ")))
        }
    }

    pub fn ready(&self) -> Result<(), String> {
        let synced = self.synced.load(Ordering::SeqCst);
        if synced < self.scopes {
            return Err(format!(
                "caches syncing ({synced}/{} scopes listed)",
                self.scopes
            ));
        }
        match self.leadership.role() {
            Role::Unknown => Err("leadership not known yet (cannot read the Lease)".into()),
            Role::Leader | Role::Standby => Ok(()),
        }
    }

    fn failing(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Instant>> {
        self.failing_since.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for OperatorHealth {
    /// One scope, no election: what an in-process operator in a test runs with.
    fn default() -> Self {
        Self::new(1, Duration::from_secs(120), Leadership::sole())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_every_scope_has_synced_and_leadership_is_known() {
        let health = OperatorHealth::new(2, Duration::from_secs(60), Leadership::sole());
        assert!(health.ready().is_err());
        health.caches_synced();
        assert!(health.ready().unwrap_err().contains("1/2"));
        health.caches_synced();
        assert!(health.ready().is_ok());

        let elected = OperatorHealth::new(1, Duration::from_secs(60), Leadership::elected());
        elected.caches_synced();
        assert!(elected.ready().unwrap_err().contains("leadership"));
    }

    #[test]
    fn a_watch_failing_past_the_limit_fails_liveness_until_it_recovers() {
        let health = OperatorHealth::new(1, Duration::from_secs(60), Leadership::sole());
        health.watch_failed("deployments");
        let later = Instant::now() + Duration::from_secs(61);
        assert!(
            health.live_at(Instant::now()).is_ok(),
            "a fresh failure is retried"
        );
        let error = health.live_at(later).unwrap_err();
        assert!(error.contains("deployments"), "{error}");
        health.watch_recovered("deployments");
        assert!(health.live_at(later).is_ok());
    }
}
