//! The rollout order of one namespace's services and phases, and the gate each service passes
//! before the operator creates or changes its workload. Pure: a snapshot in, a decision out.
//!
//! The graph has a node per service and per phase. A service points at the services in its
//! `dependsOn` and at the phases its own phase depends on; a phase points at its members. A
//! cycle through both kinds (a foundation service depending on a core service) is found by
//! one depth-first search, linear in the size of the namespace.

use std::collections::{BTreeSet, HashMap, HashSet};

use kube::{Resource, ResourceExt};

use crate::api::{LucidPhase, LucidService};
use crate::status::{ConditionType, Reason};

/// Ready now: Ready=True, and written for the current generation (a Ready condition from
/// before a spec change does not count).
pub fn service_ready(ls: &LucidService) -> bool {
    let Some(status) = &ls.status else {
        return false;
    };
    status.observed_generation == ls.metadata.generation
        && status
            .conditions
            .iter()
            .any(|c| c.type_ == ConditionType::Ready.as_str() && c.status == "True")
}

/// Why a service cannot go ahead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    Open,
    /// Held until something else is Ready; not an error.
    Wait {
        reason: Reason,
        message: String,
        waiting_on: String,
    },
}

/// The graph around a service is wrong (a phase or service it names does not exist, or a
/// cycle), and will stay wrong until the user changes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken {
    pub reason: Reason,
    pub message: String,
}

/// Phases or services the graph names that do not exist (as far as a snapshot knows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unresolved<'a> {
    /// The service's own phase.
    Phase(&'a str),
    /// Services its `dependsOn` names.
    Dependencies(Vec<&'a str>),
    /// Phases its phase's `dependsOn` names.
    PhaseDependencies {
        phase: &'a str,
        phases: Vec<&'a str>,
    },
}

impl Unresolved<'_> {
    pub fn reason(&self) -> Reason {
        match self {
            Unresolved::Phase(_) => Reason::PhaseNotFound,
            Unresolved::Dependencies(_) => Reason::DependencyNotFound,
            Unresolved::PhaseDependencies { .. } => Reason::PhaseDependencyNotFound,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Unresolved::Phase(phase) => format!(
                "no LucidPhase named {phase:?} in this namespace: create it, or set spec.phase to an existing phase"
            ),
            Unresolved::Dependencies(services) => format!(
                "dependsOn names LucidServices that do not exist: {}",
                services.join(", ")
            ),
            Unresolved::PhaseDependencies { phase, phases } => format!(
                "phase {phase} depends on phases that do not exist: {}",
                phases.join(", ")
            ),
        }
    }

    /// What it names, in order.
    pub fn objects(&self) -> Vec<NamedObject<'_>> {
        match self {
            Unresolved::Phase(phase) => vec![NamedObject::Phase(phase)],
            Unresolved::Dependencies(services) => {
                services.iter().map(|s| NamedObject::Service(s)).collect()
            }
            Unresolved::PhaseDependencies { phases, .. } => {
                phases.iter().map(|p| NamedObject::Phase(p)).collect()
            }
        }
    }
}

/// A phase or a service, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamedObject<'a> {
    Phase(&'a str),
    Service(&'a str),
}

impl<'a> NamedObject<'a> {
    pub fn name(&self) -> &'a str {
        match self {
            NamedObject::Phase(name) | NamedObject::Service(name) => name,
        }
    }

    /// As `waitingOn` shows it: a service by its name, a phase as `phase/<name>`.
    pub fn waiting_on(&self) -> String {
        match self {
            NamedObject::Phase(name) => format!("phase/{name}"),
            NamedObject::Service(name) => (*name).to_string(),
        }
    }
}

/// One namespace's services and phases.
pub struct Snapshot<'a> {
    services: HashMap<&'a str, &'a LucidService>,
    phases: HashMap<&'a str, &'a LucidPhase>,
    members: HashMap<&'a str, Vec<&'a LucidService>>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Node<'a> {
    Service(&'a str),
    Phase(&'a str),
}

impl<'a> Snapshot<'a> {
    pub fn new(
        services: impl IntoIterator<Item = &'a LucidService>,
        phases: impl IntoIterator<Item = &'a LucidPhase>,
    ) -> Self {
        let services: HashMap<&str, &LucidService> = services
            .into_iter()
            .map(|s| (s.meta().name.as_deref().unwrap_or(""), s))
            .collect();
        let phases = phases
            .into_iter()
            .map(|p| (p.meta().name.as_deref().unwrap_or(""), p))
            .collect();
        let mut members: HashMap<&str, Vec<&LucidService>> = HashMap::new();
        for s in services.values() {
            members.entry(s.spec.phase.as_str()).or_default().push(s);
        }
        for list in members.values_mut() {
            list.sort_by_key(|s| s.name_any());
        }
        Self {
            services,
            phases,
            members,
        }
    }

    pub fn phase(&self, name: &str) -> Option<&'a LucidPhase> {
        self.phases.get(name).copied()
    }

    pub fn service(&self, name: &str) -> Option<&'a LucidService> {
        self.services.get(name).copied()
    }

    /// The services `ls` depends on that are not Ready now (a missing one counts), in the
    /// order `dependsOn` names them. Unlike the gate, this is read after the rollout too:
    /// a running service whose database went down says so (`DependenciesReady`).
    pub fn dependencies_not_ready(&self, ls: &LucidService) -> Vec<String> {
        ls.spec
            .depends_on
            .iter()
            .filter(|d| {
                !self
                    .services
                    .get(d.as_str())
                    .is_some_and(|s| service_ready(s))
            })
            .cloned()
            .collect()
    }

    pub fn members(&self, phase: &str) -> &[&'a LucidService] {
        self.members.get(phase).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The one rule for "a phase's members are Ready": every member Ready at its current
    /// generation. Later phases wait on it (`gate`) and the wake-ups follow it.
    pub fn members_ready(&self, phase: &str) -> bool {
        self.members(phase).iter().all(|m| service_ready(m))
    }

    /// The first of the phases and services the graph around `ls` names that this snapshot
    /// does not hold: its own phase, else its dependencies, else its phase's dependencies.
    pub fn missing(&self, ls: &'a LucidService) -> Option<Unresolved<'a>> {
        let Some(phase) = self.phase(&ls.spec.phase) else {
            return Some(Unresolved::Phase(&ls.spec.phase));
        };
        let services: Vec<&str> = ls
            .spec
            .depends_on
            .iter()
            .map(String::as_str)
            .filter(|d| !self.services.contains_key(d))
            .collect();
        if !services.is_empty() {
            return Some(Unresolved::Dependencies(services));
        }
        let phases: Vec<&str> = phase
            .spec
            .depends_on
            .iter()
            .map(String::as_str)
            .filter(|p| !self.phases.contains_key(p))
            .collect();
        if !phases.is_empty() {
            return Some(Unresolved::PhaseDependencies {
                phase: &ls.spec.phase,
                phases,
            });
        }
        None
    }

    /// Problems in the graph around `ls` that the user must fix. Checked on every reconcile,
    /// whether or not the service has changed.
    pub fn problem(&self, ls: &'a LucidService) -> Option<(Reason, String)> {
        let name = ls.meta().name.as_deref().unwrap_or("");
        if let Some(missing) = self.missing(ls) {
            return Some((missing.reason(), missing.message()));
        }
        if let Some(cycle) = self.phase_cycle(&ls.spec.phase) {
            return Some((
                Reason::PhaseCycle,
                format!(
                    "phases depend on each other in a cycle: {}",
                    cycle.join(" -> ")
                ),
            ));
        }
        self.cycle_through(Node::Service(name)).map(|cycle| {
            (
                Reason::DependencyCycle,
                format!("dependencies form a cycle: {}", cycle.join(" -> ")),
            )
        })
    }

    /// Whether `ls` may be created or changed now: every phase before its own is Ready, its
    /// own phase is not paused, and every service it depends on is Ready.
    /// The graph is assessed once, here: a broken one has no gate to pass.
    pub fn gate(&self, ls: &'a LucidService) -> Result<Gate, Broken> {
        if let Some((reason, message)) = self.problem(ls) {
            return Err(Broken { reason, message });
        }
        let phase_name = ls.spec.phase.as_str();
        if self.phase(phase_name).is_some_and(|p| p.spec.paused) {
            return Ok(Gate::Wait {
                reason: Reason::PhasePaused,
                message: format!(
                    "phase {phase_name} is paused: set spec.paused: false on LucidPhase {phase_name} to go on"
                ),
                waiting_on: format!("phase/{phase_name}"),
            });
        }
        for upstream in self.upstream_phases(phase_name) {
            if !self.members_ready(upstream) {
                // No counts here: a message that changed with every member would rewrite
                // every waiting service's status on each change. The phase has the counts.
                return Ok(Gate::Wait {
                    reason: Reason::WaitingForPhase,
                    message: format!(
                        "waiting for phase {upstream} to be Ready (see kubectl get lucidphase {upstream})"
                    ),
                    waiting_on: format!("phase/{upstream}"),
                });
            }
        }
        let not_ready = self.dependencies_not_ready(ls);
        if !not_ready.is_empty() {
            return Ok(Gate::Wait {
                reason: Reason::WaitingForDependency,
                message: format!("waiting for {} to be Ready", abbreviate(&not_ready)),
                waiting_on: not_ready.join(","),
            });
        }
        Ok(Gate::Open)
    }

    /// Every phase `phase` comes after, nearest first, each once.
    pub fn upstream_phases(&self, phase: &str) -> Vec<&'a str> {
        let mut seen = BTreeSet::new();
        let mut order = Vec::new();
        let mut queue: Vec<&str> = self
            .phase(phase)
            .map(|p| p.spec.depends_on.iter().map(String::as_str).collect())
            .unwrap_or_default();
        let mut i = 0;
        while i < queue.len() {
            let next = queue[i];
            i += 1;
            let Some((&key, p)) = self.phases.get_key_value(next) else {
                continue;
            };
            if key == phase || !seen.insert(key) {
                continue;
            }
            order.push(key);
            queue.extend(p.spec.depends_on.iter().map(String::as_str));
        }
        order
    }

    /// A cycle of phases through `phase`, if any.
    pub fn phase_cycle(&self, phase: &str) -> Option<Vec<String>> {
        let mut path = vec![phase.to_string()];
        let mut visited = HashSet::new();
        self.phase_dfs(phase, phase, &mut path, &mut visited)
            .then_some(path)
    }

    fn phase_dfs(
        &self,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        visited: &mut HashSet<String>,
    ) -> bool {
        let Some(p) = self.phase(at) else {
            return false;
        };
        for next in &p.spec.depends_on {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if visited.insert(next.clone()) {
                path.push(next.clone());
                if self.phase_dfs(start, next, path, visited) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }

    fn edges(&self, node: Node<'a>) -> Vec<Node<'a>> {
        match node {
            Node::Service(name) => {
                let Some(s) = self.services.get(name) else {
                    return Vec::new();
                };
                let mut out: Vec<Node> = s
                    .spec
                    .depends_on
                    .iter()
                    .filter_map(|d| {
                        self.services
                            .get_key_value(d.as_str())
                            .map(|(k, _)| Node::Service(k))
                    })
                    .collect();
                if let Some(p) = self.phase(&s.spec.phase) {
                    out.extend(p.spec.depends_on.iter().filter_map(|d| {
                        self.phases
                            .get_key_value(d.as_str())
                            .map(|(k, _)| Node::Phase(k))
                    }));
                }
                out
            }
            Node::Phase(name) => self
                .members(name)
                .iter()
                .map(|m| Node::Service(m.meta().name.as_deref().unwrap_or("")))
                .collect(),
        }
    }

    /// A path from `start` back to itself, if one exists (iterative DFS: no recursion depth
    /// limit on long chains).
    fn cycle_through(&self, start: Node<'a>) -> Option<Vec<String>> {
        let mut visited: HashSet<Node> = HashSet::new();
        let mut stack: Vec<(Node, Vec<Node>)> = vec![(start, self.edges(start))];
        while let Some((_, children)) = stack.last_mut() {
            let Some(next) = children.pop() else {
                stack.pop();
                continue;
            };
            if next == start {
                let mut path: Vec<String> = stack.iter().map(|(n, _)| label(*n)).collect();
                path.push(label(start));
                return Some(path);
            }
            if visited.insert(next) {
                let edges = self.edges(next);
                stack.push((next, edges));
            }
        }
        None
    }
}

fn label(node: Node) -> String {
    match node {
        Node::Service(s) => s.to_string(),
        Node::Phase(p) => format!("phase/{p}"),
    }
}

/// At most five names, so a message about a 500-service phase stays readable.
fn abbreviate(names: &[String]) -> String {
    if names.len() <= 5 {
        names.join(", ")
    } else {
        format!("{} and {} more", names[..5].join(", "), names.len() - 5)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    use super::*;
    use crate::api::{LucidPhaseSpec, LucidServiceStatus};
    use crate::render::fixtures::service;

    fn svc(name: &str, phase: &str, deps: &[&str]) -> LucidService {
        service(
            name,
            &format!(
                "image: {{repository: x}}\nphase: {phase}\ndependsOn: [{}]",
                deps.join(", ")
            ),
        )
    }

    fn ready(mut ls: LucidService) -> LucidService {
        ls.status = Some(LucidServiceStatus {
            observed_generation: ls.metadata.generation,
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: Reason::RolloutComplete.into(),
                message: String::new(),
                observed_generation: ls.metadata.generation,
                last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
            }],
            ..Default::default()
        });
        ls
    }

    fn phase(name: &str, deps: &[&str]) -> LucidPhase {
        let mut p = LucidPhase::new(
            name,
            LucidPhaseSpec {
                depends_on: deps.iter().map(|d| d.to_string()).collect(),
                paused: false,
                description: None,
                on_failure: Default::default(),
            },
        );
        p.metadata.namespace = Some("lucid".into());
        p
    }

    fn phases() -> Vec<LucidPhase> {
        vec![
            phase("foundation", &[]),
            phase("core", &["foundation"]),
            phase("application", &["core"]),
        ]
    }

    #[test]
    fn a_service_waits_for_every_earlier_phase_then_its_dependencies() {
        let services = vec![
            svc("mongo", "foundation", &[]),
            svc("redis", "foundation", &["mongo"]),
            svc("gw", "core", &["redis"]),
            svc("rec", "application", &["gw"]),
        ];
        let phases = phases();
        let snap = Snapshot::new(&services, &phases);
        assert_eq!(snap.gate(&services[0]), Ok(Gate::Open));
        assert!(
            matches!(snap.gate(&services[1]), Ok(Gate::Wait { reason: Reason::WaitingForDependency, waiting_on, .. }) if waiting_on == "mongo")
        );
        assert!(
            matches!(snap.gate(&services[2]), Ok(Gate::Wait { reason: Reason::WaitingForPhase, waiting_on, .. }) if waiting_on == "phase/foundation")
        );
        // application waits for foundation too, not only for core.
        assert!(
            matches!(snap.gate(&services[3]), Ok(Gate::Wait { reason: Reason::WaitingForPhase, waiting_on, .. }) if waiting_on == "phase/core" || waiting_on == "phase/foundation")
        );

        let services = vec![
            ready(svc("mongo", "foundation", &[])),
            ready(svc("redis", "foundation", &["mongo"])),
            svc("gw", "core", &["redis"]),
        ];
        let snap = Snapshot::new(&services, &phases);
        assert_eq!(snap.gate(&services[2]), Ok(Gate::Open));
    }

    #[test]
    fn readiness_from_an_older_generation_does_not_count() {
        let mut mongo = ready(svc("mongo", "foundation", &[]));
        mongo.metadata.generation = Some(2);
        let services = vec![mongo, svc("redis", "foundation", &["mongo"])];
        let phases = phases();
        let snap = Snapshot::new(&services, &phases);
        assert!(!service_ready(&services[0]));
        assert!(matches!(snap.gate(&services[1]), Ok(Gate::Wait { .. })));
    }

    #[test]
    fn a_cycle_is_named_on_every_member() {
        let services = vec![
            svc("a", "foundation", &["b"]),
            svc("b", "foundation", &["c"]),
            svc("c", "foundation", &["a"]),
        ];
        let phases = phases();
        let snap = Snapshot::new(&services, &phases);
        for s in &services {
            let Err(Broken { reason, message }) = snap.gate(s) else {
                panic!("{} not broken", s.name_any())
            };
            assert_eq!(reason, Reason::DependencyCycle);
            for name in ["a", "b", "c"] {
                assert!(message.contains(name), "{message}");
            }
        }
    }

    #[test]
    fn a_dependency_on_a_later_phase_is_a_cycle_through_the_phase() {
        let services = vec![svc("db", "foundation", &["gw"]), svc("gw", "core", &[])];
        let phases = phases();
        let snap = Snapshot::new(&services, &phases);
        let Err(Broken { reason, message }) = snap.gate(&services[0]) else {
            panic!()
        };
        assert_eq!(reason, Reason::DependencyCycle);
        assert!(message.contains("phase/foundation"), "{message}");
    }

    #[test]
    fn missing_dependencies_and_phases_are_named() {
        let services = vec![svc("a", "foundation", &["ghost"]), svc("b", "nowhere", &[])];
        let phases = vec![phase("foundation", &["gone"])];
        let snap = Snapshot::new(&services, &phases);
        assert!(
            matches!(snap.gate(&services[0]), Err(Broken { reason: Reason::DependencyNotFound, message }) if message.contains("ghost"))
        );
        assert!(
            matches!(snap.gate(&services[1]), Err(Broken { reason: Reason::PhaseNotFound, message }) if message.contains("nowhere"))
        );
        let services = vec![svc("a", "foundation", &[])];
        let snap = Snapshot::new(&services, &phases);
        assert!(
            matches!(snap.gate(&services[0]), Err(Broken { reason: Reason::PhaseDependencyNotFound, message }) if message.contains("gone"))
        );
    }

    #[test]
    fn what_is_missing_names_what_to_look_up_live() {
        let services = vec![
            svc("a", "foundation", &["ghost", "b", "spook"]),
            svc("b", "nowhere", &[]),
        ];
        let phases = vec![phase("foundation", &["gone"])];
        let snap = Snapshot::new(&services, &phases);
        // Its own phase first, then its dependencies, then its phase's dependencies.
        let missing = snap.missing(&services[1]).expect("missing");
        assert_eq!(missing.objects(), [NamedObject::Phase("nowhere")]);
        assert_eq!(missing.objects()[0].waiting_on(), "phase/nowhere");
        let missing = snap.missing(&services[0]).expect("missing");
        assert_eq!(
            missing.objects(),
            [NamedObject::Service("ghost"), NamedObject::Service("spook")]
        );
        assert_eq!(missing.objects()[0].waiting_on(), "ghost");
        let services = vec![svc("a", "foundation", &[])];
        let snap = Snapshot::new(&services, &phases);
        let missing = snap.missing(&services[0]).expect("missing");
        assert_eq!(missing.objects(), [NamedObject::Phase("gone")]);
        assert_eq!(
            (missing.reason(), snap.problem(&services[0]).map(|p| p.0)),
            (
                Reason::PhaseDependencyNotFound,
                Some(Reason::PhaseDependencyNotFound)
            )
        );
        let phases = vec![phase("foundation", &[])];
        let snap = Snapshot::new(&services, &phases);
        assert_eq!(snap.missing(&services[0]), None);
    }

    #[test]
    fn a_phase_cycle_is_reported_and_a_paused_phase_holds_its_members() {
        let services = vec![svc("a", "x", &[])];
        let phases = vec![phase("x", &["y"]), phase("y", &["x"])];
        let snap = Snapshot::new(&services, &phases);
        assert!(
            matches!(snap.gate(&services[0]), Err(Broken { reason: Reason::PhaseCycle, message }) if message.contains("x -> y -> x"))
        );

        let mut paused = phase("foundation", &[]);
        paused.spec.paused = true;
        let phases = vec![paused];
        let services = vec![svc("a", "foundation", &[])];
        let snap = Snapshot::new(&services, &phases);
        assert!(matches!(
            snap.gate(&services[0]),
            Ok(Gate::Wait {
                reason: Reason::PhasePaused,
                ..
            })
        ));
    }

    #[test]
    fn dependencies_not_ready_are_read_after_the_rollout_too() {
        let services = [
            ready(svc("db", "foundation", &[])),
            svc("cache", "foundation", &[]),
            ready(svc("api", "core", &["db", "cache"])),
        ];
        let phases = [phase("foundation", &[]), phase("core", &["foundation"])];
        let snap = Snapshot::new(services.iter(), phases.iter());
        assert_eq!(snap.dependencies_not_ready(&services[2]), ["cache"]);
        assert!(snap.dependencies_not_ready(&services[0]).is_empty());
    }
}
