//! `segc report --format pdf` is a typeset document (SPEC §9), checked with
//! poppler as an assessor's tools would read it: every font embedded (no
//! Courier), the text extractable and free of Markdown and DOT, the source
//! hash (the manifest's `source_sha256`) and "page N of M" on every page,
//! tables that break across pages repeating their header, every page
//! renderable, and the same bytes for the same policy and date.

mod common;

#[path = "../../compiler/benches/support/generate.rs"]
mod generate;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn pdf(policy: &Path, extra: &[&str], out: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_segc"))
        .args(["report", "--format", "pdf", "--today", "2026-11-29"])
        .args(extra)
        .arg(policy)
        .env("SEGC_AUDIT_DIR", out.with_extension("audit"))
        .output()
        .expect("segc runs");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(out, &o.stdout).expect("write");
}

fn tool(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(o.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn source_hash(policy: &Path, scratch: &Path) -> String {
    let out = scratch.join("build");
    let o = Command::new(env!("CARGO_BIN_EXE_segc"))
        .args(["build", "--target", "nft", "-o"])
        .arg(&out)
        .arg(policy)
        .env("SEGC_AUDIT_DIR", scratch.join("audit"))
        .output()
        .expect("build");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).expect("manifest")).expect("json");
    m["source_sha256"].as_str().expect("hash").to_string()
}

/// Checks one report; returns each page's text.
fn check(policy: &Path, name: &str, scratch: &Path) -> Vec<String> {
    let file = scratch.join(format!("{name}.pdf"));
    pdf(policy, &[], &file);
    let f = file.to_str().expect("utf-8");
    let info = tool("pdfinfo", &[f]);
    let pages: usize = info.lines().find_map(|l| l.strip_prefix("Pages:")).and_then(|n| n.trim().parse().ok()).expect("page count");
    assert!(pages >= 3, "{name}: title, contents, body: {pages} pages");
    assert!(info.contains("A4"), "{info}");
    // Every font is embedded (and none is Courier).
    let fonts = tool("pdffonts", &[f]);
    let rows: Vec<&str> = fonts.lines().skip(2).collect();
    assert!(!rows.is_empty(), "{fonts}");
    for r in &rows {
        let cols: Vec<&str> = r.split_whitespace().collect();
        assert!(cols.iter().rev().nth(3) == Some(&"yes"), "{name}: font not embedded: {r}");
        assert!(!r.contains("Courier"), "{name}: {r}");
    }
    let hash = source_hash(policy, scratch);
    let mut texts = Vec::new();
    for n in 1..=pages {
        let t = tool("pdftotext", &["-layout", "-f", &n.to_string(), "-l", &n.to_string(), f, "-"]);
        assert!(t.contains(&hash), "{name}: page {n} carries the source hash {hash}");
        assert!(t.contains(&format!("page {n} of {pages}")), "{name}: page {n} is numbered");
        assert!(t.contains("generated 2026-11-29"), "{name}: page {n} is dated");
        for md in ["|---", "```", "digraph", "## ", "**"] {
            assert!(!t.contains(md), "{name}: page {n} has Markdown or DOT ({md:?})");
        }
        texts.push(t);
    }
    let first = &texts[0];
    assert!(first.contains("Overall verdict:") && first.contains("Source SHA-256"), "{name}: title page\n{first}");
    assert!(texts[1].contains("Contents") && texts[1].contains("Zone diagram"), "{name}: contents page");
    // Every page renders.
    let prefix = scratch.join(format!("{name}-page"));
    tool("pdftoppm", &["-r", "30", "-png", f, prefix.to_str().expect("utf-8")]);
    let images = std::fs::read_dir(scratch)
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("{name}-page")))
        .count();
    assert_eq!(images, pages, "{name}: every page rendered");
    // Same policy, same day: the same bytes.
    let again = scratch.join(format!("{name}-again.pdf"));
    pdf(policy, &[], &again);
    same_bytes(&file, &again, name);
    texts
}

/// Fails unless the two reports are byte for byte the same, saying where they
/// part and how their text differs (a dump of two PDFs says nothing).
fn same_bytes(a: &Path, b: &Path, name: &str) {
    let (x, y) = (std::fs::read(a).expect("a"), std::fs::read(b).expect("b"));
    if x == y {
        return;
    }
    let at = x.iter().zip(&y).position(|(p, q)| p != q).unwrap_or(x.len().min(y.len()));
    let around = |v: &[u8]| String::from_utf8_lossy(&v[at.saturating_sub(120)..(at + 120).min(v.len())]).into_owned();
    let text = |f: &Path| tool("pdftotext", &["-layout", f.to_str().expect("utf-8"), "-"]);
    let (tx, ty) = (text(a), text(b));
    let lines: Vec<String> = tx.lines().zip(ty.lines()).filter(|(p, q)| p != q).take(10).map(|(p, q)| format!("- {p}\n+ {q}")).collect();
    panic!(
        "{name}: not deterministic: {} and {} bytes, first difference at byte {at}\n--- first:\n{}\n--- again:\n{}\n--- text lines that differ:\n{}",
        x.len(),
        y.len(),
        around(&x),
        around(&y),
        lines.join("\n")
    );
}

fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!("segc-report-pdf-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("dir");
    d
}

#[test]
fn the_pdf_is_a_typeset_document() {
    if !require("the_pdf_is_a_typeset_document", &["pdfinfo", "pdffonts", "pdftotext", "pdftoppm"]) {
        return;
    }
    let s = scratch();
    for ex in ["online-shop", "retail-pos", "threat-feeds"] {
        let texts = check(&repo().join("examples").join(ex), ex, &s);
        let all = texts.concat();
        assert!(all.contains("Zones") && all.contains("Flows (PCI DSS 1.2.5, 1.2.7)"), "{ex}");
    }
    // A generated policy: 60 zones, 400 flows; its long tables break across
    // pages, and every page with flow rows repeats the header.
    let dir = s.join("gen");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("main.seg"), generate::generate(60, 400)).expect("policy");
    let texts = check(&dir, "gen", &s);
    let flow_pages: Vec<&String> = texts.iter().filter(|t| t.contains("n/a (no cde)") || t.contains("due 20")).collect();
    assert!(flow_pages.len() >= 3, "the flows table spans pages: {}", flow_pages.len());
    for t in flow_pages {
        assert!(t.contains("justification") && t.contains("review status"), "the header row is repeated:\n{t}");
    }
}
