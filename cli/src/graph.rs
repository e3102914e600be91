//! `segc graph`: the zone graph as Graphviz DOT or as SVG drawn here (no
//! graphviz needed). Zones are coloured by scope, cde highlighted; edges carry
//! what the policy really allows after denies.

use std::fmt::Write;

use petgraph::visit::EdgeRef;
use segc_compiler::graph::ZoneGraph;
use segc_compiler::ir::{Model, Scope, ZoneId};

struct Style {
    fill: &'static str,
    stroke: &'static str,
}

fn style(scope: Scope) -> Style {
    match scope {
        Scope::Cde => Style { fill: "#fde2e1", stroke: "#c0392b" },
        Scope::Connected => Style { fill: "#fff4d6", stroke: "#b7950b" },
        Scope::OutOfScope => Style { fill: "#eeeeee", stroke: "#7f8c8d" },
        Scope::Untrusted => Style { fill: "#e3eefc", stroke: "#2e6fba" },
    }
}

/// Edges in a stable order: (from, to, label, touches cde).
fn edges(model: &Model, g: &ZoneGraph) -> Vec<(ZoneId, ZoneId, String, bool)> {
    let mut v: Vec<_> = g
        .graph
        .edge_references()
        .map(|e| {
            let (a, b) = (g.graph[e.source()], g.graph[e.target()]);
            (a, b, e.weight().to_string(), model.zone(a).is_cde() || model.zone(b).is_cde())
        })
        .collect();
    v.sort();
    v
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

pub fn dot(model: &Model, g: &ZoneGraph) -> String {
    let mut s = String::new();
    let name = model.policy.name.as_deref().unwrap_or("policy");
    let _ = writeln!(s, "digraph \"{}\" {{", dot_escape(name));
    let _ = writeln!(s, "  rankdir=LR;");
    let _ = writeln!(s, "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\"];");
    let _ = writeln!(s, "  edge [fontname=\"Helvetica\", fontsize=10];");
    for z in &model.zones {
        let st = style(z.scope);
        let prefixes: Vec<String> = z.prefixes.iter().map(|p| p.prefix.to_string()).collect();
        let pen = if z.is_cde() { 3 } else { 1 };
        let _ = writeln!(
            s,
            "  \"{}\" [label=\"{}\\n{}\\n{}\", fillcolor=\"{}\", color=\"{}\", penwidth={pen}];",
            dot_escape(&z.name),
            dot_escape(&z.name),
            z.scope.as_str(),
            dot_escape(&prefixes.join(" ")),
            st.fill,
            st.stroke
        );
    }
    for (a, b, label, cde) in edges(model, g) {
        let color = if cde { "#c0392b" } else { "#555555" };
        let _ = writeln!(
            s,
            "  \"{}\" -> \"{}\" [label=\"{}\", color=\"{color}\", fontcolor=\"{color}\"];",
            dot_escape(&model.zone(a).name),
            dot_escape(&model.zone(b).name),
            dot_escape(&label)
        );
    }
    s.push_str("}\n");
    s
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const W: f64 = 190.0;
const H: f64 = 54.0;
const COL: f64 = 330.0;
const ROW: f64 = 96.0;
const MARGIN: f64 = 40.0;

/// Columns by scope, from the outside in: untrusted, out of scope, connected, cde.
fn column(scope: Scope) -> usize {
    match scope {
        Scope::Untrusted => 0,
        Scope::OutOfScope => 1,
        Scope::Connected => 2,
        Scope::Cde => 3,
    }
}

/// Four control points of a cubic curve from the box at `a` to the box at
/// `b`, routed so that it does not run through the boxes between its ends.
fn curve(same: bool, (ax, ay): (f64, f64), (bx, by): (f64, f64)) -> [(f64, f64); 4] {
    if same {
        let (x, y) = (ax + W * 0.7, ay);
        [(x - 20.0, y), (x - 30.0, y - 44.0), (x + 30.0, y - 44.0), (x + 20.0, y)]
    } else if (bx - ax).abs() < 1.0 {
        // Same column: out of the right side and back in, further out the
        // more rows it spans.
        let out = 50.0 + 14.0 * ((by - ay).abs() / ROW);
        let (sy, ty) = (ay + H / 2.0, by + H / 2.0);
        [(ax + W, sy), (ax + W + out, sy), (bx + W + out, ty), (bx + W, ty)]
    } else if bx > ax {
        let (sy, ty) = (ay + H / 2.0, by + H / 2.0);
        let lift = if (by - ay).abs() < 1.0 && bx - ax > COL + 1.0 { -ROW * 0.55 } else { 0.0 };
        [(ax + W, sy), (ax + W + 90.0, sy + lift), (bx - 90.0, ty + lift), (bx, ty)]
    } else {
        // Backwards: leave from the bottom, arrive at the right side.
        let dip = 40.0 + 10.0 * ((ax - bx) / COL);
        let (sx, sy) = (ax + W / 2.0, ay + H);
        [(sx, sy), (sx, sy + dip), (bx + W + 60.0, by + H / 2.0 + dip), (bx + W, by + H / 2.0)]
    }
}

/// One zone's box: name, first prefixes, scope colours.
fn zone_box(s: &mut String, z: &segc_compiler::ir::Zone, (x, y): (f64, f64)) {
    let st = style(z.scope);
    let pen = if z.is_cde() { 3 } else { 1 };
    let _ = writeln!(
        s,
        "<g><title>{}</title><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{W}\" height=\"{H}\" rx=\"8\" fill=\"{}\" stroke=\"{}\" stroke-width=\"{pen}\"/>",
        xml(&format!("{} ({}, {})", z.name, z.scope.as_str(), z.kind.as_str())),
        st.fill,
        st.stroke
    );
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"14\" font-weight=\"bold\" text-anchor=\"middle\">{}</text>",
        x + W / 2.0,
        y + 22.0,
        xml(&z.name)
    );
    let prefixes: Vec<String> = z.prefixes.iter().take(2).map(|p| p.prefix.to_string()).collect();
    let more = if z.prefixes.len() > 2 { " ..." } else { "" };
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#444444\">{}{more}</text></g>",
        x + W / 2.0,
        y + 40.0,
        xml(&prefixes.join(", "))
    );
}

pub fn svg(model: &Model, g: &ZoneGraph) -> String {
    let mut pos: Vec<(f64, f64)> = vec![(0.0, 0.0); model.zones.len()];
    let mut rows = [0usize; 4];
    for (i, z) in model.zones.iter().enumerate() {
        let c = column(z.scope);
        pos[i] = (MARGIN + c as f64 * COL, MARGIN + 30.0 + rows[c] as f64 * ROW);
        rows[c] += 1;
    }
    let used_cols = rows.iter().rposition(|&r| r > 0).map_or(1, |c| c + 1);
    let width = MARGIN * 2.0 + (used_cols - 1) as f64 * COL + W;
    let height = MARGIN * 2.0 + 30.0 + rows.iter().max().copied().unwrap_or(1).max(1) as f64 * ROW;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"Helvetica, Arial, sans-serif\">"
    );
    s.push_str("<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#555555\"/></marker>");
    s.push_str("<marker id=\"arrow-cde\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#c0392b\"/></marker></defs>\n");
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let title = model.policy.name.as_deref().unwrap_or("policy");
    let _ = writeln!(s, "<text x=\"{MARGIN}\" y=\"{}\" font-size=\"16\" font-weight=\"bold\">{}</text>", MARGIN - 10.0, xml(title));
    for (c, label) in ["untrusted", "out of scope", "connected", "cde"].iter().enumerate().take(used_cols) {
        let _ = writeln!(
            s,
            "<text x=\"{:.0}\" y=\"{:.0}\" font-size=\"12\" fill=\"#777777\">{label}</text>",
            MARGIN + c as f64 * COL,
            MARGIN + 18.0
        );
    }
    for (a, b, label, cde) in edges(model, g) {
        let (color, marker) = if cde { ("#c0392b", "arrow-cde") } else { ("#555555", "arrow") };
        let pts = curve(a == b, pos[a.0 as usize], pos[b.0 as usize]);
        let path = format!(
            "M {:.1} {:.1} C {:.1} {:.1}, {:.1} {:.1}, {:.1} {:.1}",
            pts[0].0, pts[0].1, pts[1].0, pts[1].1, pts[2].0, pts[2].1, pts[3].0, pts[3].1
        );
        // The label sits on the curve's midpoint.
        let mid = |i: usize| {
            0.125
                * [pts[0], pts[1], pts[2], pts[3]]
                    .iter()
                    .zip([1.0, 3.0, 3.0, 1.0])
                    .map(|(p, w)| w * if i == 0 { p.0 } else { p.1 })
                    .sum::<f64>()
        };
        let (lx, ly) = (mid(0), mid(1) - 4.0);
        let _ = writeln!(
            s,
            "<path d=\"{path}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"{}\" marker-end=\"url(#{marker})\"/>",
            if cde { 2 } else { 1 }
        );
        let _ = writeln!(
            s,
            "<text x=\"{lx:.1}\" y=\"{ly:.1}\" font-size=\"10\" text-anchor=\"middle\" fill=\"{color}\" stroke=\"white\" stroke-width=\"3\" paint-order=\"stroke\">{}</text>",
            xml(&label)
        );
    }
    for (i, z) in model.zones.iter().enumerate() {
        zone_box(&mut s, z, pos[i]);
    }
    s.push_str("</svg>\n");
    s
}
