//! The report as a typeset PDF (SPEC §9), drawn with krilla (docs/DECISIONS.md
//! 58 says why): a title page with the verdict and what a signer needs, a
//! table of contents, the zone diagram as vector drawing (the report's own
//! SVG, through usvg), tables with ruled cells that break across pages with
//! their header, and on every page a footer with the policy, the source hash,
//! the generation date and the page number. The fonts (DejaVu Sans
//! Condensed, DejaVu Sans Mono; `cli/assets/fonts/LICENSE`) are embedded,
//! subset, with their Unicode maps, so the text can be searched and copied.

mod layout;

use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Size, Transform};
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::text::{Font, TextDirection};
use krilla::Document;
use krilla_svg::{SurfaceExt, SvgSettings};
use layout::{Face, Flow, Fonts, Op, Rgb, BODY, GREY, MARGIN_X, PAGE_H, PAGE_W, TOP, WIDTH};

pub(crate) static REGULAR: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSansCondensed.ttf");
pub(crate) static BOLD: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSansCondensed-Bold.ttf");
pub(crate) static MONO: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSansMono.ttf");

/// What the title page and every footer say.
pub struct Cover<'a> {
    pub policy: &'a str,
    pub owner: &'a str,
    pub description: Option<&'a str>,
    pub hash: &'a str,
    pub date: String,
    pub verdict: &'a str,
    pub reasons: &'a [String],
    pub template: Option<&'a str>,
}

/// Text as a reader sees it: code spans become quotes, no Markdown marks.
fn prose(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut open = true;
    for c in s.chars() {
        if c == '`' {
            out.push(if open { '\u{2018}' } else { '\u{2019}' });
            open = !open;
        } else {
            out.push(c);
        }
    }
    out
}

fn verdict_color(v: &str) -> Rgb {
    match v {
        "PASS" => Rgb(0x1e, 0x7b, 0x34),
        "FAIL" => Rgb(0xb0, 0x10, 0x10),
        _ => Rgb(0xa8, 0x6b, 0x00),
    }
}

fn title_page(flow: &mut Flow<'_, '_>, cover: &Cover<'_>, summary: &[String]) {
    let push = |flow: &mut Flow<'_, '_>, op: Op| flow.page().ops.push(op);
    flow.y = TOP + 70.0;
    push(
        flow,
        Op::Text { x: MARGIN_X, y: flow.y, size: 12.0, face: Face::Regular, color: GREY, text: "PCI DSS segmentation report".into() },
    );
    flow.y += 30.0;
    for line in flow.fonts.wrap(Face::Bold, 26.0, cover.policy, WIDTH) {
        push(flow, Op::Text { x: MARGIN_X, y: flow.y, size: 26.0, face: Face::Bold, color: layout::BLACK, text: line });
        flow.y += 32.0;
    }
    if let Some(d) = cover.description {
        flow.paragraph(Face::Regular, 11.0, GREY, &prose(d), 0.0);
    }
    flow.y += 10.0;
    let mut facts = vec![
        vec!["Owner".to_string(), cover.owner.to_string()],
        vec!["Source SHA-256".into(), cover.hash.to_string()],
        vec!["Generated".into(), format!("{} by segc {}", cover.date, env!("CARGO_PKG_VERSION"))],
    ];
    if let Some(t) = cover.template {
        facts.push(vec!["Arranged by".into(), t.to_string()]);
    }
    flow.table(&["".to_string(), "".to_string()], &facts);
    // The verdict, in a band of its colour.
    let color = verdict_color(cover.verdict);
    let reasons: Vec<String> = cover.reasons.iter().map(|r| prose(r)).collect();
    let lines: Vec<String> =
        reasons.iter().flat_map(|r| flow.fonts.wrap(Face::Regular, 9.5, &format!("\u{2022} {r}"), WIDTH - 24.0)).collect();
    let h = 40.0 + lines.len() as f32 * 13.0;
    let top = flow.y + 6.0;
    push(flow, Op::Rect { x: MARGIN_X, y: top, w: WIDTH, h, fill: Rgb(0xf7, 0xf7, 0xf7) });
    push(flow, Op::Rect { x: MARGIN_X, y: top, w: 5.0, h, fill: color });
    push(
        flow,
        Op::Text {
            x: MARGIN_X + 14.0,
            y: top + 24.0,
            size: 16.0,
            face: Face::Bold,
            color,
            text: format!("Overall verdict: {}", cover.verdict),
        },
    );
    for (i, l) in lines.into_iter().enumerate() {
        push(
            flow,
            Op::Text { x: MARGIN_X + 14.0, y: top + 42.0 + i as f32 * 13.0, size: 9.5, face: Face::Regular, color: layout::BLACK, text: l },
        );
    }
    flow.y = top + h + 14.0;
    for s in summary {
        flow.paragraph(Face::Regular, BODY, layout::BLACK, &prose(s), 0.0);
    }
    // Where the people who answer for the policy sign.
    flow.y = flow.y.max(layout::BOTTOM - 90.0);
    for (i, who) in ["Policy owner", "Assessor (QSA)"].iter().enumerate() {
        let x = MARGIN_X + i as f32 * (WIDTH / 2.0 + 10.0);
        let y = flow.y + 40.0;
        push(flow, Op::Line { x1: x, y1: y, x2: x + WIDTH / 2.0 - 20.0, y2: y, width: 0.6, color: GREY });
        push(flow, Op::Text { x, y: y + 11.0, size: 8.0, face: Face::Regular, color: GREY, text: format!("{who}: name, signature, date") });
    }
}

/// The contents page: every heading with its page number.
fn contents(flow: &mut Flow<'_, '_>, headings: &[layout::Heading], offset: usize) {
    flow.heading("Contents", 20.0);
    for h in headings {
        let y = flow.y + 14.0;
        let number = (h.page + 1 + offset).to_string();
        let nw = flow.fonts.width(Face::Regular, 10.0, &number);
        flow.page().ops.push(Op::Text { x: MARGIN_X, y, size: 10.0, face: Face::Regular, color: layout::BLACK, text: h.text.clone() });
        flow.page().ops.push(Op::Text { x: MARGIN_X + WIDTH - nw, y, size: 10.0, face: Face::Regular, color: layout::BLACK, text: number });
        let tw = flow.fonts.width(Face::Regular, 10.0, &h.text);
        flow.page().ops.push(Op::Line {
            x1: MARGIN_X + tw + 6.0,
            y1: y,
            x2: MARGIN_X + WIDTH - nw - 6.0,
            y2: y,
            width: 0.3,
            color: layout::RULE,
        });
        flow.y = y + 4.0;
    }
}

/// The diagram's size on the page: the SVG scaled to the text width, and
/// down to what is left of the page when it is tall.
fn diagram_box(svg: &usvg::Tree, width: f32, room: f32) -> (f32, f32) {
    let s = svg.size();
    let scale = (width / s.width()).min(room / s.height()).min(1.4);
    (s.width() * scale, s.height() * scale)
}

/// Below this scale on its page a diagram is a blot even zoomed in (a
/// thousand-zone drawing comes out at 0.016), and typesetting it took most
/// of such a report's time: the page says where to find it instead.
const MIN_DIAGRAM_SCALE: f32 = 0.05;

/// The width and height of one of our own SVG documents, from its root
/// element (read before parsing the whole drawing).
fn svg_size(svg: &str) -> Option<(f32, f32)> {
    let root = &svg[svg.find("<svg")?..];
    let root = &root[..root.find('>')?];
    let attr = |name: &str| -> Option<f32> {
        let start = root.find(&format!(" {name}=\""))? + name.len() + 3;
        root[start..].split('"').next()?.parse().ok()
    };
    Some((attr("width")?, attr("height")?))
}

/// Whether a `w` x `h` drawing would be legible (zoomed in) on a page of
/// either orientation.
fn legible(w: f32, h: f32) -> bool {
    let scale = |page_w: f32, page_h: f32| ((page_w - 2.0 * MARGIN_X) / w).min((page_h - 64.0 - TOP) / h);
    scale(PAGE_W, PAGE_H).max(scale(PAGE_H, PAGE_W)) >= MIN_DIAGRAM_SCALE
}

fn svg_tree(svg: &str) -> Option<usvg::Tree> {
    let mut opts = usvg::Options { font_family: "DejaVu Sans".into(), ..usvg::Options::default() };
    let db = opts.fontdb_mut();
    db.load_font_data(REGULAR.to_vec());
    db.load_font_data(BOLD.to_vec());
    db.set_sans_serif_family("DejaVu Sans");
    usvg::Tree::from_str(svg, &opts).ok()
}

/// The whole document. `sections` are (title, header, rows) as every format has them.
pub fn document(cover: &Cover<'_>, summary: &[String], svg: &str, sections: &[super::Section]) -> Vec<u8> {
    let Some(mut fonts) = Fonts::new(REGULAR, BOLD, MONO) else { return Vec::new() };
    // The body first (pages numbered after the title and contents pages).
    let size = svg_size(svg);
    let too_large = size.is_some_and(|(w, h)| !legible(w, h));
    let tree = if too_large { None } else { svg_tree(svg) };
    let mut body = Flow::new(&mut fonts);
    body.heading("Zone diagram", if too_large { 40.0 } else { 200.0 });
    if too_large {
        body.paragraph(
            Face::Regular,
            BODY,
            GREY,
            "The diagram of this policy is too large for a printed page. The HTML report includes it, and `segc graph --format svg` draws it alone.",
            0.0,
        );
    }
    if let Some(t) = &tree {
        // A wide diagram gets a landscape page of its own, so its labels stay legible.
        let wide = t.size().width() > t.size().height() * 1.2 && t.size().width() > WIDTH * 1.3;
        let (avail_w, avail_h) =
            if wide { (PAGE_H - 2.0 * MARGIN_X, PAGE_W - 64.0 - body.y - 4.0) } else { (WIDTH, layout::BOTTOM - body.y - 4.0) };
        body.page().landscape = wide;
        let (w, h) = diagram_box(t, avail_w, avail_h);
        let x = MARGIN_X + (avail_w - w) / 2.0;
        let y = body.y + 4.0;
        body.page().ops.push(Op::Diagram { x, y, w, h });
        body.y += h + 12.0;
        if wide {
            body.new_page();
        }
    }
    for (title, head, rows) in sections {
        body.heading(&prose(title), 40.0);
        if rows.is_empty() {
            body.paragraph(Face::Regular, BODY, GREY, "None.", 0.0);
            continue;
        }
        let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| prose(c)).collect()).collect();
        body.table(head, &rows);
    }
    let (body_pages, headings) = (std::mem::take(&mut body.pages), std::mem::take(&mut body.headings));
    let mut front = Flow::new(&mut fonts);
    title_page(&mut front, cover, summary);
    front.new_page();
    contents(&mut front, &headings, 2);
    let mut pages = std::mem::take(&mut front.pages);
    pages.extend(body_pages);
    render(&mut fonts, cover, pages, tree.as_ref(), &headings)
}

fn color(c: Rgb) -> krilla::color::Color {
    rgb::Color::new(c.0, c.1, c.2).into()
}

fn render(
    fonts: &mut Fonts<'_>,
    cover: &Cover<'_>,
    pages: Vec<layout::Page>,
    tree: Option<&usvg::Tree>,
    headings: &[layout::Heading],
) -> Vec<u8> {
    let mut doc = Document::new();
    let font = |b: &'static [u8]| Font::new(krilla::Data::from(b), 0);
    let (Some(regular), Some(bold), Some(mono)) = (font(REGULAR), font(BOLD), font(MONO)) else { return Vec::new() };
    let face = |f: Face| match f {
        Face::Regular => regular.clone(),
        Face::Bold => bold.clone(),
        Face::Mono => mono.clone(),
    };
    let total = pages.len();
    for (n, page) in pages.into_iter().enumerate() {
        let (pw, ph) = page.size();
        let Some(settings) = Size::from_wh(pw, ph).map(PageSettings::new) else { continue };
        let mut p = doc.start_page_with(settings);
        let mut s = p.surface();
        let mut ops = page.ops;
        ops.extend(footer(fonts, cover, n + 1, total, (pw, ph)));
        for op in ops {
            match op {
                Op::Text { x, y, size, face: f, color: c, text } => {
                    s.set_fill(Some(Fill { paint: color(c).into(), opacity: NormalizedF32::ONE, rule: Default::default() }));
                    s.draw_text(Point::from_xy(x, y), face(f), size, &text, false, TextDirection::Auto);
                }
                Op::Rect { x, y, w, h, fill } => {
                    let mut pb = PathBuilder::new();
                    if let Some(r) = krilla::geom::Rect::from_xywh(x, y, w, h) {
                        pb.push_rect(r);
                    }
                    if let Some(path) = pb.finish() {
                        s.set_stroke(None);
                        s.set_fill(Some(Fill { paint: color(fill).into(), opacity: NormalizedF32::ONE, rule: Default::default() }));
                        s.draw_path(&path);
                    }
                }
                Op::Line { x1, y1, x2, y2, width, color: c } => {
                    let mut pb = PathBuilder::new();
                    pb.move_to(x1, y1);
                    pb.line_to(x2, y2);
                    if let Some(path) = pb.finish() {
                        s.set_fill(None);
                        s.set_stroke(Some(Stroke { paint: color(c).into(), width, ..Stroke::default() }));
                        s.draw_path(&path);
                        s.set_stroke(None);
                    }
                }
                Op::Diagram { x, y, w, h } => {
                    if let (Some(t), Some(size)) = (tree, Size::from_wh(w, h)) {
                        s.push_transform(&Transform::from_translate(x, y));
                        s.draw_svg(t, size, SvgSettings::default());
                        s.pop();
                    }
                }
            }
        }
        s.finish();
        p.finish();
    }
    let mut outline = krilla::outline::Outline::new();
    for h in headings {
        let dest = krilla::destination::XyzDestination::new(h.page + 2, Point::from_xy(MARGIN_X, h.y));
        outline.push_child(krilla::outline::OutlineNode::new(h.text.clone(), dest));
    }
    doc.set_outline(outline);
    doc.set_metadata(
        krilla::metadata::Metadata::new()
            .title(format!("Segmentation report: {}", cover.policy))
            .creator(format!("segc {}", env!("CARGO_PKG_VERSION")))
            .description(format!("source SHA-256 {}", cover.hash)),
    );
    doc.finish().unwrap_or_default()
}

/// The footer of page `n` of `total`: policy and source hash on the left,
/// date and page on the right.
fn footer(fonts: &mut Fonts<'_>, cover: &Cover<'_>, n: usize, total: usize, (pw, ph): (f32, f32)) -> Vec<Op> {
    let y = ph - 34.0;
    let width = pw - 2.0 * MARGIN_X;
    let left = format!("{} \u{00b7} source SHA-256 ", cover.policy);
    let lw = fonts.width(Face::Regular, 7.0, &left);
    let right = format!("generated {} \u{00b7} page {n} of {total}", cover.date);
    let rw = fonts.width(Face::Regular, 7.0, &right);
    vec![
        Op::Line { x1: MARGIN_X, y1: y - 10.0, x2: MARGIN_X + width, y2: y - 10.0, width: 0.4, color: layout::RULE },
        Op::Text { x: MARGIN_X, y, size: 7.0, face: Face::Regular, color: GREY, text: left },
        Op::Text { x: MARGIN_X + lw, y, size: 6.2, face: Face::Mono, color: GREY, text: cover.hash.to_string() },
        Op::Text { x: MARGIN_X + width - rw, y: y + 10.0, size: 7.0, face: Face::Regular, color: GREY, text: right },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diagram_too_large_for_a_page_is_left_to_the_html_and_graph() {
        let root = |w: u32, h: u32| {
            format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\"></svg>")
        };
        assert_eq!(svg_size(&root(1201, 653)), Some((1201.0, 653.0)));
        assert_eq!(svg_size("<p>not a drawing</p>"), None);
        // The examples' drawings and a tall 40-zone one fit; a 1000-zone one does not.
        assert!(legible(1201.0, 653.0) && legible(655.0, 2546.0));
        assert!(!legible(47834.0, 70663.0));
        // Either orientation counts: a very tall drawing still fits a portrait page.
        assert!(legible(500.0, 14000.0) && !legible(500.0, 16000.0));
    }
}
