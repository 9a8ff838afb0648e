//! The laid-out graph as a self-contained SVG, written by hand (no Graphviz at run time).
//! The same drawing is the dashboard's live graph: there each service's group carries its
//! name in `data-service`, and the page restyles it from the cluster's state.

use super::{BandKind, Layout, n};

/// One colour per dependency, so a bundle can be followed across the picture.
const PALETTE: &[&str] = &[
    "#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#dc2626",
    "#4b5563", "#c026d3",
];

const STYLE: &str = "
.band{fill:#f3f4f6;stroke:#d1d5db}
.band.missing,.band.no-phase{fill:#fef2f2;stroke:#fca5a5;stroke-dasharray:6 4}
.band-title{font:600 15px sans-serif;fill:#111827}
.band-subtitle{font:12px sans-serif;fill:#6b7280}
.edge{fill:none;stroke-width:1.6;opacity:.75}
.edge.backwards{stroke-dasharray:5 4;stroke:#dc2626}
.node rect{fill:#fff;stroke:#6b7280;stroke-width:1.2}
.node.missing rect{fill:#fef2f2;stroke:#dc2626;stroke-dasharray:4 3}
.node-name{font:13px sans-serif;fill:#111827}
.node-detail{font:11px sans-serif;fill:#6b7280}
";

/// `live`: the dashboard's variant, with a detail line per service for the page to fill.
pub fn svg(l: &Layout, live: bool) -> String {
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" class=\"lucid-graph\" role=\"img\" aria-label=\"Rollout graph: {count} services\">\n<style>{STYLE}</style>\n",
        w = n(l.width),
        h = n(l.height),
        count = l
            .nodes
            .iter()
            .filter(|b| b.kind != BandKind::Missing)
            .count(),
    );
    for b in &l.bands {
        out.push_str(&format!(
            "<g class=\"band-group\" data-band=\"{name}\"><rect class=\"band {kind}\" x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" rx=\"10\"/><text class=\"band-title\" x=\"{tx}\" y=\"{ty}\">{title}</text><text class=\"band-subtitle\" x=\"{tx}\" y=\"{sy}\">{subtitle}</text>",
            name = esc(&b.name),
            kind = kind_class(b.kind),
            x = n(b.x),
            y = n(b.y),
            w = n(b.w),
            h = n(b.h),
            tx = n(b.x + 12.0),
            ty = n(b.y + 22.0),
            sy = n(b.y + 40.0),
            title = esc(&b.title),
            subtitle = esc(&b.subtitle),
        ));
        if live && b.kind == BandKind::Phase {
            out.push_str(&format!(
                "<text class=\"band-progress\" x=\"{}\" y=\"{}\"></text>",
                n(b.x + 12.0),
                n(b.y + 57.0)
            ));
        }
        out.push_str("</g>\n");
    }
    out.push_str("<g class=\"edges\">\n");
    for e in &l.edges {
        out.push_str(&format!(
            "<path class=\"edge{back}\" data-from=\"{from}\" data-to=\"{to}\" stroke=\"{colour}\" d=\"{d}\"><title>{from} \u{2192} {to}</title></path>\n",
            back = if e.backwards { " backwards" } else { "" },
            from = esc(&e.from),
            to = esc(&e.to),
            colour = PALETTE[e.hue % PALETTE.len()],
            d = e.d,
        ));
    }
    out.push_str("</g>\n<g class=\"nodes\">\n");
    for b in &l.nodes {
        let detail = match b.kind {
            BandKind::Missing => "not found".to_string(),
            _ if live => String::new(),
            BandKind::NoPhase => "no phase".to_string(),
            BandKind::Phase => format!("{} \u{b7} step {}", b.band, b.step),
        };
        out.push_str(&format!(
            "<g class=\"node {kind}\" data-service=\"{name}\"{focus}><rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" rx=\"6\"/><text class=\"node-name\" x=\"{tx}\" y=\"{ny}\">{name}</text><text class=\"node-detail\" x=\"{tx}\" y=\"{dy}\">{detail}</text></g>\n",
            kind = kind_class(b.kind),
            name = esc(&b.name),
            focus = if live && b.kind != BandKind::Missing {
                " tabindex=\"0\" role=\"button\""
            } else {
                ""
            },
            x = n(b.x),
            y = n(b.y),
            w = n(b.w),
            h = n(b.h),
            tx = n(b.x + 10.0),
            ny = n(b.y + 15.0),
            dy = n(b.y + 29.0),
            detail = esc(&detail),
        ));
    }
    out.push_str("</g>\n</svg>\n");
    out
}

fn kind_class(k: BandKind) -> &'static str {
    match k {
        BandKind::Phase => "phase",
        BandKind::NoPhase => "no-phase",
        BandKind::Missing => "missing",
    }
}

/// Text and attribute values: names come from the cluster or the user's files.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
