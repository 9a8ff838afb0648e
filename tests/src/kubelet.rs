//! There is no kubelet, scheduler or Deployment controller here: this task plays all three
//! for Deployments, writing the status a healthy rollout would reach, through the status
//! subresource, `delay` after each change. Tests can hold a Deployment back. Like the
//! Deployment controller, it retries a write that failed (an API server or etcd restarting
//! under it) until it lands: a lost write would leave the Deployment unavailable for ever.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

#[derive(Clone)]
pub struct Kubelet {
    held: Arc<Mutex<HashSet<String>>>,
    /// When each Deployment first appeared and when it was last marked available.
    pub log: Arc<Mutex<BTreeMap<String, Seen>>>,
    task: Arc<tokio::task::JoinHandle<()>>,
    /// Set by `stop`: the writes still being retried give up.
    stopped: Arc<AtomicBool>,
}

#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub first_seen: Option<Instant>,
    pub order: usize,
    pub available_at: Option<Instant>,
}

impl Kubelet {
    pub fn start(client: Client, namespace: &str, delay: Duration) -> Kubelet {
        let held = Arc::new(Mutex::new(HashSet::new()));
        let log = Arc::new(Mutex::new(BTreeMap::new()));
        let api: Api<Deployment> = Api::namespaced(client, namespace);
        let stopped = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (held, log, stopped) = (held.clone(), log.clone(), stopped.clone());
            async move {
                // Retries as quickly as the operator does (a kubelet reconnects at once).
                let mut events = watcher(api.clone(), watcher::Config::default())
                    .backoff(lucid_operator::reconcile::WatchBackoff::default())
                    .applied_objects()
                    .boxed();
                // An error (the API server down) is retried by the watcher; its re-list
                // yields every Deployment again, so none is left unmarked.
                while let Some(event) = events.next().await {
                    let Ok(d) = event else { continue };
                    let name = d.name_any();
                    {
                        let mut log = log.lock().unwrap();
                        let order = log.len();
                        log.entry(name.clone()).or_insert_with(|| Seen {
                            first_seen: Some(Instant::now()),
                            order,
                            available_at: None,
                        });
                    }
                    if done(&d) || held.lock().unwrap().contains(&name) {
                        continue;
                    }
                    let (api, log, held, stopped) =
                        (api.clone(), log.clone(), held.clone(), stopped.clone());
                    tokio::spawn(async move {
                        loop {
                            tokio::time::sleep(delay).await;
                            // A hold() made while this slept wins.
                            if held.lock().unwrap().contains(&name)
                                || stopped.load(Ordering::Relaxed)
                            {
                                return;
                            }
                            // Stamped before the write: nobody can see the Deployment
                            // available earlier (a stamp after it could land after the
                            // operator, already acting on it, created a dependent).
                            let at = Instant::now();
                            match mark_available(&api, &name).await {
                                Ok(Marked::Now) => {
                                    log.lock().unwrap().entry(name).or_default().available_at =
                                        Some(at);
                                    return;
                                }
                                Ok(Marked::NothingToDo) => return,
                                // Nothing watched changes again to bring the Deployment back
                                // here: retried after `delay`.
                                Err(_) => continue,
                            }
                        }
                    });
                }
            }
        });
        Kubelet {
            held,
            log,
            task: Arc::new(task),
            stopped,
        }
    }

    /// Stops marking `name` available (a pod that never becomes ready).
    pub fn hold(&self, name: &str) {
        self.held.lock().unwrap().insert(name.to_string());
    }

    pub fn release(&self, name: &str) {
        self.held.lock().unwrap().remove(name);
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.task.abort();
    }
}

fn done(d: &Deployment) -> bool {
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    status.observed_generation == d.metadata.generation
        && status.available_replicas.unwrap_or(0) == replicas
        && status.updated_replicas.unwrap_or(0) == replicas
}

/// What `mark_available` did.
#[derive(Debug, PartialEq)]
pub enum Marked {
    Now,
    /// Gone, or its current generation already available.
    NothingToDo,
}

/// Writes a completed rollout for the Deployment's current generation.
pub async fn mark_available(api: &Api<Deployment>, name: &str) -> Result<Marked, kube::Error> {
    let Some(d) = api.get_opt(name).await? else {
        return Ok(Marked::NothingToDo);
    };
    if done(&d) {
        return Ok(Marked::NothingToDo);
    }
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff_now());
    let status = json!({
        "status": {
            "observedGeneration": d.metadata.generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability.", "lastUpdateTime": now, "lastTransitionTime": now},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": "ReplicaSet has successfully progressed.", "lastUpdateTime": now, "lastTransitionTime": now},
            ],
        }
    });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await?;
    Ok(Marked::Now)
}

/// Writes a stuck rollout (`ProgressDeadlineExceeded`), as the Deployment controller would.
pub async fn mark_stuck(api: &Api<Deployment>, name: &str) {
    let d = api.get(name).await.expect("deployment");
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff_now());
    let status = json!({
        "status": {
            "observedGeneration": d.metadata.generation,
            "replicas": 1, "updatedReplicas": 1, "readyReplicas": 0, "availableReplicas": 0, "unavailableReplicas": 1,
            "conditions": [
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": format!("ReplicaSet \"{name}-1\" has timed out progressing."), "lastUpdateTime": now, "lastTransitionTime": now},
            ],
        }
    });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("write stuck status");
}

fn jiff_now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}
