//! The rollout graph as a picture: phases as bands left to right in rollout order, inside each
//! band one column per step (the service's depth among its phase's members), every
//! `dependsOn` an edge from the dependency to the service that waits for it. Pure functions:
//! [`Graph::of`] takes a plan, [`layout`] places it, [`dot`] and [`svg`] write it.
//!
//! Readable at the stack's size (27 services, 4 phases, 73 edges, most of them from the
//! two databases) because edges are bundled: all edges from one service into one column share
//! a trunk, which runs in the free lane between rows past the columns in between and ends in
//! a vertical bus beside the target column; each edge is still its own path (the bundle is
//! drawn by the paths overlapping), so every edge can be found, titled and highlighted.

pub mod dot;
pub mod svg;

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use serde::Serialize;

use crate::manifests::Manifests;
use crate::plan::Plan;

/// A band of columns: a phase, or one of the two pseudo-phases for services whose phase does
/// not exist and for dependencies that name no service.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Band {
    pub name: String,
    /// `1. foundation`, `(no phase)`, `(missing)`.
    pub title: String,
    /// `after foundation`, `first`, `paused`, or empty for pseudo-phases.
    pub subtitle: String,
    pub kind: BandKind,
    /// Columns in step order; each holds service names in the plan's order.
    pub columns: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum BandKind {
    Phase,
    /// Services whose `spec.phase` names no LucidPhase.
    NoPhase,
    /// Names in `dependsOn` that no LucidService has.
    Missing,
}

/// What is drawn, before placing: bands and edges `(dependency, dependent)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Graph {
    pub bands: Vec<Band>,
    pub edges: Vec<(String, String)>,
}

impl Graph {
    /// The plan's phases and steps; services without a phase and missing dependencies in
    /// bands of their own, so that every `dependsOn` has both ends drawn.
    pub fn of(plan: &Plan, m: &Manifests) -> Graph {
        let mut bands = Vec::new();
        let mut known: BTreeSet<String> = BTreeSet::new();
        let mut edges = Vec::new();
        for phase in &plan.phases {
            let steps = phase.services.iter().map(|s| s.step).max().unwrap_or(0);
            let mut columns = vec![Vec::new(); steps];
            for s in &phase.services {
                columns[s.step.max(1) - 1].push(s.name.clone());
                known.insert(s.name.clone());
                edges.extend(s.waits_for.iter().map(|d| (d.clone(), s.name.clone())));
            }
            columns.retain(|c| !c.is_empty());
            let subtitle = match (phase.depends_on.is_empty(), phase.paused) {
                (true, false) => "first".to_string(),
                (true, true) => "first, paused".to_string(),
                (false, paused) => format!(
                    "after {}{}",
                    phase.depends_on.join(", "),
                    if paused { ", paused" } else { "" }
                ),
            };
            bands.push(Band {
                name: phase.name.clone(),
                title: format!("{}. {}", phase.order, phase.name),
                subtitle,
                kind: BandKind::Phase,
                columns,
            });
        }
        let orphans: Vec<String> = m
            .services
            .iter()
            .filter(|s| !known.contains(&s.name_any()))
            .map(|s| {
                edges.extend(s.spec.depends_on.iter().map(|d| (d.clone(), s.name_any())));
                s.name_any()
            })
            .collect();
        known.extend(orphans.iter().cloned());
        let missing: Vec<String> = edges
            .iter()
            .map(|(from, _)| from.clone())
            .filter(|d| !known.contains(d))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !missing.is_empty() {
            bands.insert(
                0,
                Band {
                    name: "(missing)".into(),
                    title: "(missing)".into(),
                    subtitle: "named in dependsOn, not found".into(),
                    kind: BandKind::Missing,
                    columns: vec![missing],
                },
            );
        }
        if !orphans.is_empty() {
            bands.push(Band {
                name: "(no phase)".into(),
                title: "(no phase)".into(),
                subtitle: "their LucidPhase is not found".into(),
                kind: BandKind::NoPhase,
                columns: vec![orphans],
            });
        }
        Graph { bands, edges }
    }
}

pub const NODE_W: f64 = 190.0;
pub const NODE_H: f64 = 36.0;
/// Between rows: room for a few trunks in the lane between two boxes.
const ROW_GAP: f64 = 22.0;
/// Between two columns of one phase, and between phases: room for the buses.
const COLUMN_GAP: f64 = 90.0;
const BAND_GAP: f64 = 120.0;
const BAND_PAD: f64 = 14.0;
const MARGIN: f64 = 20.0;
/// Band title, subtitle and (on the dashboard) the phase's progress above the rows.
const HEADER: f64 = 66.0;

/// Where everything goes, in SVG user units.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Layout {
    pub width: f64,
    pub height: f64,
    pub bands: Vec<BandBox>,
    pub nodes: Vec<NodeBox>,
    pub edges: Vec<EdgePath>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BandBox {
    pub name: String,
    pub title: String,
    pub subtitle: String,
    pub kind: BandKind,
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeBox {
    pub name: String,
    pub band: String,
    pub kind: BandKind,
    /// 1-based column within its band (the plan's step).
    pub step: usize,
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EdgePath {
    pub from: String,
    pub to: String,
    /// SVG path data.
    pub d: String,
    /// Index of the bundle's colour (one per dependency).
    pub hue: usize,
    /// Drawn right to left: the dependency is in a later column (a phase order that does not
    /// match `dependsOn`, which the plan reports as an error).
    pub backwards: bool,
}

struct Placed {
    column: usize,
    row: usize,
}

/// Places `g`: columns left to right, rows on one grid for every column (so the lanes
/// between rows are free everywhere), each column ordered by where its dependencies sit
/// (the barycentre heuristic) and centred on the tallest column.
pub fn layout(g: &Graph) -> Layout {
    // Every column in drawing order, with its band and step.
    let mut columns: Vec<(usize, usize, Vec<String>)> = Vec::new();
    for (b, band) in g.bands.iter().enumerate() {
        for (s, col) in band.columns.iter().enumerate() {
            columns.push((b, s + 1, col.clone()));
        }
    }
    let deps: BTreeMap<&str, Vec<&str>> =
        g.edges.iter().fold(BTreeMap::new(), |mut m, (from, to)| {
            m.entry(to.as_str()).or_default().push(from.as_str());
            m
        });
    let tallest = columns.iter().map(|c| c.2.len()).max().unwrap_or(0);
    let mut placed: BTreeMap<String, Placed> = BTreeMap::new();
    for (ci, (_, _, names)) in columns.iter_mut().enumerate() {
        // Barycentre of the rows of dependencies already placed; others keep their order
        // after them.
        let key = |n: &String| -> f64 {
            let rows: Vec<f64> = deps
                .get(n.as_str())
                .into_iter()
                .flatten()
                .filter_map(|d| placed.get(*d))
                .map(|p| p.row as f64)
                .collect();
            if rows.is_empty() {
                f64::MAX
            } else {
                rows.iter().sum::<f64>() / rows.len() as f64
            }
        };
        let mut keyed: Vec<(f64, usize, String)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (key(n), i, n.clone()))
            .collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let offset = (tallest - keyed.len()) / 2;
        *names = keyed.into_iter().map(|k| k.2).collect();
        for (r, n) in names.iter().enumerate() {
            placed.insert(
                n.clone(),
                Placed {
                    column: ci,
                    row: offset + r,
                },
            );
        }
    }
    // Column x positions: a wider gap between bands than inside one.
    let mut xs = Vec::new();
    let mut x = MARGIN + BAND_PAD;
    for (ci, (band, _, _)) in columns.iter().enumerate() {
        if ci > 0 {
            x += NODE_W
                + if columns[ci - 1].0 == *band {
                    COLUMN_GAP
                } else {
                    BAND_GAP
                };
        }
        xs.push(x);
    }
    let top = MARGIN + HEADER;
    let row_y = |row: usize| top + row as f64 * (NODE_H + ROW_GAP);
    let rows_h = tallest as f64 * (NODE_H + ROW_GAP) - ROW_GAP;
    let height = top + rows_h.max(NODE_H) + BAND_PAD + MARGIN;
    let width = xs
        .last()
        .map_or(2.0 * MARGIN, |x| x + NODE_W + BAND_PAD + MARGIN);

    let mut bands = Vec::new();
    for (b, band) in g.bands.iter().enumerate() {
        let cols: Vec<usize> = (0..columns.len()).filter(|c| columns[*c].0 == b).collect();
        let (Some(first), Some(last)) = (cols.first(), cols.last()) else {
            // A phase with no services: a narrow band so it is still seen.
            continue;
        };
        bands.push(BandBox {
            name: band.name.clone(),
            title: band.title.clone(),
            subtitle: band.subtitle.clone(),
            kind: band.kind,
            x: xs[*first] - BAND_PAD,
            y: MARGIN,
            w: xs[*last] - xs[*first] + NODE_W + 2.0 * BAND_PAD,
            h: height - 2.0 * MARGIN,
        });
    }
    let mut nodes = Vec::new();
    for (ci, (b, step, names)) in columns.iter().enumerate() {
        for n in names {
            nodes.push(NodeBox {
                name: n.clone(),
                band: g.bands[*b].name.clone(),
                kind: g.bands[*b].kind,
                step: *step,
                x: xs[ci],
                y: row_y(placed[n].row),
                w: NODE_W,
                h: NODE_H,
            });
        }
    }

    // Bundles: (dependency, target column) -> targets. Each bundle gets a bus left of its
    // target column; bundles into one column are spread by their source's row so that their
    // trunks do not cross one another before reaching their buses.
    let mut bundles: BTreeMap<(usize, &str), Vec<&str>> = BTreeMap::new();
    for (from, to) in &g.edges {
        let (Some(_), Some(t)) = (placed.get(from), placed.get(to)) else {
            continue;
        };
        bundles
            .entry((t.column, from.as_str()))
            .or_default()
            .push(to.as_str());
    }
    let mut bus_x: BTreeMap<(usize, &str), f64> = BTreeMap::new();
    let mut by_column: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for (column, from) in bundles.keys() {
        if placed[*from].column < *column {
            by_column.entry(*column).or_default().push(from);
        }
    }
    for (column, mut froms) in by_column {
        // Highest source nearest the column: its trunk then stays above the others'.
        froms.sort_by_key(|f| (placed[*f].row, placed[*f].column));
        let room = if columns
            .get(column.wrapping_sub(1))
            .is_some_and(|c| c.0 == columns[column].0)
        {
            COLUMN_GAP
        } else {
            BAND_GAP
        } - 30.0;
        let step = (room / froms.len().max(1) as f64).min(9.0);
        for (k, f) in froms.iter().enumerate() {
            bus_x.insert((column, f), xs[column] - 14.0 - k as f64 * step);
        }
    }
    let hues: BTreeMap<&str, usize> = g
        .edges
        .iter()
        .map(|(f, _)| f.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .enumerate()
        .map(|(i, f)| (f, i))
        .collect();
    let mut edges = Vec::new();
    for (from, to) in &g.edges {
        let (Some(s), Some(t)) = (placed.get(from), placed.get(to)) else {
            continue;
        };
        let (x1, y1) = (xs[s.column] + NODE_W, row_y(s.row) + NODE_H / 2.0);
        let (x2, y2) = (xs[t.column], row_y(t.row) + NODE_H / 2.0);
        let hue = hues[from.as_str()];
        if t.column <= s.column {
            // Backwards (or into the same column): a loop around, dashed by the stylesheet.
            let (bx, by) = (xs[s.column], row_y(s.row) + NODE_H / 2.0);
            let d = format!(
                "M{} {} C{} {} {} {} {} {}",
                n(bx),
                n(by),
                n(bx - 60.0),
                n(by - 40.0),
                n(x2 + NODE_W + 60.0),
                n(y2 - 40.0),
                n(x2 + NODE_W),
                n(y2)
            );
            edges.push(EdgePath {
                from: from.clone(),
                to: to.clone(),
                d,
                hue,
                backwards: true,
            });
            continue;
        }
        let targets = &bundles[&(t.column, from.as_str())];
        let ys: Vec<f64> = targets
            .iter()
            .map(|x| row_y(placed[*x].row) + NODE_H / 2.0)
            .collect();
        let (lo, hi) = ys
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), y| (lo.min(*y), hi.max(*y)));
        let bx = bus_x[&(t.column, from.as_str())];
        let mut d = format!("M{} {}", n(x1), n(y1));
        // The trunk: straight into the bus when no column lies between, else down (or up)
        // to the lane under the source's row, along it past the columns in between, then
        // into the bus.
        let start_y = if t.column == s.column + 1 {
            y1
        } else {
            let lane = row_y(s.row) + NODE_H + ROW_GAP / 2.0 + lane_offset(hue);
            let turn = x1 + COLUMN_GAP / 3.0;
            d.push_str(&format!(
                " C{} {} {} {} {} {} L{} {}",
                n(turn),
                n(y1),
                n(turn - 10.0),
                n(lane),
                n(turn + 10.0),
                n(lane),
                n(bx - 40.0),
                n(lane)
            ));
            lane
        };
        let join = start_y.clamp(lo, hi);
        let from_x = if t.column == s.column + 1 {
            x1
        } else {
            bx - 40.0
        };
        d.push_str(&format!(
            " C{} {} {} {} {} {} L{} {} L{} {}",
            n((from_x + bx) / 2.0),
            n(start_y),
            n((from_x + bx) / 2.0),
            n(join),
            n(bx),
            n(join),
            n(bx),
            n(y2),
            n(x2),
            n(y2)
        ));
        edges.push(EdgePath {
            from: from.clone(),
            to: to.clone(),
            d,
            hue,
            backwards: false,
        });
    }
    Layout {
        width,
        height,
        bands,
        nodes,
        edges,
    }
}

/// Trunks of different dependencies in one lane, a little apart.
fn lane_offset(hue: usize) -> f64 {
    ((hue % 5) as f64 - 2.0) * 3.0
}

/// A coordinate as written into SVG: at most one decimal, no `-0`.
pub fn n(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r == 0.0 {
        "0".into()
    } else if r.fract() == 0.0 {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{PhasePlan, ServicePlan};

    fn plan() -> Plan {
        let svc = |name: &str, step, deps: &[&str]| ServicePlan {
            name: name.into(),
            step,
            waits_for_phases: vec![],
            waits_for: deps.iter().map(|d| d.to_string()).collect(),
        };
        Plan {
            phases: vec![
                PhasePlan {
                    name: "base".into(),
                    order: 1,
                    depends_on: vec![],
                    paused: false,
                    services: vec![svc("db", 1, &[]), svc("cache", 2, &["db"])],
                },
                PhasePlan {
                    name: "app".into(),
                    order: 2,
                    depends_on: vec!["base".into()],
                    paused: true,
                    services: vec![
                        svc("api", 1, &["db", "cache"]),
                        svc("web", 1, &["db", "ghost"]),
                    ],
                },
            ],
            errors: vec![],
        }
    }

    #[test]
    fn bands_follow_the_phases_and_missing_dependencies_get_their_own() {
        let g = Graph::of(&plan(), &Manifests::default());
        let titles: Vec<&str> = g.bands.iter().map(|b| b.title.as_str()).collect();
        assert_eq!(titles, ["(missing)", "1. base", "2. app"]);
        assert_eq!(g.bands[1].columns, [vec!["db"], vec!["cache"]]);
        assert_eq!(g.bands[2].subtitle, "after base, paused");
        assert_eq!(g.edges.len(), 5);
    }

    #[test]
    fn every_edge_runs_from_its_dependency_right_side_to_its_dependent_left_side() {
        let l = layout(&Graph::of(&plan(), &Manifests::default()));
        let at = |name: &str| l.nodes.iter().find(|b| b.name == name).unwrap();
        for e in &l.edges {
            let (from, to) = (at(&e.from), at(&e.to));
            assert!(from.x < to.x, "{e:?}");
            let start = format!("M{} {}", n(from.x + from.w), n(from.y + from.h / 2.0));
            let end = format!("L{} {}", n(to.x), n(to.y + to.h / 2.0));
            assert!(
                e.d.starts_with(&start) && e.d.ends_with(&end),
                "{e:?} {start} {end}"
            );
        }
        // No two boxes overlap.
        for a in &l.nodes {
            for b in &l.nodes {
                if a.name != b.name {
                    let apart = a.x + a.w <= b.x
                        || b.x + b.w <= a.x
                        || a.y + a.h <= b.y
                        || b.y + b.h <= a.y;
                    assert!(apart, "{a:?} {b:?}");
                }
            }
        }
    }
}
