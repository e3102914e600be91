//! `segc report`: one overall verdict, asserts and tests with their results,
//! zone descriptions and flow owners, and `--template pci|soc2|gdpr`
//! arranging the facts by the framework's controls.

use std::path::PathBuf;
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn report(example: &str, extra: &[&str]) -> Output {
    let audit = std::env::temp_dir().join(format!("segc-report-audit-{}", std::process::id()));
    Command::new(env!("CARGO_BIN_EXE_segc"))
        .arg("report")
        .args(extra)
        .arg(repo().join("examples").join(example))
        .env("SEGC_AUDIT_DIR", audit)
        .output()
        .expect("segc runs")
}

fn md(example: &str, extra: &[&str]) -> String {
    let o = report(example, extra);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn templates_arrange_the_facts_by_controls() {
    for (template, title, controls) in [
        ("pci", "Controls: PCI DSS v4.0", &["1.2.1", "1.2.5", "1.2.7", "1.3.1", "1.3.2", "1.4.1", "10.5.1", "11.4.5"][..]),
        ("soc2", "Controls: SOC 2", &["CC6.1", "CC6.6", "CC6.7", "CC7.2"][..]),
        ("gdpr", "Controls: GDPR", &["Art. 25", "Art. 32(1)(b)", "Art. 32(1)(d)"][..]),
    ] {
        let text = md("retail-pos", &["--template", template, "--today", "2026-11-28"]);
        assert!(text.contains(&format!("## {title}")), "{template}: {text}");
        for c in controls {
            let row = text.lines().find(|l| l.starts_with(&format!("| {c} |"))).unwrap_or_else(|| panic!("{template}: no row for {c}"));
            // control, requirement, what segc shows, status, what a person must add
            assert_eq!(row.matches(" | ").count(), 4, "{row}");
        }
        // No probe run recorded: the testing control is not met, and says so.
        assert!(text.contains("no probe run recorded | NOT MET"), "{template}: {text}");
    }
    // Without a template, no controls section.
    assert!(!md("retail-pos", &["--today", "2026-11-28"]).contains("## Controls"));
    let o = report("retail-pos", &["--template", "hipaa"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn one_verdict_with_its_reasons_and_the_evidence_tables() {
    let text = md("retail-pos", &["--today", "2026-11-28"]);
    let verdict = text.lines().find(|l| l.starts_with("Verdict: ")).expect("a verdict line");
    assert!(verdict.starts_with("Verdict: PASS WITH NOTES") && verdict.contains("no segmentation test run"), "{verdict}");
    for section in ["## Asserts", "## Tests", "## Segmentation test runs (PCI DSS 11.4.5)"] {
        assert!(text.contains(section), "no {section}");
    }
    assert!(text.lines().any(|l| l.starts_with("| store_wifi -> pos denied on any |") && l.ends_with("| holds |")), "{text}");
    assert!(text.lines().filter(|l| l.ends_with("| passes |")).count() >= 10);
    assert!(text.contains("| zone | scope | kind | prefixes | owner | description |"));
    assert!(text.contains("POS terminals; each store has a /24 inside 10.64.0.0/12"));
    assert!(text.contains("| from | to | services | justification | owner | reviewed |"));
    assert!(text.contains("Tests: 18 cases, 0 failing; 9 of 9 flows exercised by a test."), "{text}");
    // Two years on, every cde review is overdue: FAIL, naming PCI DSS 1.2.7.
    let later = md("retail-pos", &["--today", "2028-12-01", "--template", "pci"]);
    let verdict = later.lines().find(|l| l.starts_with("Verdict: ")).expect("a verdict line");
    assert!(verdict.starts_with("Verdict: FAIL") && verdict.contains("1.2.7"), "{verdict}");
    assert!(later.lines().any(|l| l.starts_with("| 1.2.7 |") && l.contains("| NOT MET |")));
    // The HTML carries the same.
    let html = String::from_utf8_lossy(&report("retail-pos", &["--today", "2026-11-28", "--template", "pci", "--format", "html"]).stdout)
        .into_owned();
    assert!(html.contains("Controls: PCI DSS v4.0") && html.contains("Verdict: PASS WITH NOTES"));
}
