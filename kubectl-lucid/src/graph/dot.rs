//! The graph as Graphviz DOT, for reviews and docs: one cluster per phase in rollout order,
//! one same-rank group per step, an edge from each dependency to the service that waits for
//! it. Graphviz is not needed by the plugin; `-o svg` draws without it.

use super::{BandKind, Graph};

/// DOT text; identifiers are quoted, so any name is safe.
pub fn dot(g: &Graph) -> String {
    let mut out = String::from(
        "// kubectl lucid plan -o dot: an edge a -> b means b dependsOn a (a is Ready first).\n\
         digraph lucid {\n  rankdir=LR;\n  newrank=true;\n  node [shape=box, style=\"rounded\", fontname=\"sans-serif\"];\n  edge [color=\"#6b7280\"];\n",
    );
    for (i, band) in g.bands.iter().enumerate() {
        out.push_str(&format!("  subgraph \"cluster_{i}\" {{\n"));
        let label = if band.subtitle.is_empty() {
            band.title.clone()
        } else {
            format!("{}\\n{}", band.title, band.subtitle)
        };
        out.push_str(&format!("    label={};\n", quote_label(&label)));
        if band.kind != BandKind::Phase {
            out.push_str("    style=dashed;\n");
        }
        for column in &band.columns {
            let names: Vec<String> = column.iter().map(|n| quote(n)).collect();
            out.push_str(&format!("    {{ rank=same; {}; }}\n", names.join("; ")));
        }
        out.push_str("  }\n");
    }
    for (from, to) in &g.edges {
        out.push_str(&format!("  {} -> {};\n", quote(from), quote(to)));
    }
    out.push_str("}\n");
    out
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A label keeps its `\n` line breaks.
fn quote_label(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\\\""))
}
