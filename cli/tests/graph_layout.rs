//! `segc graph --format svg`: on the examples and on generated policies of
//! up to 60 zones, no edge label overlaps another label, a zone box or a
//! heading, every box, label and edge lies inside the canvas, and no edge
//! runs through a zone box (edges are orthogonal polylines in channels).

#[path = "../../compiler/benches/support/generate.rs"]
mod generate;

use std::path::Path;
use std::process::Command;

use segc::graph::{label_width, Area, LABEL_H};

fn attr(tag: &str, name: &str) -> Option<f64> {
    let i = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    tag[i..].split('"').next()?.parse().ok()
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&")
}

/// What an SVG drew: canvas size, zone boxes, edge labels with their areas.
struct Drawn {
    size: (f64, f64),
    boxes: Vec<Area>,
    labels: Vec<(String, Area)>,
}

fn parse(svg: &str) -> Drawn {
    let head = svg.lines().next().expect("svg line");
    let size = (attr(head, "width").expect("width"), attr(head, "height").expect("height"));
    let mut boxes = Vec::new();
    let mut labels = Vec::new();
    for line in svg.lines() {
        if let Some(i) = line.find("<rect x=") {
            let tag = &line[i..];
            boxes.push(Area {
                x: attr(tag, "x").expect("x"),
                y: attr(tag, "y").expect("y"),
                w: attr(tag, "width").expect("w"),
                h: attr(tag, "height").expect("h"),
            });
        }
        if line.starts_with("<text class=\"label\"") {
            let text = unescape(line.split('>').nth(1).and_then(|t| t.split('<').next()).unwrap_or(""));
            let (x, y) = (attr(line, "x").expect("x"), attr(line, "y").expect("y"));
            let w = label_width(&text);
            labels.push((text, Area { x: x - w / 2.0, y: y - LABEL_H + 4.0, w, h: LABEL_H }));
        }
    }
    Drawn { size, boxes, labels }
}

fn check(name: &str, dir: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_segc")).args(["graph", "--format", "svg"]).arg(dir).output().expect("segc graph");
    assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
    let svg = String::from_utf8(o.stdout).expect("utf-8");
    let Drawn { size: (w, h), boxes, labels } = parse(&svg);
    assert!(!boxes.is_empty(), "{name}: no zones drawn");
    for (i, (t, a)) in labels.iter().enumerate() {
        assert!(a.x >= 0.0 && a.y >= 0.0 && a.x + a.w <= w && a.y + a.h <= h, "{name}: label `{t}` outside the canvas");
        for b in &boxes {
            assert!(!a.overlaps(b, 0.0), "{name}: label `{t}` lies on a zone box");
        }
        for (u, o) in &labels[i + 1..] {
            assert!(!a.overlaps(o, 0.0), "{name}: labels `{t}` and `{u}` overlap");
        }
    }
    for b in &boxes {
        assert!(b.x + b.w <= w && b.y + b.h <= h, "{name}: a zone box outside the canvas");
    }
    // Every edge inside the canvas, and through no box: each segment of its
    // path, less the ends that touch its own zones' sides, misses every box.
    let mut edges = 0;
    for line in svg.lines().filter(|l| l.starts_with("<path d=\"M ")) {
        edges += 1;
        let d = line.split('"').nth(1).unwrap_or("");
        let nums: Vec<f64> = d.split([' ', ',']).filter_map(|t| t.parse().ok()).collect();
        let pts: Vec<(f64, f64)> = nums.chunks(2).map(|p| (p[0], p[1])).collect();
        for p in &pts {
            assert!(p.0 >= 0.0 && p.0 <= w && p.1 >= 0.0 && p.1 <= h, "{name}: an edge leaves the canvas: {d}");
        }
        assert!(d.contains(" L ") && !d.contains(" C "), "{name}: edges are orthogonal polylines: {d}");
        for seg in pts.windows(2) {
            let (a, b) = (seg[0], seg[1]);
            assert!((a.0 - b.0).abs() < 0.05 || (a.1 - b.1).abs() < 0.05, "{name}: a diagonal segment: {d}");
            let shrink = |lo: f64, hi: f64| if hi - lo > 4.0 { (lo + 2.0, hi - 2.0) } else { (lo, lo) };
            let (x0, x1) = shrink(a.0.min(b.0), a.0.max(b.0));
            let (y0, y1) = shrink(a.1.min(b.1), a.1.max(b.1));
            let (x0, x1) = if (a.0 - b.0).abs() < 0.05 { (a.0, a.0) } else { (x0, x1) };
            let (y0, y1) = if (a.1 - b.1).abs() < 0.05 { (a.1, a.1) } else { (y0, y1) };
            for bx in &boxes {
                let inside = x1 > bx.x + 0.5 && x0 < bx.x + bx.w - 0.5 && y1 > bx.y + 0.5 && y0 < bx.y + bx.h - 0.5;
                assert!(!inside, "{name}: an edge runs through a zone box at ({:.0}, {:.0}): {d}", bx.x, bx.y);
            }
        }
    }
    assert!(edges > 0 || name.contains("no edges"), "{name}: edges drawn");
}

#[test]
fn labels_never_overlap_and_nothing_leaves_the_canvas() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for ex in ["online-shop", "retail-pos"] {
        check(ex, &repo.join("examples").join(ex));
    }
    let tmp = std::env::temp_dir().join(format!("segc-graph-layout-{}", std::process::id()));
    for (zones, flows) in [(10, 30), (30, 120), (60, 300)] {
        let dir = tmp.join(format!("z{zones}"));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("main.seg"), generate::generate(zones, flows)).expect("policy");
        check(&format!("{zones} zones"), &dir);
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
