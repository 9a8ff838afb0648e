//! The rollout plan, with no cluster: the operator's own graph (`graph::Snapshot`) asked the
//! questions it asks on every reconcile, over the manifests instead of the API server.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use lucid_operator::api::{LucidPhase, LucidService};
use lucid_operator::graph::Snapshot;
use serde::Serialize;

use crate::manifests::Manifests;

#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub phases: Vec<PhasePlan>,
    /// What the operator would report as Degraded, with its reasons and messages.
    pub errors: Vec<PlanError>,
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PhasePlan {
    pub name: String,
    /// 1 for the first phase to roll out.
    pub order: usize,
    pub depends_on: Vec<String>,
    pub paused: bool,
    pub services: Vec<ServicePlan>,
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServicePlan {
    pub name: String,
    /// Within its phase: 1 for services that wait on no other member, then one more than the
    /// latest member they wait for.
    pub step: usize,
    /// Every phase that must be Ready first, nearest first (the operator's upstream order).
    pub waits_for_phases: Vec<String>,
    /// Its `dependsOn`.
    pub waits_for: Vec<String>,
}

#[derive(Serialize, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct PlanError {
    /// `LucidService/<name>`: the operator reports graph errors on the services they hold
    /// back (a phase cycle on each member of the phases in it).
    pub object: String,
    pub reason: String,
    pub message: String,
}

pub fn plan(m: &Manifests) -> Plan {
    let snapshot = Snapshot::new(&m.services, &m.phases);
    let mut errors = BTreeSet::new();
    for ls in &m.services {
        let problems = lucid_operator::validate::problems(ls);
        if !problems.is_empty() {
            // The reason and joined message the service reconciler reports.
            errors.insert(PlanError {
                object: format!("LucidService/{}", ls.name_any()),
                reason: "InvalidSpec".into(),
                message: problems.join("; "),
            });
        }
        if let Some((reason, message)) = snapshot.problem(ls) {
            errors.insert(PlanError {
                object: format!("LucidService/{}", ls.name_any()),
                reason: reason.into(),
                message,
            });
        }
    }
    let phases = phase_order(&m.phases);
    let mut out = Vec::new();
    for (i, phase) in phases.iter().enumerate() {
        let name = phase.name_any();
        let members: Vec<&LucidService> =
            m.services.iter().filter(|s| s.spec.phase == name).collect();
        let upstream: Vec<String> = snapshot
            .upstream_phases(&name)
            .into_iter()
            .map(str::to_string)
            .collect();
        let steps = steps(&members);
        let mut services: Vec<ServicePlan> = members
            .iter()
            .map(|s| ServicePlan {
                name: s.name_any(),
                step: steps.get(s.name_any().as_str()).copied().unwrap_or(1),
                waits_for_phases: upstream.clone(),
                waits_for: s.spec.depends_on.clone(),
            })
            .collect();
        // Stable: within a step the manifests' order stands.
        services.sort_by_key(|s| s.step);
        out.push(PhasePlan {
            name,
            order: i + 1,
            depends_on: phase.spec.depends_on.clone(),
            paused: phase.spec.paused,
            services,
        });
    }
    Plan {
        phases: out,
        errors: errors.into_iter().collect(),
    }
}

/// Phases with every phase they depend on before them; ties in the manifests' order. Phases
/// in a cycle come last, in the manifests' order (the cycle is an error of its own).
fn phase_order(phases: &[LucidPhase]) -> Vec<&LucidPhase> {
    let names: BTreeSet<String> = phases.iter().map(|p| p.name_any()).collect();
    let mut placed: Vec<&LucidPhase> = Vec::new();
    let mut left: Vec<&LucidPhase> = phases.iter().collect();
    while !left.is_empty() {
        let done: BTreeSet<String> = placed.iter().map(|p| p.name_any()).collect();
        let next = left
            .iter()
            .position(|p| {
                p.spec
                    .depends_on
                    .iter()
                    .all(|d| done.contains(d) || !names.contains(d))
            })
            .unwrap_or(0);
        placed.push(left.remove(next));
    }
    placed
}

/// Longest chain of same-phase dependencies ending at each member (cycles cut, and reported
/// elsewhere).
fn steps(members: &[&LucidService]) -> BTreeMap<String, usize> {
    let in_phase: BTreeMap<String, &LucidService> =
        members.iter().map(|s| (s.name_any(), *s)).collect();
    let mut memo: BTreeMap<String, usize> = BTreeMap::new();
    fn visit(
        name: &str,
        in_phase: &BTreeMap<String, &LucidService>,
        memo: &mut BTreeMap<String, usize>,
        path: &mut Vec<String>,
    ) -> usize {
        if let Some(s) = memo.get(name) {
            return *s;
        }
        if path.iter().any(|p| p == name) {
            return 0;
        }
        path.push(name.to_string());
        let deps = in_phase
            .get(name)
            .map(|s| s.spec.depends_on.clone())
            .unwrap_or_default();
        let step = 1 + deps
            .iter()
            .filter(|d| in_phase.contains_key(d.as_str()))
            .map(|d| visit(d, in_phase, memo, path))
            .max()
            .unwrap_or(0);
        path.pop();
        memo.insert(name.to_string(), step);
        step
    }
    for name in in_phase.keys() {
        visit(name, &in_phase, &mut memo, &mut Vec::new());
    }
    memo
}

/// The plan as people read it.
pub fn text(plan: &Plan, m: &Manifests) -> String {
    let mut out = String::new();
    let services: usize = plan.phases.iter().map(|p| p.services.len()).sum();
    out.push_str(&format!(
        "Rollout plan: {} phase{}, {} service{}\n",
        plan.phases.len(),
        if plan.phases.len() == 1 { "" } else { "s" },
        services,
        if services == 1 { "" } else { "s" }
    ));
    let width = plan
        .phases
        .iter()
        .flat_map(|p| &p.services)
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0);
    for phase in &plan.phases {
        let after = if phase.depends_on.is_empty() {
            "first".to_string()
        } else {
            format!("after {}", phase.depends_on.join(", "))
        };
        let paused = if phase.paused { ", paused" } else { "" };
        out.push_str(&format!(
            "\n{}. {} ({after}{paused})\n",
            phase.order, phase.name
        ));
        for s in &phase.services {
            let mut waits: Vec<String> = s
                .waits_for_phases
                .iter()
                .map(|p| format!("phase {p}"))
                .collect();
            waits.extend(s.waits_for.iter().cloned());
            let waits = if waits.is_empty() {
                "nothing".to_string()
            } else {
                waits.join(", ")
            };
            out.push_str(&format!(
                "   {}. {:width$}  waits for {waits}\n",
                s.step, s.name
            ));
        }
    }
    let orphans: Vec<String> = m
        .services
        .iter()
        .filter(|s| !plan.phases.iter().any(|p| p.name == s.spec.phase))
        .map(|s| format!("{} (phase {})", s.name_any(), s.spec.phase))
        .collect();
    if !orphans.is_empty() {
        out.push_str(&format!("\nNot in any phase: {}\n", orphans.join(", ")));
    }
    if !plan.errors.is_empty() {
        out.push_str(&format!(
            "\n{} error{}:\n",
            plan.errors.len(),
            if plan.errors.len() == 1 { "" } else { "s" }
        ));
        for e in &plan.errors {
            out.push_str(&format!("  {}: {}: {}\n", e.object, e.reason, e.message));
        }
    }
    out
}
