//! The zone diagram's layout: a layered drawing with orthogonal edges routed
//! in channels.
//!
//! - Layers are the scopes, left to right: untrusted, out of scope,
//!   connected, cde (only those the policy uses). Within a layer, zones are
//!   ordered by the barycentre heuristic (Sugiyama et al.): a few sweeps that
//!   sort each layer by the mean row of its neighbours, to shorten edges and
//!   cut crossings; ties keep name order, so the drawing is deterministic.
//! - Zones sit on a grid. Between two columns runs a vertical channel, between
//!   two rows a horizontal one; edges travel only in channels, so no edge ever
//!   crosses a box: out of the source's side into the channel beside it,
//!   along a horizontal channel when the target's channel is another one, and
//!   into the target's side. Edges inside one layer (cde to cde, a zone to
//!   itself) loop through the channel on the layer's right.
//! - In each channel, segments get tracks by the left-edge algorithm of
//!   channel routing (interval partitioning): two segments that overlap along
//!   the channel never share a track, and each channel is as wide as its
//!   tracks need. Where several edges meet one side of a box, their ports are
//!   spread along it, ordered by the other end's row.

use std::collections::BTreeMap;

use segc_compiler::ir::{Model, Scope, ZoneId};

pub const W: f64 = 190.0;
pub const H: f64 = 54.0;
pub const MARGIN: f64 = 40.0;
/// Title and column headings above the first channel.
pub const HEAD: f64 = 40.0;
const TRACK: f64 = 9.0;
const GAP_X: f64 = 56.0;
const GAP_Y: f64 = 26.0;

/// Layers by scope, from the outside in.
const SCOPES: [Scope; 4] = [Scope::Untrusted, Scope::OutOfScope, Scope::Connected, Scope::Cde];

pub struct Layout {
    /// Top-left corner of each zone's box, by zone id.
    pub boxes: Vec<(f64, f64)>,
    /// Each edge's polyline, from the source's side to the target's.
    pub paths: Vec<Vec<(f64, f64)>>,
    /// Each used layer: its heading and x.
    pub heads: Vec<(&'static str, f64)>,
    pub width: f64,
    pub height: f64,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Side {
    Left,
    Right,
}

/// A segment's span along its channel (abstract units), for track assignment.
struct Span {
    lo: f64,
    hi: f64,
    /// (edge, which of its segments in this kind of channel)
    owner: (usize, usize),
}

/// Each segment's track in one channel, and how many tracks the channel has.
type Tracks = (BTreeMap<(usize, usize), usize>, usize);

/// The ends meeting one side of a box: (other end's row, edge, which end).
type Ports = BTreeMap<(usize, Side), Vec<(usize, usize, usize)>>;

/// Interval partitioning: the fewest tracks such that overlapping spans never
/// share one. Returns the track of each span and the number of tracks.
fn tracks(spans: &mut [Span]) -> Tracks {
    spans.sort_by(|a, b| (a.lo, a.hi, a.owner).partial_cmp(&(b.lo, b.hi, b.owner)).unwrap_or(std::cmp::Ordering::Equal));
    let mut ends: Vec<f64> = Vec::new();
    let mut out = BTreeMap::new();
    for s in spans.iter() {
        let t = match ends.iter().position(|&e| e < s.lo - 1e-9) {
            Some(t) => t,
            None => {
                ends.push(f64::NEG_INFINITY);
                ends.len() - 1
            }
        };
        ends[t] = s.hi;
        out.insert(s.owner, t);
    }
    (out, ends.len())
}

/// Rows within each used layer, by the barycentre heuristic.
fn order(model: &Model, col: &[usize], ncols: usize, edges: &[(ZoneId, ZoneId)]) -> Vec<usize> {
    let n = model.zones.len();
    let mut layers: Vec<Vec<usize>> = vec![Vec::new(); ncols];
    for z in 0..n {
        layers[col[z]].push(z);
    }
    let mut row = vec![0usize; n];
    let place = |layers: &Vec<Vec<usize>>, row: &mut Vec<usize>| {
        for l in layers {
            for (r, &z) in l.iter().enumerate() {
                row[z] = r;
            }
        }
    };
    place(&layers, &mut row);
    // Each zone's neighbours in other layers, in edge order (so the means,
    // hence the order, are what scanning every edge for every zone gave),
    // gathered once instead of once per zone and sweep.
    let mut neighbours: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in edges {
        let (a, b) = (a.0 as usize, b.0 as usize);
        if col[a] != col[b] {
            neighbours[a].push(b);
            neighbours[b].push(a);
        }
    }
    for _ in 0..4 {
        for layer in layers.iter_mut() {
            let key: Vec<(f64, usize)> = layer
                .iter()
                .map(|&z| {
                    let others: Vec<f64> = neighbours[z].iter().map(|&o| row[o] as f64).collect();
                    let k = if others.is_empty() { row[z] as f64 } else { others.iter().sum::<f64>() / others.len() as f64 };
                    (k, z)
                })
                .collect();
            let mut sorted = key.clone();
            sorted.sort_by(|a, b| (a.0, row[a.1]).partial_cmp(&(b.0, row[b.1])).unwrap_or(std::cmp::Ordering::Equal));
            *layer = sorted.into_iter().map(|(_, z)| z).collect();
            for (r, &z) in layer.iter().enumerate() {
                row[z] = r;
            }
        }
    }
    row
}

pub fn layout(model: &Model, edges: &[(ZoneId, ZoneId)]) -> Layout {
    let n = model.zones.len();
    let used: Vec<Scope> = SCOPES.iter().copied().filter(|s| model.zones.iter().any(|z| z.scope == *s)).collect();
    let ncols = used.len().max(1);
    let col: Vec<usize> = model.zones.iter().map(|z| used.iter().position(|s| *s == z.scope).unwrap_or(0)).collect();
    let row = order(model, &col, ncols, edges);
    let nrows = row.iter().map(|r| r + 1).max().unwrap_or(1);

    // Sides and ports: which side each end uses, spread along it.
    let ends: Vec<(Side, Side)> = edges
        .iter()
        .map(|&(a, b)| match col[a.0 as usize].cmp(&col[b.0 as usize]) {
            std::cmp::Ordering::Less => (Side::Right, Side::Left),
            std::cmp::Ordering::Greater => (Side::Left, Side::Right),
            std::cmp::Ordering::Equal => (Side::Right, Side::Right),
        })
        .collect();
    let mut at_side: Ports = BTreeMap::new();
    for (i, &(a, b)) in edges.iter().enumerate() {
        let (a, b) = (a.0 as usize, b.0 as usize);
        at_side.entry((a, ends[i].0)).or_default().push((row[b], i, 0));
        at_side.entry((b, ends[i].1)).or_default().push((row[a], i, 1));
    }
    // port[(edge, end)] = fraction down the side
    let mut port: BTreeMap<(usize, usize), f64> = BTreeMap::new();
    for list in at_side.values_mut() {
        list.sort();
        let k = list.len();
        for (j, &(_, e, end)) in list.iter().enumerate() {
            port.insert((e, end), (j + 1) as f64 / (k + 1) as f64);
        }
    }
    let ay = |z: usize, f: f64| row[z] as f64 + 0.25 + 0.5 * f;

    // Channels: vertical k sits left of column k (k = ncols: right of the
    // last); horizontal g sits above row g (g = nrows: below the last).
    struct Route {
        vsrc: usize,
        vdst: usize,
        gap: Option<usize>,
    }
    let routes: Vec<Route> = edges
        .iter()
        .enumerate()
        .map(|(i, &(a, b))| {
            let (a, b) = (a.0 as usize, b.0 as usize);
            let vsrc = if ends[i].0 == Side::Right { col[a] + 1 } else { col[a] };
            let vdst = if ends[i].1 == Side::Left { col[b] } else { col[b] + 1 };
            let gap = (vsrc != vdst).then(|| if row[b] < row[a] { row[a] } else { row[a] + 1 });
            Route { vsrc, vdst, gap }
        })
        .collect();
    let mut vspans: Vec<Vec<Span>> = (0..=ncols).map(|_| Vec::new()).collect();
    let mut hspans: Vec<Vec<Span>> = (0..=nrows).map(|_| Vec::new()).collect();
    for (i, (r, &(a, b))) in routes.iter().zip(edges).enumerate() {
        let (a, b) = (a.0 as usize, b.0 as usize);
        let (ya, yb) = (ay(a, port[&(i, 0)]), ay(b, port[&(i, 1)]));
        match r.gap {
            None => vspans[r.vsrc].push(Span { lo: ya.min(yb), hi: ya.max(yb), owner: (i, 0) }),
            Some(g) => {
                let yg = g as f64;
                vspans[r.vsrc].push(Span { lo: ya.min(yg), hi: ya.max(yg), owner: (i, 0) });
                vspans[r.vdst].push(Span { lo: yb.min(yg), hi: yb.max(yg), owner: (i, 1) });
                let (x1, x2) = (r.vsrc as f64, r.vdst as f64);
                hspans[g].push(Span { lo: x1.min(x2), hi: x1.max(x2), owner: (i, 0) });
            }
        }
    }
    let vt: Vec<Tracks> = vspans.iter_mut().map(|s| tracks(s)).collect();
    let ht: Vec<Tracks> = hspans.iter_mut().map(|s| tracks(s)).collect();

    // Geometry: each channel as wide as its tracks need.
    let gap_x: Vec<f64> = vt.iter().map(|(_, t)| GAP_X + TRACK * *t as f64).collect();
    let gap_y: Vec<f64> = ht.iter().map(|(_, t)| GAP_Y + TRACK * *t as f64).collect();
    let col_x: Vec<f64> = (0..ncols).map(|c| MARGIN + gap_x[..=c].iter().sum::<f64>() + c as f64 * W).collect();
    let row_y: Vec<f64> = (0..nrows).map(|r| MARGIN + HEAD + gap_y[..=r].iter().sum::<f64>() + r as f64 * H).collect();
    let vtrack = |k: usize, t: usize| {
        let left = if k == 0 { MARGIN } else { col_x[k - 1] + W };
        left + (gap_x[k] - (vt[k].1.max(1) - 1) as f64 * TRACK) / 2.0 + t as f64 * TRACK
    };
    let htrack = |g: usize, t: usize| {
        let top = if g == 0 { MARGIN + HEAD } else { row_y[g - 1] + H };
        top + (gap_y[g] - (ht[g].1.max(1) - 1) as f64 * TRACK) / 2.0 + t as f64 * TRACK
    };
    let boxes: Vec<(f64, f64)> = (0..n).map(|z| (col_x[col[z]], row_y[row[z]])).collect();
    let side_x = |z: usize, s: Side| if s == Side::Left { boxes[z].0 } else { boxes[z].0 + W };
    let port_y = |z: usize, f: f64| boxes[z].1 + H * (0.15 + 0.7 * f);
    let paths = routes
        .iter()
        .zip(edges)
        .enumerate()
        .map(|(i, (r, &(a, b)))| {
            let (a, b) = (a.0 as usize, b.0 as usize);
            let pa = (side_x(a, ends[i].0), port_y(a, port[&(i, 0)]));
            let pb = (side_x(b, ends[i].1), port_y(b, port[&(i, 1)]));
            let x1 = vtrack(r.vsrc, vt[r.vsrc].0[&(i, 0)]);
            match r.gap {
                None => vec![pa, (x1, pa.1), (x1, pb.1), pb],
                Some(g) => {
                    let x2 = vtrack(r.vdst, vt[r.vdst].0[&(i, 1)]);
                    let y = htrack(g, ht[g].0[&(i, 0)]);
                    vec![pa, (x1, pa.1), (x1, y), (x2, y), (x2, pb.1), pb]
                }
            }
        })
        .collect();
    let heads = used
        .iter()
        .zip(&col_x)
        .map(|(s, &x)| {
            let name = match s {
                Scope::Untrusted => "untrusted",
                Scope::OutOfScope => "out of scope",
                Scope::Connected => "connected",
                Scope::Cde => "cde",
            };
            (name, x)
        })
        .collect();
    let width = col_x[ncols - 1] + W + gap_x[ncols] + MARGIN;
    let height = row_y[nrows - 1] + H + gap_y[nrows] + MARGIN;
    Layout { boxes, paths, heads, width, height }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_spans_never_share_a_track() {
        let mut s = vec![
            Span { lo: 0.0, hi: 2.0, owner: (0, 0) },
            Span { lo: 1.0, hi: 3.0, owner: (1, 0) },
            Span { lo: 2.5, hi: 4.0, owner: (2, 0) },
            Span { lo: 5.0, hi: 6.0, owner: (3, 0) },
        ];
        let (t, n) = tracks(&mut s);
        assert_eq!(n, 2);
        assert_ne!(t[&(0, 0)], t[&(1, 0)]);
        assert_ne!(t[&(1, 0)], t[&(2, 0)]);
        assert_eq!(t[&(3, 0)], 0);
    }
}
