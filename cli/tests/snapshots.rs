//! Snapshot tests over `tests/inputs/<phase>/*.seg`: each snapshot shows the
//! source, then the diagnostics exactly as `segc check` draws them (no colour).

use std::path::Path;

use segc::render;
use segc_compiler::{compile, ir::Date, Options};
use segc_fsio::FsLoader;

fn check_file(path: &Path) -> String {
    let dir = path.parent().expect("inputs live in a folder");
    let name = path.file_name().and_then(|n| n.to_str()).expect("utf-8 file name");
    let loader = FsLoader::new(dir).expect("input folder exists");
    let opts = Options { today: Date::parse("2026-11-28") };
    let c = compile(name, &loader, &opts).expect("input file exists");
    let mut out = Vec::new();
    render::human(c.sources(), &c.diagnostics, false, &mut out).expect("rendering to memory cannot fail");
    let src = std::fs::read_to_string(path).expect("utf-8 input");
    format!("{src}\n----- diagnostics -----\n{}", String::from_utf8_lossy(&out))
}

#[test]
fn inputs() {
    insta::glob!("../../tests/inputs", "{parse,resolve,check,verify,analysis}/*.seg", |path| {
        insta::assert_snapshot!(check_file(path));
    });
}

/// Formatter snapshots: the source, then `segc fmt`'s output, which must be a
/// fixed point of the formatter.
#[test]
fn fmt_inputs() {
    insta::glob!("../../tests/inputs", "fmt/*.seg", |path| {
        let src = std::fs::read_to_string(path).expect("utf-8 input");
        let once = format(&src);
        assert_eq!(format(&once), once, "formatting is idempotent");
        insta::assert_snapshot!(format!("{src}\n----- formatted -----\n{once}"));
    });
}

fn format(src: &str) -> String {
    let parsed = segc_compiler::syntax::parse(segc_compiler::diag::FileId(0), src);
    assert!(!parsed.has_errors(), "{:?}", parsed.diagnostics);
    segc_compiler::syntax::fmt::format(src, &parsed)
}
