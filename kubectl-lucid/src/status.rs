//! `kubectl lucid status`: the live rollout as a tree of phases and services. Once, or kept
//! on screen (`--watch`) and redrawn on every change the watches report; `--wait` turns the
//! same view into an exit code.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Config, Resource, ResourceExt};
use lucid_operator::api::{LucidPhase, LucidService};
use lucid_operator::graph::{Snapshot, service_ready};
use lucid_operator::status::{ConditionType, Reason, State};

use crate::cli::{KubeArgs, StatusArgs};
use crate::error::{Error, Result};
use crate::manifests::Manifests;

/// Everything the tree shows.
#[derive(Default, Clone)]
pub struct View {
    pub namespace: String,
    pub phases: BTreeMap<String, LucidPhase>,
    pub services: BTreeMap<String, LucidService>,
    /// Newest event per `Kind/name`: (when, "Reason: note").
    pub events: BTreeMap<String, (String, String)>,
}

/// What `--wait` makes of a view.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every service Ready at its current generation and every phase Ready.
    Ready,
    /// Something reports Degraded at its current generation: what and why.
    Degraded(Vec<String>),
    Pending,
}

fn current<K: Resource>(k: &K, observed: Option<i64>) -> bool {
    observed == k.meta().generation
}

/// Whether `status.state` says `state`.
fn is_state(written: &Option<String>, state: State) -> bool {
    written.as_deref() == Some(state.as_str())
}

/// The condition that says `type_` is true.
fn condition_true(conditions: &[Condition], type_: ConditionType) -> Option<&Condition> {
    conditions
        .iter()
        .find(|c| c.type_ == type_.as_str() && c.status == "True")
}

pub fn verdict(v: &View) -> Verdict {
    let mut degraded = Vec::new();
    let snapshot = Snapshot::new(v.services.values(), v.phases.values());
    for s in v.services.values() {
        let Some(st) = &s.status else { continue };
        let reason = condition_true(&st.conditions, ConditionType::Degraded)
            .and_then(|c| Reason::parse(&c.reason));
        // A graph error the objects seen here no longer have is the operator's view lagging
        // behind `kubectl apply` (a service seen before its phase): it will clear, not fail.
        let stale = reason.is_some_and(Reason::is_graph_problem) && snapshot.problem(s).is_none();
        if is_state(&st.state, State::Degraded) && current(s, st.observed_generation) && !stale {
            let why = condition_true(&st.conditions, ConditionType::Degraded)
                .map(|c| format!("{}: {}", c.reason, c.message))
                .unwrap_or_default();
            degraded.push(format!("LucidService/{} is Degraded: {why}", s.name_any()));
        }
    }
    for p in v.phases.values() {
        let Some(st) = &p.status else { continue };
        if !is_state(&st.state, State::Degraded) || !current(p, st.observed_generation) {
            continue;
        }
        let Some(c) = condition_true(&st.conditions, ConditionType::Degraded) else {
            continue;
        };
        // A degraded member is reported (or waited out) above; the phase's own graph errors
        // count only while the objects seen here still have them.
        let still = match Reason::parse(&c.reason) {
            Some(Reason::PhaseCycle) => snapshot.phase_cycle(&p.name_any()).is_some(),
            Some(Reason::PhaseDependencyNotFound) => {
                p.spec.depends_on.iter().any(|d| !v.phases.contains_key(d))
            }
            _ => false,
        };
        if still {
            degraded.push(format!(
                "LucidPhase/{} is Degraded: {}: {}",
                p.name_any(),
                c.reason,
                c.message
            ));
        }
    }
    if !degraded.is_empty() {
        return Verdict::Degraded(degraded);
    }
    // Nothing applied yet is not "all Ready": `kubectl apply` may still be on its way.
    let services_ready = !v.services.is_empty() && v.services.values().all(service_ready);
    let phases_ready = v.phases.values().all(|p| {
        p.status.as_ref().is_some_and(|st| {
            is_state(&st.state, State::Ready) && current(p, st.observed_generation)
        })
    });
    if services_ready && phases_ready {
        Verdict::Ready
    } else {
        Verdict::Pending
    }
}

/// How the tree is drawn: colours and box drawing on a terminal, plain text when piped.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    pub colour: bool,
    pub unicode: bool,
}

impl Style {
    /// Colour only on a terminal and only when NO_COLOR is unset or empty (no-color.org).
    pub fn detect() -> Self {
        let terminal = std::io::stdout().is_terminal();
        let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            colour: terminal && !no_colour,
            unicode: terminal,
        }
    }

    fn paint(&self, state: &str, text: &str) -> String {
        if !self.colour {
            return text.to_string();
        }
        // A phase's state may also be `Paused`, a word of its own (not a `State`).
        let code = match State::parse(state) {
            Some(State::Ready) => "32",
            Some(State::Progressing) => "33",
            Some(State::Waiting) => "36",
            Some(State::Degraded) => "31",
            None if state == Reason::Paused.as_str() => "36",
            None => "2",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    fn bar(&self, done: i32, total: i32) -> String {
        const WIDTH: i32 = 10;
        let filled = if total > 0 {
            (done * WIDTH) / total
        } else {
            WIDTH
        };
        let (full, empty) = if self.unicode {
            ("█", "░")
        } else {
            ("#", "-")
        };
        format!(
            "[{}{}]",
            full.repeat(filled as usize),
            empty.repeat((WIDTH - filled) as usize)
        )
    }
}

/// The tree, phases in rollout order (the plan's order) and services by step.
pub fn tree(v: &View, style: Style) -> String {
    let m = Manifests {
        phases: v.phases.values().cloned().collect(),
        services: v.services.values().cloned().collect(),
        ..Default::default()
    };
    let plan = crate::plan::plan(&m);
    let ready = v.services.values().filter(|s| service_ready(s)).count();
    let mut out = format!(
        "namespace {}: {} phase{}, {ready}/{} services Ready\n",
        v.namespace,
        v.phases.len(),
        if v.phases.len() == 1 { "" } else { "s" },
        v.services.len()
    );
    let width = name_column(v);
    for phase in &plan.phases {
        let Some(p) = v.phases.get(&phase.name) else {
            continue;
        };
        let st = p.status.clone().unwrap_or_default();
        let state = st.state.clone().unwrap_or_else(|| "Unknown".into());
        let mut line = format!(
            "{:width$}  {} {:>5}  {}",
            phase.name,
            style.bar(st.ready_services, st.services),
            format!("{}/{}", st.ready_services, st.services),
            style.paint(&state, &format!("{state:11}")),
        );
        if let Some(w) = st.waiting_on.as_deref().filter(|w| !w.is_empty()) {
            line.push_str(&format!("  waiting on {w}"));
        }
        out.push_str(line.trim_end());
        out.push('\n');
        let count = phase.services.len();
        for (i, sp) in phase.services.iter().enumerate() {
            let Some(s) = v.services.get(&sp.name) else {
                continue;
            };
            let last = i + 1 == count;
            let branch = match (style.unicode, last) {
                (true, false) => "├─ ",
                (true, true) => "└─ ",
                (false, false) => "|- ",
                (false, true) => "`- ",
            };
            out.push_str(&service_line(s, v, style, branch, width));
        }
    }
    let orphans: Vec<&LucidService> = v
        .services
        .values()
        .filter(|s| !v.phases.contains_key(&s.spec.phase))
        .collect();
    if !orphans.is_empty() {
        out.push_str("(no LucidPhase)\n");
        for s in orphans {
            out.push_str(&service_line(s, v, style, "   ", width));
        }
    }
    out
}

/// Width of the name column: a phase's name, or a service's behind its 3-character branch
/// (`├─ `). Sized by the service names' own length plus the branch, so a long name under
/// shorter ones (`session-recorder` under `application`) no longer pushes its row's columns
/// right.
fn name_column(v: &View) -> usize {
    let longest = |names: &mut dyn Iterator<Item = &String>| {
        names.map(|n| n.chars().count()).max().unwrap_or(0)
    };
    longest(&mut v.phases.keys()).max(longest(&mut v.services.keys()) + BRANCH_WIDTH)
}

/// `├─ `, `|- `, or the blank indent of a service without a phase.
const BRANCH_WIDTH: usize = 3;

fn service_line(s: &LucidService, v: &View, style: Style, branch: &str, width: usize) -> String {
    let st = s.status.clone().unwrap_or_default();
    let state = if service_ready(s) {
        State::Ready.as_str().to_string()
    } else {
        st.state.clone().unwrap_or_else(|| "Pending".into())
    };
    let mut line = format!(
        "{branch}{:w$}  {:>5}  {}",
        s.name_any(),
        format!("{}/{}", st.ready_replicas, s.spec.replicas),
        style.paint(&state, &format!("{state:11}")),
        w = width.saturating_sub(BRANCH_WIDTH),
    );
    if state != State::Ready.as_str() {
        let why = st
            .waiting_on
            .clone()
            .map(|w| format!("waiting on {w}"))
            .or_else(|| {
                st.conditions
                    .iter()
                    .find(|c| c.type_ == ConditionType::Ready.as_str() && c.status != "True")
                    .map(|c| c.message.clone())
            });
        if let Some(why) = why.filter(|w| !w.is_empty()) {
            line.push_str(&format!("  {why}"));
        }
    }
    line.push_str(&revision_note(&st));
    line.push_str(&placement_note(&st));
    // A running service whose dependency went down says so, Ready or not.
    if let Some(deps) = st
        .conditions
        .iter()
        .find(|c| c.type_ == ConditionType::DependenciesReady.as_str() && c.status == "False")
    {
        line.push_str(&format!("  dependencies {}", deps.message));
    }
    if let Some((_, event)) = v.events.get(&format!("LucidService/{}", s.name_any())) {
        line.push_str(&format!("  (last event: {event})"));
    }
    format!("{}\n", line.trim_end())
}

/// Where the ready pods run, and which node a node-bound claim pins the service to.
fn placement_note(st: &lucid_operator::api::LucidServiceStatus) -> String {
    let mut note = String::new();
    if !st.nodes.is_empty() {
        note.push_str(&format!("  on {}", st.nodes.join(", ")));
    }
    if !st.data_nodes.is_empty() {
        let claims: Vec<String> = st
            .data_nodes
            .iter()
            .map(|d| format!("{} on {}", d.claim, d.node))
            .collect();
        note.push_str(&format!("  (claims: {})", claims.join(", ")));
    }
    note
}

/// The revision the pods run, and when an update was rolled back, what serves instead.
fn revision_note(st: &lucid_operator::api::LucidServiceStatus) -> String {
    let Some(revision) = st.revision else {
        return String::new();
    };
    match &st.rollback {
        Some(back) => format!(
            "  [revision {revision}: generation {} rolled back ({})]",
            back.failed_generation, back.reason
        ),
        None => format!("  [revision {revision}]"),
    }
}

/// A client from the user's kubeconfig (`--kubeconfig`, `--context`) and the namespace to use.
pub(crate) async fn client(k: &KubeArgs) -> Result<(Client, String)> {
    let options = KubeConfigOptions {
        context: k.context.clone(),
        ..Default::default()
    };
    let config = match &k.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| Error::Kubeconfig(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| Error::Kubeconfig(e.to_string()))?
        }
        None if k.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| Error::Kubeconfig(e.to_string()))?,
        None => Config::infer()
            .await
            .map_err(|e| Error::Kubeconfig(e.to_string()))?,
    };
    let namespace = k
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config)?;
    Ok((client, namespace))
}

/// The newest event about a LucidService or LucidPhase, by the time it was last seen.
fn note_event(view: &mut View, e: &K8sEvent) {
    let Some(kind) = e.regarding.as_ref().and_then(|r| r.kind.clone()) else {
        return;
    };
    if kind != "LucidService" && kind != "LucidPhase" {
        return;
    }
    let name = e
        .regarding
        .as_ref()
        .and_then(|r| r.name.clone())
        .unwrap_or_default();
    let when = e
        .series
        .as_ref()
        .map(|s| s.last_observed_time.0.to_string())
        .or_else(|| e.event_time.as_ref().map(|t| t.0.to_string()))
        .or_else(|| {
            e.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
        })
        .unwrap_or_default();
    let text = format!(
        "{}: {}",
        e.reason.clone().unwrap_or_default(),
        e.note.clone().unwrap_or_default()
    );
    let key = format!("{kind}/{name}");
    if view.events.get(&key).is_none_or(|(w, _)| *w <= when) {
        view.events.insert(key, (when, text));
    }
}

pub fn run(k: &KubeArgs, args: &StatusArgs) -> Result<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Kubeconfig(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(run_async(k, args))
}

enum Change {
    Phase(Box<Event<LucidPhase>>),
    Service(Box<Event<LucidService>>),
    Event(Box<Event<K8sEvent>>),
}

async fn run_async(k: &KubeArgs, args: &StatusArgs) -> Result<u8> {
    let (client, namespace) = client(k).await?;
    let phases: Api<LucidPhase> = Api::namespaced(client.clone(), &namespace);
    let services: Api<LucidService> = Api::namespaced(client.clone(), &namespace);
    let events: Api<K8sEvent> = Api::namespaced(client.clone(), &namespace);
    let style = Style::detect();
    let mut view = View {
        namespace: namespace.clone(),
        ..Default::default()
    };

    // One list first: a missing CRD or a forbidden namespace is an error now, not a watch
    // retrying for ever.
    let list = |e: kube::Error| match &e {
        kube::Error::Api(s) if s.code == 404 => Error::Kubeconfig(format!(
            "the Lucid CRDs are not installed in this cluster (install the lucid-operator chart): {e}"
        )),
        _ => Error::Kube(e),
    };
    for p in phases.list(&Default::default()).await.map_err(list)? {
        view.phases.insert(p.name_any(), p);
    }
    for s in services.list(&Default::default()).await.map_err(list)? {
        view.services.insert(s.name_any(), s);
    }
    // Events are a nicety: a cluster that will not list them still shows the tree.
    if let Ok(list) = events.list(&Default::default()).await {
        for e in list {
            note_event(&mut view, &e);
        }
    }
    if !args.watch && !args.wait {
        print!("{}", tree(&view, style));
        return Ok(0);
    }

    let deadline = tokio::time::Instant::now() + args.timeout;
    let cfg = watcher::Config::default();
    let streams = futures::stream::select_all(vec![
        watcher::watcher(phases, cfg.clone())
            .default_backoff()
            .map_ok(|e| Change::Phase(Box::new(e)))
            .boxed(),
        watcher::watcher(services, cfg.clone())
            .default_backoff()
            .map_ok(|e| Change::Service(Box::new(e)))
            .boxed(),
        watcher::watcher(events, cfg)
            .default_backoff()
            .map_ok(|e| Change::Event(Box::new(e)))
            .boxed(),
    ]);
    tokio::pin!(streams);
    // Buffers for a watch's (re)list: objects gone while it was down must disappear.
    let mut relist_phases: Option<BTreeMap<String, LucidPhase>> = None;
    let mut relist_services: Option<BTreeMap<String, LucidService>> = None;
    let live = style.unicode; // a terminal: redraw in place
    let mut last_drawn = String::new();
    loop {
        let drawn = tree(&view, style);
        // Only a changed tree is drawn: events that change nothing shown add no frame.
        if (args.watch || live) && drawn != last_drawn {
            let mut out = std::io::stdout().lock();
            let _ = if live {
                write!(out, "\x1b[H\x1b[2J{drawn}")
            } else {
                writeln!(out, "{drawn}")
            };
            let _ = out.flush();
            last_drawn = drawn.clone();
        }
        if args.wait {
            match verdict(&view) {
                Verdict::Ready => {
                    if !live {
                        print!("{drawn}");
                    }
                    println!("all {} services Ready", view.services.len());
                    return Ok(0);
                }
                Verdict::Degraded(what) => {
                    if !live {
                        print!("{drawn}");
                    }
                    return Err(Error::Degraded(what.join("\n")));
                }
                Verdict::Pending => {}
            }
        }
        let next = if args.wait {
            match tokio::time::timeout_at(deadline, streams.next()).await {
                Ok(next) => next,
                Err(_) => {
                    if !live {
                        print!("{drawn}");
                    }
                    return Err(Error::Timeout(args.timeout.as_secs()));
                }
            }
        } else {
            streams.next().await
        };
        let Some(change) = next else { return Ok(0) };
        // A failed watch is retried with backoff; the tree stays as last seen meanwhile.
        let Ok(change) = change else { continue };
        match change {
            Change::Phase(e) => apply(*e, &mut view.phases, &mut relist_phases),
            Change::Service(e) => apply(*e, &mut view.services, &mut relist_services),
            Change::Event(e) => {
                if let Event::Apply(e) | Event::InitApply(e) = *e {
                    note_event(&mut view, &e);
                }
            }
        }
    }
}

pub(crate) fn apply<K: Resource + Clone>(
    e: Event<K>,
    map: &mut BTreeMap<String, K>,
    relist: &mut Option<BTreeMap<String, K>>,
) {
    match e {
        Event::Apply(o) => {
            map.insert(o.name_any(), o);
        }
        Event::Delete(o) => {
            map.remove(&o.name_any());
        }
        Event::Init => *relist = Some(BTreeMap::new()),
        Event::InitApply(o) => {
            relist
                .get_or_insert_with(BTreeMap::new)
                .insert(o.name_any(), o);
        }
        Event::InitDone => {
            if let Some(fresh) = relist.take() {
                *map = fresh;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(
        name: &str,
        phase: &str,
        deps: &[&str],
        state: Option<(&str, &str)>,
    ) -> LucidService {
        let mut ls: LucidService = serde_json::from_value(serde_json::json!({
            "apiVersion": "lucid.io/v1alpha1", "kind": "LucidService",
            "metadata": {"name": name, "generation": 1},
            "spec": {"image": {"repository": "x"}, "phase": phase, "dependsOn": deps},
        }))
        .unwrap();
        if let Some((state, reason)) = state {
            let ready = if state == "Ready" { "True" } else { "False" };
            let degraded = if state == "Degraded" { "True" } else { "False" };
            ls.status = Some(
                serde_json::from_value(serde_json::json!({
                    "observedGeneration": 1, "readyReplicas": if state == "Ready" { 1 } else { 0 }, "replicas": 1,
                    "state": state,
                    "conditions": [
                        {"type": "Ready", "status": ready, "reason": reason, "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                        {"type": "Degraded", "status": degraded, "reason": reason, "message": "why", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                    ],
                }))
                .unwrap(),
            );
        }
        ls
    }

    fn phase(name: &str, state: &str) -> LucidPhase {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "lucid.io/v1alpha1", "kind": "LucidPhase",
            "metadata": {"name": name, "generation": 1},
            "spec": {},
            "status": {"observedGeneration": 1, "state": state, "services": 1, "readyServices": 1},
        }))
        .unwrap()
    }

    fn view(services: Vec<LucidService>, phases: Vec<LucidPhase>) -> View {
        View {
            namespace: "ns".into(),
            services: services.into_iter().map(|s| (s.name_any(), s)).collect(),
            phases: phases.into_iter().map(|p| (p.name_any(), p)).collect(),
            events: Default::default(),
        }
    }

    #[test]
    fn wait_is_ready_only_when_every_service_and_phase_is() {
        let ready = view(
            vec![service("a", "p", &[], Some(("Ready", "Ready")))],
            vec![phase("p", "Ready")],
        );
        assert_eq!(verdict(&ready), Verdict::Ready);
        let progressing = view(
            vec![service("a", "p", &[], Some(("Progressing", "Rolling")))],
            vec![phase("p", "Progressing")],
        );
        assert_eq!(verdict(&progressing), Verdict::Pending);
        assert_eq!(
            verdict(&view(vec![], vec![])),
            Verdict::Pending,
            "nothing applied yet"
        );
    }

    #[test]
    fn degraded_fails_the_wait_unless_the_graph_error_is_already_gone() {
        let missing_dep = view(
            vec![service(
                "a",
                "p",
                &["ghost"],
                Some(("Degraded", "DependencyNotFound")),
            )],
            vec![phase("p", "Degraded")],
        );
        assert!(
            matches!(verdict(&missing_dep), Verdict::Degraded(w) if w[0].contains("LucidService/a is Degraded: DependencyNotFound: why"))
        );
        // Reported PhaseNotFound, but the phase is there now: the operator has not caught up.
        let stale = view(
            vec![service("a", "p", &[], Some(("Degraded", "PhaseNotFound")))],
            vec![phase("p", "Progressing")],
        );
        assert_eq!(verdict(&stale), Verdict::Pending);
        let crash = view(
            vec![service(
                "a",
                "p",
                &[],
                Some(("Degraded", "CrashLoopBackOff")),
            )],
            vec![phase("p", "Degraded")],
        );
        assert!(matches!(verdict(&crash), Verdict::Degraded(_)));
    }

    fn degraded_phase(name: &str, depends_on: &[&str], reason: &str) -> LucidPhase {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "lucid.io/v1alpha1", "kind": "LucidPhase",
            "metadata": {"name": name, "generation": 1},
            "spec": {"dependsOn": depends_on},
            "status": {"observedGeneration": 1, "state": "Degraded", "conditions": [
                {"type": "Degraded", "status": "True", "reason": reason, "message": "phase why", "lastTransitionTime": "2026-01-01T00:00:00Z"},
            ]},
        }))
        .unwrap()
    }

    #[test]
    fn a_phase_is_degraded_by_its_own_graph_errors_not_by_a_stale_member() {
        // The race seen against the API server: the member's PhaseNotFound is stale, and so
        // is the phase's ServiceDegraded that came of it.
        let stale = view(
            vec![service("a", "p", &[], Some(("Degraded", "PhaseNotFound")))],
            vec![degraded_phase("p", &[], "ServiceDegraded")],
        );
        assert_eq!(verdict(&stale), Verdict::Pending);
        let missing = view(
            vec![service("a", "p", &[], Some(("Progressing", "Rolling")))],
            vec![degraded_phase("p", &["nowhere"], "PhaseDependencyNotFound")],
        );
        assert!(
            matches!(verdict(&missing), Verdict::Degraded(w) if w[0] == "LucidPhase/p is Degraded: PhaseDependencyNotFound: phase why")
        );
    }

    #[test]
    fn the_tree_is_plain_without_colour_and_coloured_with_it() {
        let v = view(
            vec![
                service("db", "p", &[], Some(("Ready", "Ready"))),
                service("api", "p", &["db"], Some(("Progressing", "Rolling"))),
            ],
            vec![phase("p", "Progressing")],
        );
        let plain = tree(
            &v,
            Style {
                colour: false,
                unicode: false,
            },
        );
        assert!(plain.is_ascii() && !plain.contains('\x1b'), "{plain}");
        let lines: Vec<&str> = plain.lines().collect();
        assert!(
            lines[0].starts_with("namespace ns: 1 phase, 1/2 services Ready"),
            "{plain}"
        );
        assert!(
            lines[2].starts_with("|- db") && lines[3].starts_with("`- api"),
            "db first, by step: {plain}"
        );
        let coloured = tree(
            &v,
            Style {
                colour: true,
                unicode: true,
            },
        );
        assert!(
            coloured.contains("\x1b[32mReady") && coloured.contains("└─ api"),
            "{coloured:?}"
        );
    }

    #[test]
    fn a_service_says_which_nodes_its_pods_and_claims_are_on() {
        let mut db = service("db", "p", &[], Some(("Ready", "Ready")));
        let status = db.status.as_mut().unwrap();
        status.nodes = vec!["pi-1".into(), "pi-2".into()];
        status.data_nodes = vec![lucid_operator::api::ClaimNode {
            claim: "db-data".into(),
            node: "pi-1".into(),
        }];
        let plain = tree(
            &view(vec![db], vec![phase("p", "Ready")]),
            Style {
                colour: false,
                unicode: false,
            },
        );
        assert!(
            plain.contains("  on pi-1, pi-2  (claims: db-data on pi-1)"),
            "{plain}"
        );
    }

    #[test]
    fn a_service_name_longer_than_those_above_it_keeps_the_columns_aligned() {
        // As seen in the stack: `session-recorder` under `api-gateway` in phase `application`.
        let v = view(
            vec![
                service("api-gateway", "application", &[], Some(("Ready", "Ready"))),
                service("session-recorder", "application", &["api-gateway"], None),
                service("session-storage", "application", &["api-gateway"], None),
                service("stray-service-with-a-long-name", "nowhere", &[], None),
            ],
            vec![phase("application", "Progressing")],
        );
        let plain = tree(
            &v,
            Style {
                colour: false,
                unicode: true,
            },
        );
        // The replica count column starts at one character offset on every service row.
        let columns: Vec<usize> = plain
            .lines()
            .filter(|l| l.contains("/1 "))
            .filter(|l| !l.starts_with("application"))
            .map(|l| {
                let chars: Vec<char> = l.chars().collect();
                let slash = chars.iter().position(|c| *c == '/').unwrap();
                slash - 1
            })
            .collect();
        assert_eq!(columns.len(), 4, "{plain}");
        assert!(columns.windows(2).all(|w| w[0] == w[1]), "{plain}");
        // And the state column after it.
        let states: Vec<usize> = plain
            .lines()
            .skip(2)
            .filter(|l| l.contains("/1 "))
            .map(|l| {
                let chars: Vec<char> = l.chars().collect();
                let at = l.find(['R', 'P']).unwrap();
                chars.len() - l[at..].chars().count()
            })
            .collect();
        assert!(states.windows(2).all(|w| w[0] == w[1]), "{plain}");
    }
}
