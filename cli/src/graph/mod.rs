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

mod layout;

use layout::MARGIN;
pub use layout::{H, W};

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

/// A box on the canvas (zones, labels, headings), for placement checks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Area {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Area {
    /// Whether the two overlap, with `pad` pixels kept between them.
    pub fn overlaps(&self, o: &Area, pad: f64) -> bool {
        self.x < o.x + o.w + pad && o.x < self.x + self.w + pad && self.y < o.y + o.h + pad && o.y < self.y + self.h + pad
    }
}

/// The areas taken on the canvas, bucketed in a grid so that a candidate is
/// checked only against areas near it (a 10000-zone drawing places tens of
/// thousands of labels; checking each against all was quadratic).
#[derive(Default)]
struct Taken {
    areas: Vec<Area>,
    cells: std::collections::HashMap<(i64, i64), Vec<usize>>,
}

impl Taken {
    const CELL: f64 = 128.0;

    /// The grid cells `a` touches, `pad` around it included.
    fn cells_of(a: &Area, pad: f64) -> impl Iterator<Item = (i64, i64)> {
        let c = |v: f64| (v / Self::CELL).floor() as i64;
        let (x0, x1, y0, y1) = (c(a.x - pad), c(a.x + a.w + pad), c(a.y - pad), c(a.y + a.h + pad));
        (x0..=x1).flat_map(move |x| (y0..=y1).map(move |y| (x, y)))
    }

    fn push(&mut self, a: Area) {
        let i = self.areas.len();
        self.areas.push(a);
        for cell in Self::cells_of(&a, 0.0) {
            self.cells.entry(cell).or_default().push(i);
        }
    }

    fn overlaps(&self, a: &Area, pad: f64) -> bool {
        Self::cells_of(a, pad).any(|cell| self.cells.get(&cell).is_some_and(|v| v.iter().any(|&i| a.overlaps(&self.areas[i], pad))))
    }
}

/// The width a label of `text` takes at font size 10 (Helvetica averages
/// about 0.55 em a character; 0.62 keeps a margin), with room for its halo.
pub fn label_width(text: &str) -> f64 {
    text.chars().count() as f64 * 6.2 + 6.0
}

/// Label height at font size 10, halo included.
pub const LABEL_H: f64 = 14.0;

/// Points along a polyline where a label may sit: the middle of each
/// segment first (longest segments first), then a quarter and three quarters
/// along it.
fn candidates(path: &[(f64, f64)]) -> Vec<((f64, f64), bool)> {
    let mut segs: Vec<((f64, f64), (f64, f64))> = path.windows(2).map(|w| (w[0], w[1])).collect();
    segs.sort_by(|a, b| {
        let len = |s: &((f64, f64), (f64, f64))| (s.1 .0 - s.0 .0).abs() + (s.1 .1 - s.0 .1).abs();
        len(b).partial_cmp(&len(a)).unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut out = Vec::new();
    for t in [0.5, 0.3, 0.7, 0.15, 0.85, 0.4, 0.6, 0.22, 0.78] {
        for (p, q) in &segs {
            let horizontal = (p.1 - q.1).abs() < 0.5;
            out.push(((p.0 + (q.0 - p.0) * t, p.1 + (q.1 - p.1) * t), horizontal));
        }
    }
    out
}

/// Where each edge's label goes: on its path where it overlaps no zone, no
/// heading and no other label; else a number there (`[n]`) with the text in
/// the legend; else only the legend, which names the edge's zones.
enum Placed {
    On(Area, String),
    Legend(Option<Area>, usize),
}

fn place(text: &str, path: &[(f64, f64)], taken: &mut Taken, legend: &mut Vec<String>, pair: String) -> Placed {
    let spots = candidates(path);
    let fits = |w: f64, taken: &Taken| {
        spots.iter().find_map(|&((x, y), horizontal)| {
            // Above or below a horizontal line; beside a vertical one.
            let (side, above, below) = (w / 2.0 + 3.0, -2.0, LABEL_H + 1.0);
            let offsets: &[(f64, f64)] = if horizontal {
                &[(0.0, above), (0.0, below), (w / 2.0, above), (-w / 2.0, above), (w / 2.0, below), (-w / 2.0, below)]
            } else {
                &[(side, 5.0), (-side, 5.0), (side, -10.0), (-side, -10.0), (side, 20.0), (-side, 20.0)]
            };
            offsets.iter().find_map(|&(dx, dy)| {
                let a = Area { x: x + dx - w / 2.0, y: y + dy - LABEL_H, w, h: LABEL_H };
                (a.x >= 0.0 && a.y >= 0.0 && !taken.overlaps(&a, 1.0)).then_some(a)
            })
        })
    };
    if let Some(a) = fits(label_width(text), taken) {
        taken.push(a);
        return Placed::On(a, text.to_string());
    }
    legend.push(format!("{pair}: {text}"));
    let n = legend.len();
    let a = fits(label_width(&format!("[{n}]")), taken);
    if let Some(a) = a {
        taken.push(a);
    }
    Placed::Legend(a, n)
}

pub fn svg(model: &Model, g: &ZoneGraph) -> String {
    let edges = edges(model, g);
    let lay = layout::layout(model, &edges.iter().map(|(a, b, _, _)| (*a, *b)).collect::<Vec<_>>());
    let pos = &lay.boxes;
    let title = model.policy.name.as_deref().unwrap_or("policy");
    // What labels must not cover: the zones, the title and the column headings.
    let mut taken = Taken::default();
    for &(x, y) in pos {
        taken.push(Area { x, y, w: W, h: H });
    }
    taken.push(Area { x: MARGIN, y: MARGIN - 26.0, w: title.chars().count() as f64 * 10.0 + 10.0, h: 20.0 });
    for (head, x) in &lay.heads {
        taken.push(Area { x: *x, y: MARGIN + 6.0, w: head.len() as f64 * 7.5, h: 16.0 });
    }
    let mut legend = Vec::new();
    let placed: Vec<Placed> = edges
        .iter()
        .zip(&lay.paths)
        .map(|((a, b, label, _), path)| place(label, path, &mut taken, &mut legend, model.pair_text(*a, *b)))
        .collect();
    // The canvas holds every box, label and path, and the legend below.
    let right = taken.areas.iter().map(|a| a.x + a.w + MARGIN).fold(lay.width, f64::max);
    let bottom = taken.areas.iter().map(|a| a.y + a.h + MARGIN).fold(lay.height, f64::max);
    let legend_top = bottom;
    let legend_w = legend.iter().map(|l| label_width(l) * 1.1).fold(0.0, f64::max);
    let width = right.max(MARGIN * 2.0 + legend_w);
    let height = if legend.is_empty() { bottom } else { legend_top + 16.0 * legend.len() as f64 + MARGIN };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"Helvetica, Arial, sans-serif\">"
    );
    s.push_str("<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#555555\"/></marker>");
    s.push_str("<marker id=\"arrow-cde\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#c0392b\"/></marker></defs>\n");
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(s, "<text x=\"{MARGIN}\" y=\"{}\" font-size=\"16\" font-weight=\"bold\">{}</text>", MARGIN - 10.0, xml(title));
    for (label, x) in &lay.heads {
        let _ = writeln!(s, "<text x=\"{x:.0}\" y=\"{:.0}\" font-size=\"12\" fill=\"#777777\">{label}</text>", MARGIN + 18.0);
    }
    for ((_, _, _, cde), path) in edges.iter().zip(&lay.paths) {
        let (color, marker) = if *cde { ("#c0392b", "arrow-cde") } else { ("#555555", "arrow") };
        let d: Vec<String> =
            path.iter().enumerate().map(|(i, p)| format!("{} {:.1} {:.1}", if i == 0 { "M" } else { "L" }, p.0, p.1)).collect();
        let _ = writeln!(
            s,
            "<path d=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"{}\" stroke-linejoin=\"round\" marker-end=\"url(#{marker})\"/>",
            d.join(" "),
            if *cde { 2 } else { 1 }
        );
    }
    for (i, z) in model.zones.iter().enumerate() {
        zone_box(&mut s, z, pos[i]);
    }
    // Labels last, over everything, each in the place found for it.
    for ((_, _, _, cde), p) in edges.iter().zip(&placed) {
        let color = if *cde { "#c0392b" } else { "#555555" };
        let (area, text) = match p {
            Placed::On(a, t) => (*a, t.clone()),
            Placed::Legend(Some(a), n) => (*a, format!("[{n}]")),
            Placed::Legend(None, _) => continue,
        };
        let _ = writeln!(
            s,
            "<text class=\"label\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\" fill=\"{color}\" stroke=\"white\" stroke-width=\"3\" paint-order=\"stroke\">{}</text>",
            area.x + area.w / 2.0,
            area.y + area.h - 4.0,
            xml(&text)
        );
    }
    for (k, line) in legend.iter().enumerate() {
        let _ = writeln!(
            s,
            "<text class=\"legend\" x=\"{MARGIN}\" y=\"{:.1}\" font-size=\"10\" fill=\"#333333\">[{}] {}</text>",
            legend_top + 16.0 * k as f64,
            k + 1,
            xml(line)
        );
    }
    s.push_str("</svg>\n");
    s
}
