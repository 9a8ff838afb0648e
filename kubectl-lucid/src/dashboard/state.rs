//! What the dashboard knows: the namespace's LucidPhases and LucidServices (raw, so status
//! fields this plugin does not know yet are still shown), their Pods and recent Events, and
//! whether the API server is reachable. Turned into the JSON snapshot the page draws.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::ResourceExt;
use kube::api::DynamicObject;
use lucid_operator::api::{LucidPhase, LucidService};
use lucid_operator::graph::service_ready;
use lucid_operator::status::{ConditionType, State as ObjectState};
use serde_json::{Value, json};

use crate::graph;
use crate::manifests::Manifests;

/// Events kept per object: the panel shows a service's recent history, not all of it.
const EVENTS_PER_OBJECT: usize = 20;

/// Status fields drawn by name; any other field the operator reports is listed as it is.
const KNOWN_SERVICE_STATUS: &[&str] = &[
    "observedGeneration",
    "readyReplicas",
    "replicas",
    "ready",
    "state",
    "waitingOn",
    "conditions",
];

#[derive(Default)]
pub struct State {
    pub namespace: String,
    pub phases: BTreeMap<String, DynamicObject>,
    pub services: BTreeMap<String, DynamicObject>,
    pub pods: BTreeMap<String, Pod>,
    /// `Kind/name` -> newest last.
    pub events: BTreeMap<String, Vec<EventLine>>,
    pub api: ApiHealth,
}

#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiHealth {
    pub connected: bool,
    pub message: String,
    /// RFC 3339, when it last changed.
    pub since: String,
}

impl Default for ApiHealth {
    fn default() -> Self {
        ApiHealth {
            connected: true,
            message: String::new(),
            since: now(),
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventLine {
    pub time: String,
    pub kind: String,
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub note: String,
    #[serde(skip)]
    uid: String,
}

pub fn now() -> String {
    jiff::Timestamp::now().to_string()
}

impl State {
    pub fn api_up(&mut self) -> bool {
        if self.api.connected {
            return false;
        }
        self.api = ApiHealth::default();
        true
    }

    pub fn api_down(&mut self, message: String) -> bool {
        if !self.api.connected && self.api.message == message {
            return false;
        }
        let since = if self.api.connected {
            now()
        } else {
            self.api.since.clone()
        };
        self.api = ApiHealth {
            connected: false,
            message,
            since,
        };
        true
    }

    pub fn note_event(&mut self, e: &K8sEvent) {
        let Some(regarding) = e.regarding.as_ref() else {
            return;
        };
        let kind = regarding.kind.clone().unwrap_or_default();
        let name = regarding.name.clone().unwrap_or_default();
        let time = e
            .series
            .as_ref()
            .map(|s| s.last_observed_time.0.to_string())
            .or_else(|| e.event_time.as_ref().map(|t| t.0.to_string()))
            .or_else(|| {
                e.deprecated_last_timestamp
                    .as_ref()
                    .map(|t| t.0.to_string())
            })
            .or_else(|| {
                e.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.to_string())
            })
            .unwrap_or_default();
        let line = EventLine {
            time,
            kind: kind.clone(),
            name: name.clone(),
            type_: e.type_.clone().unwrap_or_default(),
            reason: e.reason.clone().unwrap_or_default(),
            note: e.note.clone().unwrap_or_default(),
            uid: e.metadata.uid.clone().unwrap_or_default(),
        };
        let list = self.events.entry(format!("{kind}/{name}")).or_default();
        // An event updated in place (a series) replaces its earlier self.
        list.retain(|l| l.uid != line.uid || line.uid.is_empty());
        list.push(line);
        list.sort_by(|a, b| a.time.cmp(&b.time));
        if list.len() > EVENTS_PER_OBJECT {
            list.drain(..list.len() - EVENTS_PER_OBJECT);
        }
    }

    fn typed_services(&self) -> Vec<LucidService> {
        self.services.values().filter_map(typed).collect()
    }

    fn typed_phases(&self) -> Vec<LucidPhase> {
        self.phases.values().filter_map(typed).collect()
    }

    /// The service's pods: those the operator labelled with its name.
    fn pods_of(&self, service: &str) -> Vec<&Pod> {
        self.pods
            .values()
            .filter(|p| p.labels().get("lucid.io/service").map(String::as_str) == Some(service))
            .collect()
    }

    /// Everything the page draws, as one JSON document.
    pub fn snapshot(&self) -> Value {
        let services = self.typed_services();
        let phases = self.typed_phases();
        let m = Manifests {
            phases: phases.clone(),
            services: services.clone(),
            ..Default::default()
        };
        let plan = crate::plan::plan(&m);
        let layout = graph::layout(&graph::Graph::of(&plan, &m));
        let svg = graph::svg::svg(&layout, true);
        let mut service_json = serde_json::Map::new();
        for s in &services {
            let name = s.name_any();
            let raw = self.services.get(&name).map(|o| &o.data["status"]);
            service_json.insert(name.clone(), self.service_json(s, raw));
        }
        let mut phase_json = serde_json::Map::new();
        for p in &phases {
            let st = p.status.clone().unwrap_or_default();
            let degraded = st
                .conditions
                .iter()
                .find(|c| c.type_ == ConditionType::Degraded.as_str() && c.status == "True");
            phase_json.insert(
                p.name_any(),
                json!({
                    "state": st.state.clone().unwrap_or_else(|| "Unknown".into()),
                    "services": st.services,
                    "readyServices": st.ready_services,
                    "waitingOn": st.waiting_on,
                    "degraded": degraded.map(|c| json!({"reason": c.reason, "message": c.message})),
                    "extra": extras(self.phases.get(&p.name_any()).map(|o| &o.data["status"]), &[
                        "observedGeneration", "services", "readyServices", "progressingServices",
                        "waitingServices", "ready", "state", "waitingOn", "members", "conditions",
                    ]),
                }),
            );
        }
        let ready = services.iter().filter(|s| service_ready(s)).count();
        json!({
            "namespace": self.namespace,
            "api": self.api,
            "svg": svg,
            "phases": phase_json,
            "services": service_json,
            "ready": ready,
            "total": services.len(),
        })
    }

    fn service_json(&self, s: &LucidService, raw_status: Option<&Value>) -> Value {
        let st = s.status.clone().unwrap_or_default();
        let current =
            st.observed_generation.is_some() && st.observed_generation == s.metadata.generation;
        let state = if service_ready(s) {
            ObjectState::Ready.as_str().to_string()
        } else {
            st.state.clone().unwrap_or_else(|| "Pending".into())
        };
        let condition = |t: ConditionType| st.conditions.iter().find(|c| c.type_ == t.as_str());
        let degraded = condition(ConditionType::Degraded).filter(|c| c.status == "True");
        // Since when it is in its state: the Ready condition's last transition.
        let since = condition(ConditionType::Ready).map(|c| c.last_transition_time.0.to_string());
        let mut nodes: Vec<String> = self
            .pods_of(&s.name_any())
            .iter()
            .filter_map(|p| p.spec.as_ref()?.node_name.clone())
            .collect();
        nodes.sort();
        nodes.dedup();
        json!({
            "state": state,
            "current": current,
            "readyReplicas": st.ready_replicas,
            "desired": s.spec.replicas,
            "waitingOn": st.waiting_on,
            "since": since,
            "degraded": degraded.map(|c| json!({"reason": c.reason, "message": c.message})),
            "phase": s.spec.phase,
            "dependsOn": s.spec.depends_on,
            "generation": s.metadata.generation,
            "observedGeneration": st.observed_generation,
            "podNodes": nodes,
            "extra": extras(raw_status, KNOWN_SERVICE_STATUS),
        })
    }

    /// A service's recent events (its own, its Deployment's and its pods') and its pods.
    pub fn detail(&self, service: &str) -> Option<Value> {
        if !self.services.contains_key(service) {
            return None;
        }
        let pods = self.pods_of(service);
        let mut events: Vec<&EventLine> = Vec::new();
        for key in [
            format!("LucidService/{service}"),
            format!("Deployment/{service}"),
        ] {
            events.extend(self.events.get(&key).into_iter().flatten());
        }
        for p in &pods {
            events.extend(
                self.events
                    .get(&format!("Pod/{}", p.name_any()))
                    .into_iter()
                    .flatten(),
            );
        }
        events.sort_by(|a, b| b.time.cmp(&a.time));
        events.truncate(EVENTS_PER_OBJECT);
        let pods: Vec<Value> = pods
            .iter()
            .map(|p| {
                let status = p.status.clone().unwrap_or_default();
                let ready = status
                    .conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                let restarts: i32 = status
                    .container_statuses
                    .iter()
                    .flatten()
                    .map(|c| c.restart_count)
                    .sum();
                json!({
                    "name": p.name_any(),
                    "phase": status.phase,
                    "ready": ready,
                    "restarts": restarts,
                    "node": p.spec.as_ref().and_then(|s| s.node_name.clone()),
                    "started": status.start_time.map(|t| t.0.to_string()),
                })
            })
            .collect();
        Some(json!({"service": service, "events": events, "pods": pods}))
    }
}

fn typed<K: serde::de::DeserializeOwned>(o: &DynamicObject) -> Option<K> {
    serde_json::to_value(o)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
}

/// Status fields other than `known`, as they are (revision, lastGoodRevision, rolledBack,
/// nodes, ... once the operator reports them).
fn extras(status: Option<&Value>, known: &[&str]) -> Value {
    let Some(Value::Object(m)) = status else {
        return json!({});
    };
    Value::Object(
        m.iter()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, status: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "lucid.io/v1alpha1", "kind": "LucidService",
            "metadata": {"name": name, "generation": 2},
            "spec": {"image": {"repository": "x"}, "phase": "p", "replicas": 2},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn unknown_status_fields_are_shown_as_they_are_and_degraded_reasons_are_kept() {
        let mut state = State::default();
        state.services.insert(
            "api".into(),
            service(
                "api",
                json!({
                    "observedGeneration": 2, "readyReplicas": 1, "replicas": 2, "state": "Degraded",
                    "revision": 7, "lastGoodRevision": 6, "rolledBack": true, "nodes": ["pi-1"],
                    "conditions": [{"type": "Degraded", "status": "True", "reason": "CrashLoopBackOff",
                        "message": "container api restarts", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                }),
            ),
        );
        let snap = state.snapshot();
        let api = &snap["services"]["api"];
        assert_eq!(api["state"], "Degraded");
        assert_eq!(api["desired"], 2);
        assert_eq!(api["readyReplicas"], 1);
        assert_eq!(api["degraded"]["reason"], "CrashLoopBackOff");
        assert_eq!(
            api["extra"],
            json!({"revision": 7, "lastGoodRevision": 6, "rolledBack": true, "nodes": ["pi-1"]})
        );
        assert!(
            snap["svg"]
                .as_str()
                .unwrap()
                .contains("data-service=\"api\"")
        );
    }

    #[test]
    fn losing_the_api_server_is_reported_once_with_the_time_it_was_lost() {
        let mut state = State::default();
        assert!(state.api_down("connection refused".into()));
        let since = state.api.since.clone();
        assert!(!state.api_down("connection refused".into()));
        assert!(state.api_down("timed out".into()));
        assert_eq!(state.api.since, since, "lost since the first failure");
        assert!(state.api_up());
        assert!(!state.api_up());
    }
}
