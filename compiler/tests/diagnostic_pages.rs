//! The code registry and `docs/diagnostics/` agree: every code has a page, every
//! page is a code, each page states the code's severity, and each page's failing
//! example raises its code while the fixed example does not (and has no errors).

use std::path::PathBuf;

use segc_compiler::diag::Code;
use segc_compiler::ir::Date;
use segc_compiler::Options;

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/diagnostics")
}

fn seg_blocks(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find("```seg\n") {
        let body = &rest[start + 7..];
        let end = body.find("```").expect("closed code block");
        out.push(body[..end].to_string());
        rest = &body[end + 3..];
    }
    out
}

/// The files a page's examples read (feeds): "```file PATH" blocks.
fn files_in(page: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find("```file ") {
        let body = &rest[start + 8..];
        let nl = body.find('\n').expect("a path line");
        let end = body.find("```").expect("closed code block");
        out.push((body[..nl].trim().to_string(), body[nl + 1..end].to_string()));
        rest = &body[end + 3..];
    }
    out
}

fn codes_in(src: &str, files: &[(String, String)]) -> Vec<(Code, bool)> {
    let opts = Options { today: Date::parse("2026-11-28") };
    let mut loader = segc_compiler::source::MemoryLoader::new().with("main.seg", src);
    for (path, text) in files {
        loader = loader.with(path, text);
    }
    let c = segc_compiler::compile("main.seg", &loader, &opts).expect("main.seg is in memory");
    c.diagnostics.iter().map(|d| (d.code, d.is_error())).collect()
}

#[test]
fn every_code_has_a_page_with_working_examples() {
    for &code in Code::ALL {
        let path = docs().join(format!("{code}.md"));
        let page = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(page.starts_with(&format!("# {code}: ")), "{code}: page title");
        assert!(page.contains(&format!("Severity: **{}**", code.severity().as_str())), "{code}: severity");
        let blocks = seg_blocks(&page);
        let files = files_in(&page);
        assert_eq!(blocks.len(), 2, "{code}: a failing and a fixed example");
        if code.is_target() {
            // Target codes come from lowering policies too large for a page; their
            // triggers are generated in the target's own tests. Both examples
            // must still be valid policies.
            for b in &blocks {
                let got = codes_in(b, &files);
                assert!(!got.iter().any(|(_, err)| *err), "{code}: example has errors: {got:?}");
            }
            continue;
        }
        let bad = codes_in(&blocks[0], &files);
        assert!(bad.iter().any(|(c, _)| *c == code), "{code}: failing example raises {bad:?}");
        let good = codes_in(&blocks[1], &files);
        assert!(!good.iter().any(|(c, _)| *c == code), "{code}: fixed example still raises it: {good:?}");
        assert!(!good.iter().any(|(_, err)| *err), "{code}: fixed example has errors: {good:?}");
    }
}

#[test]
fn every_page_is_a_code() {
    for entry in std::fs::read_dir(docs()).expect("docs/diagnostics exists") {
        let name = entry.expect("readable entry").file_name().into_string().expect("utf-8 name");
        if name == "README.md" {
            continue;
        }
        let stem = name.strip_suffix(".md").unwrap_or_else(|| panic!("unexpected file {name}"));
        assert!(Code::parse(stem).is_some(), "{name} documents no code");
    }
}
