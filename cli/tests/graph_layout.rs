//! `segc graph --format svg`: on the examples and on generated policies of
//! up to 60 zones, no edge label overlaps another label, a zone box or a
//! heading, and every box, label and curve lies inside the canvas.

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
    // Every curve's control points (hence the curve) inside the canvas.
    for line in svg.lines().filter(|l| l.starts_with("<path d=\"M ")) {
        let d = line.split('"').nth(1).unwrap_or("");
        let nums: Vec<f64> = d.split([' ', ',']).filter_map(|t| t.parse().ok()).collect();
        for p in nums.chunks(2) {
            assert!(p[0] >= 0.0 && p[0] <= w && p[1] >= 0.0 && p[1] <= h, "{name}: a curve leaves the canvas: {d}");
        }
    }
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
