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

/// A policy too large for a probe list (the matrix pairs every zone with every
/// cde zone): the section summarises each cde zone, with counts that follow
/// from the flows, and stays small; `segc probes` still lists every probe.
#[test]
fn a_large_probe_matrix_is_summarised_per_cde_zone() {
    let dir = std::env::temp_dir().join(format!("segc-report-large-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut src = String::new();
    // 40 zones, the first 10 cde: 39 * 10 * 2 = 780 pairs.
    for i in 0..40 {
        let scope = if i < 10 { "cde" } else { "connected" };
        src.push_str(&format!("zone z{i:02} {{\n  cidrs = [10.0.{i}.0/24]\n  scope = {scope}\n}}\n"));
    }
    // z00 is reached from z10..z14 and reaches z20; z01 reaches z00.
    for i in 10..15 {
        src.push_str(&format!("flow z{i} -> z00 on tcp/5432 {{\n  justification = \"app\"\n  reviewed = 2026-10-01\n}}\n"));
    }
    src.push_str("flow z00 -> z20 on tcp/443 {\n  justification = \"out\"\n  reviewed = 2026-10-01\n}\n");
    src.push_str("flow z01 -> z00 on tcp/5432 {\n  justification = \"replica\"\n  reviewed = 2026-10-01\n}\n");
    std::fs::write(dir.join("main.seg"), src).unwrap();
    let audit = std::env::temp_dir().join(format!("segc-report-large-audit-{}", std::process::id()));
    let o = Command::new(env!("CARGO_BIN_EXE_segc"))
        .args(["report", "--today", "2026-11-28"])
        .arg(&dir)
        .env("SEGC_AUDIT_DIR", &audit)
        .output()
        .expect("segc runs");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("780 pairs, too many to list here"), "{text}");
    let section = text.split("## Segmentation test probes").nth(1).expect("the section").split("\n## ").next().unwrap_or_default();
    let rows: Vec<&str> = section.lines().filter(|l| l.starts_with("| z")).collect();
    assert_eq!(rows.len(), 10, "one row per cde zone: {section}");
    // cde zone, reached from, reaches, no traffic either way.
    assert_eq!(rows[0], "| z00 | 6 | 1 | 32 |", "{section}");
    assert_eq!(rows[1], "| z01 | 0 | 1 | 38 |", "{section}");
    assert_eq!(rows[2], "| z02 | 0 | 0 | 39 |", "{section}");
    assert!(text.len() < 100_000, "the report stays small: {} bytes", text.len());
    // The full matrix is still there for whoever runs the probes.
    let probes = Command::new(env!("CARGO_BIN_EXE_segc")).arg("probes").arg(&dir).output().expect("segc runs");
    assert!(String::from_utf8_lossy(&probes.stdout).lines().count() > 780, "every probe");
}

/// Same policy, same date, same bytes: a freshly copied feed (a clone, a CI
/// checkout) must not make two reports a second apart differ. The feed's
/// age was once counted in seconds from the clock.
#[test]
fn a_feed_copys_age_does_not_change_the_report_by_the_second() {
    let dir = std::env::temp_dir().join(format!("segc-report-feeds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("feeds")).expect("dir");
    let ex = repo().join("examples/threat-feeds");
    std::fs::copy(ex.join("main.seg"), dir.join("main.seg")).expect("policy");
    for f in std::fs::read_dir(ex.join("feeds")).expect("feeds").flatten() {
        std::fs::copy(f.path(), dir.join("feeds").join(f.file_name())).expect("feed");
    }
    let run = || {
        let o = Command::new(env!("CARGO_BIN_EXE_segc"))
            .args(["report", "--today", "2026-11-28"])
            .arg(&dir)
            .env("SEGC_AUDIT_DIR", dir.join("audit"))
            .output()
            .expect("segc runs");
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let first = run();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(first, run(), "the report changed with the clock");
    let row = first.lines().find(|l| l.starts_with("| spamhaus_drop |")).expect("the feed's row");
    assert!(row.contains("copy of "), "the copy's date is shown: {row}");
}
