//! Page layout for the PDF report, without any PDF: text measured with the
//! embedded fonts' advance widths, paragraphs wrapped, tables with ruled
//! cells that break across pages and repeat their header row, headings kept
//! with what follows them. The result is a list of pages of drawing
//! operations that `super` hands to krilla; tests check the layout itself.

use std::collections::HashMap;

use skrifa::instance::{LocationRef, Size};
use skrifa::raw::TableProvider;
use skrifa::{FontRef, MetadataProvider};

pub const PAGE_W: f32 = 595.28;
pub const PAGE_H: f32 = 841.89;
pub const MARGIN_X: f32 = 50.0;
pub const TOP: f32 = 56.0;
/// Where content stops; the footer lives below.
pub const BOTTOM: f32 = PAGE_H - 64.0;
pub const WIDTH: f32 = PAGE_W - 2.0 * MARGIN_X;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Face {
    Regular,
    Bold,
    Mono,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rgb(pub u8, pub u8, pub u8);

pub const BLACK: Rgb = Rgb(0x22, 0x22, 0x22);
pub const GREY: Rgb = Rgb(0x66, 0x66, 0x66);
pub const RULE: Rgb = Rgb(0xb0, 0xb0, 0xb0);
pub const HEAD_FILL: Rgb = Rgb(0xec, 0xef, 0xf3);
pub const RED: Rgb = Rgb(0xb0, 0x10, 0x10);

/// One drawing operation; y grows downwards, in points.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Text whose baseline starts at (x, y).
    Text {
        x: f32,
        y: f32,
        size: f32,
        face: Face,
        color: Rgb,
        text: String,
    },
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        fill: Rgb,
    },
    Line {
        x1: f32,
        y1: f32,
        x2: f32,
        y2: f32,
        width: f32,
        color: Rgb,
    },
    /// The zone diagram, scaled into this box.
    Diagram {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
    },
}

#[derive(Clone, Debug, Default)]
pub struct Page {
    pub ops: Vec<Op>,
    /// A landscape page (the diagram of a wide policy).
    pub landscape: bool,
}

impl Page {
    /// The page's width and height.
    pub fn size(&self) -> (f32, f32) {
        if self.landscape {
            (PAGE_H, PAGE_W)
        } else {
            (PAGE_W, PAGE_H)
        }
    }
}

/// Text measurement with the embedded fonts.
pub struct Fonts<'a> {
    faces: [(FontRef<'a>, f32); 3],
    cache: HashMap<(Face, char), f32>,
}

impl<'a> Fonts<'a> {
    pub fn new(regular: &'a [u8], bold: &'a [u8], mono: &'a [u8]) -> Option<Self> {
        let face = |b: &'a [u8]| -> Option<(FontRef<'a>, f32)> {
            let f = FontRef::new(b).ok()?;
            let upem = f.head().ok()?.units_per_em() as f32;
            Some((f, upem))
        };
        Some(Fonts { faces: [face(regular)?, face(bold)?, face(mono)?], cache: HashMap::new() })
    }

    /// The advance of one character at size 1.
    fn advance(&mut self, face: Face, c: char) -> f32 {
        if let Some(&w) = self.cache.get(&(face, c)) {
            return w;
        }
        let (f, upem) = &self.faces[face as usize];
        let gid = f.charmap().map(c).unwrap_or_default();
        let w = f.glyph_metrics(Size::unscaled(), LocationRef::default()).advance_width(gid).unwrap_or(0.0) / upem;
        self.cache.insert((face, c), w);
        w
    }

    pub fn width(&mut self, face: Face, size: f32, text: &str) -> f32 {
        text.chars().map(|c| self.advance(face, c)).sum::<f32>() * size
    }

    /// Lines of at most `width`: at spaces, and inside a word only when the
    /// word alone is wider (hashes, long prefixes).
    pub fn wrap(&mut self, face: Face, size: f32, text: &str, width: f32) -> Vec<String> {
        let mut lines = Vec::new();
        for para in text.split('\n') {
            let mut line = String::new();
            for word in para.split(' ').filter(|w| !w.is_empty()) {
                let candidate = if line.is_empty() { word.to_string() } else { format!("{line} {word}") };
                if self.width(face, size, &candidate) <= width + 0.01 {
                    line = candidate;
                    continue;
                }
                if !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                }
                // The word alone, broken by characters where it must be.
                for c in word.chars() {
                    line.push(c);
                    if self.width(face, size, &line) > width + 0.01 && line.chars().count() > 1 {
                        let last = line.pop().unwrap_or(' ');
                        lines.push(std::mem::take(&mut line));
                        line.push(last);
                    }
                }
            }
            lines.push(line);
        }
        lines
    }
}

/// A heading of the table of contents: its text and the page (0-based) it starts on.
#[derive(Clone, Debug, PartialEq)]
pub struct Heading {
    pub text: String,
    pub page: usize,
    pub y: f32,
}

/// Lays pages out one after the other.
pub struct Flow<'f, 'a> {
    pub fonts: &'f mut Fonts<'a>,
    pub pages: Vec<Page>,
    pub y: f32,
    pub headings: Vec<Heading>,
}

pub const BODY: f32 = 9.5;
pub const CELL: f32 = 7.6;
pub const PAD: f32 = 3.0;

impl<'f, 'a> Flow<'f, 'a> {
    pub fn new(fonts: &'f mut Fonts<'a>) -> Self {
        Flow { fonts, pages: vec![Page::default()], y: TOP, headings: Vec::new() }
    }

    pub fn page(&mut self) -> &mut Page {
        self.pages.last_mut().expect("at least one page")
    }

    pub fn new_page(&mut self) {
        self.pages.push(Page::default());
        self.y = TOP;
    }

    fn room(&self) -> f32 {
        BOTTOM - self.y
    }

    /// Wrapped text at the current position, `size` points, `lead` line height.
    pub fn paragraph(&mut self, face: Face, size: f32, color: Rgb, text: &str, indent: f32) {
        let lead = size * 1.35;
        for line in self.fonts.wrap(face, size, text, WIDTH - indent) {
            if self.room() < lead {
                self.new_page();
            }
            self.y += lead;
            let y = self.y - lead * 0.25;
            self.page().ops.push(Op::Text { x: MARGIN_X + indent, y, size, face, color, text: line });
        }
        self.y += size * 0.5;
    }

    /// A section heading, kept with at least `keep` points of what follows.
    pub fn heading(&mut self, text: &str, keep: f32) {
        let size = 13.0;
        if self.room() < size * 2.0 + keep {
            self.new_page();
        }
        self.y += if self.y <= TOP + 1.0 { size } else { size * 2.0 };
        let page = self.pages.len() - 1;
        self.headings.push(Heading { text: text.to_string(), page, y: self.y - size });
        let y = self.y;
        self.page().ops.push(Op::Text { x: MARGIN_X, y, size, face: Face::Bold, color: BLACK, text: text.to_string() });
        self.y += 4.0;
        let y = self.y;
        self.page().ops.push(Op::Line { x1: MARGIN_X, y1: y, x2: MARGIN_X + WIDTH, y2: y, width: 0.6, color: RULE });
        self.y += 6.0;
    }

    /// Column widths that fit `WIDTH`: each column's natural width, at most
    /// 220 pt, never under its longest word (up to 110 pt); what is left over
    /// goes to the columns that want more, in proportion.
    pub fn columns(&mut self, head: &[String], rows: &[Vec<String>]) -> Vec<f32> {
        let n = head.len();
        let mut natural = vec![0f32; n];
        let mut minimum = vec![0f32; n];
        for (i, h) in head.iter().enumerate() {
            natural[i] = self.fonts.width(Face::Bold, CELL, h);
            minimum[i] = h.split(' ').map(|w| self.fonts.width(Face::Bold, CELL, w)).fold(0.0, f32::max);
        }
        for r in rows {
            for (i, cell) in r.iter().enumerate().take(n) {
                natural[i] = natural[i].max(self.fonts.width(Face::Regular, CELL, cell));
                let word = cell.split(' ').map(|w| self.fonts.width(Face::Regular, CELL, w)).fold(0.0, f32::max);
                minimum[i] = minimum[i].max(word);
            }
        }
        let want: Vec<f32> = natural.iter().map(|w| (w + 2.0 * PAD + 0.5).min(220.0)).collect();
        let min: Vec<f32> = minimum.iter().zip(&want).map(|(m, w)| (m + 2.0 * PAD + 0.5).min(110.0).min(*w).max(24.0)).collect();
        let total: f32 = want.iter().sum();
        if total <= WIDTH {
            let extra = (WIDTH - total) / n as f32;
            return want.iter().map(|w| w + extra).collect();
        }
        let base: f32 = min.iter().sum();
        if base >= WIDTH {
            return min.iter().map(|m| m * WIDTH / base).collect();
        }
        let spare: f32 = want.iter().zip(&min).map(|(w, m)| w - m).sum();
        want.iter().zip(&min).map(|(w, m)| m + (w - m) * (WIDTH - base) / spare.max(1e-3)).collect()
    }

    /// One table row at the current position (the caller made room).
    fn row(&mut self, cells: &[String], widths: &[f32], header: bool) {
        let lead = CELL * 1.3;
        let face = if header { Face::Bold } else { Face::Regular };
        let wrapped: Vec<Vec<String>> = cells.iter().zip(widths).map(|(c, w)| self.fonts.wrap(face, CELL, c, w - 2.0 * PAD)).collect();
        let h = row_height(&wrapped);
        let top = self.y;
        if header {
            self.page().ops.push(Op::Rect { x: MARGIN_X, y: top, w: widths.iter().sum(), h, fill: HEAD_FILL });
        }
        let mut x = MARGIN_X;
        for ((lines, w), cell) in wrapped.iter().zip(widths).zip(cells) {
            let alarm = !header && is_alarm(cell);
            for (k, l) in lines.iter().enumerate() {
                let y = top + PAD + lead * (k as f32 + 1.0) - lead * 0.22;
                let (face, color) = if alarm { (Face::Bold, RED) } else { (face, BLACK) };
                self.page().ops.push(Op::Text { x: x + PAD, y, size: CELL, face, color, text: l.clone() });
            }
            x += w;
        }
        // Ruled cells: the row's box and its column separators.
        let right = MARGIN_X + widths.iter().sum::<f32>();
        for (y1, y2) in [(top, top), (top + h, top + h)] {
            self.page().ops.push(Op::Line { x1: MARGIN_X, y1, x2: right, y2, width: 0.4, color: RULE });
        }
        let mut x = MARGIN_X;
        for w in std::iter::once(&0.0).chain(widths.iter()) {
            x += w;
            self.page().ops.push(Op::Line { x1: x, y1: top, x2: x, y2: top + h, width: 0.4, color: RULE });
        }
        self.y = top + h;
    }

    /// A table whose rows break across pages, each page repeating the header.
    pub fn table(&mut self, head: &[String], rows: &[Vec<String>]) {
        let widths = self.columns(head, rows);
        let height = |f: &mut Fonts<'_>, cells: &[String], face: Face| -> f32 {
            let wrapped: Vec<Vec<String>> = cells.iter().zip(&widths).map(|(c, w)| f.wrap(face, CELL, c, w - 2.0 * PAD)).collect();
            row_height(&wrapped)
        };
        // A table without a header (all cells empty) is a list of facts.
        let has_head = head.iter().any(|h| !h.is_empty());
        let head_h = if has_head { height(self.fonts, head, Face::Bold) } else { 0.0 };
        if has_head {
            self.row(head, &widths, true);
        }
        for r in rows {
            let h = height(self.fonts, r, Face::Regular);
            if self.room() < h && self.y > TOP + head_h + 1.0 {
                self.new_page();
                if has_head {
                    self.row(head, &widths, true);
                }
            }
            self.row(r, &widths, false);
        }
        self.y += 8.0;
    }
}

fn row_height(wrapped: &[Vec<String>]) -> f32 {
    let lines = wrapped.iter().map(Vec::len).max().unwrap_or(1).max(1);
    lines as f32 * CELL * 1.3 + 2.0 * PAD
}

/// Cells a reader must not miss.
pub fn is_alarm(cell: &str) -> bool {
    cell.starts_with("OVERDUE")
        || cell.starts_with("NEVER")
        || cell == "error"
        || cell == "FAIL"
        || cell == "MISMATCHES"
        || cell == "fails"
        || cell == "NOT MET"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fonts() -> Fonts<'static> {
        Fonts::new(super::super::REGULAR, super::super::BOLD, super::super::MONO).expect("the embedded fonts parse")
    }

    #[test]
    fn text_wraps_inside_its_width_and_long_words_break() {
        let mut f = fonts();
        let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let lines = f.wrap(Face::Regular, 8.0, &format!("source hash {hash} and more words"), 120.0);
        assert!(lines.len() >= 3, "{lines:?}");
        assert!(lines.iter().all(|l| f.width(Face::Regular, 8.0, l) <= 120.0), "{lines:?}");
        assert_eq!(lines.concat().replace(' ', ""), format!("sourcehash{hash}andmorewords"));
    }

    #[test]
    fn tables_break_across_pages_with_their_header() {
        let mut f = fonts();
        let mut flow = Flow::new(&mut f);
        let head: Vec<String> = ["zone", "scope", "description"].iter().map(|s| s.to_string()).collect();
        let rows: Vec<Vec<String>> = (0..300)
            .map(|i| vec![format!("zone_{i}"), "connected".into(), "a description long enough to wrap inside its column ".repeat(2)])
            .collect();
        flow.table(&head, &rows);
        assert!(flow.pages.len() > 3, "{} pages", flow.pages.len());
        for (n, p) in flow.pages.iter().enumerate() {
            let texts: Vec<&str> =
                p.ops.iter().filter_map(|o| if let Op::Text { text, .. } = o { Some(text.as_str()) } else { None }).collect();
            assert_eq!(texts.first().copied(), Some("zone"), "page {n} starts with the header row");
            for o in &p.ops {
                if let Op::Text { y, x, .. } | Op::Line { y1: y, x1: x, .. } = o {
                    assert!(*y <= BOTTOM + 0.01 && *y >= TOP - 0.01 && *x >= MARGIN_X - 0.01, "page {n}: {o:?} outside the content box");
                }
            }
        }
        let all: Vec<String> = flow
            .pages
            .iter()
            .flat_map(|p| p.ops.iter())
            .filter_map(|o| if let Op::Text { text, .. } = o { Some(text.clone()) } else { None })
            .collect();
        for i in 0..300 {
            assert_eq!(all.iter().filter(|t| **t == format!("zone_{i}")).count(), 1, "row {i} once, never split");
        }
    }

    #[test]
    fn columns_fit_the_page() {
        let mut f = fonts();
        let mut flow = Flow::new(&mut f);
        let head: Vec<String> = (0..8).map(|i| format!("column {i}")).collect();
        let rows = vec![(0..8).map(|_| "x".repeat(200)).collect::<Vec<_>>()];
        let w = flow.columns(&head, &rows);
        assert!((w.iter().sum::<f32>() - WIDTH).abs() < 0.5, "{w:?}");
    }
}
