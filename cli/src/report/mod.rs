//! `segc report`: the compliance report an assessor reads: what the policy
//! segments, every flow with its justification and review status, the
//! findings, the probe matrix (PCI 11.4.5) and the zone diagram. Markdown and
//! HTML; PDF as the Markdown text typeset in a monospace font.

use std::fmt::Write;

use segc_compiler::graph::ZoneGraph;
use segc_compiler::ir::eval::Evaluator;
use segc_compiler::ir::{Date, Model, Review, Rule};
use segc_compiler::Compilation;

mod controls;
mod pdf;
mod probes;

pub use controls::Facts;

/// What a report draws from outside the policy: the newest probe runs (from
/// the audit log) and the framework template, if any.
pub struct Inputs {
    pub runs: Vec<ProbeRun>,
    pub template: Option<crate::Template>,
    /// Each feed's age on the report's date (`3 days (copy of 2026-12-04)`, `read now`).
    pub feed_ages: std::collections::BTreeMap<String, String>,
}

fn review_status(m: &Model, r: &Rule, today: Date) -> String {
    let (a, b) = (m.zone(r.from), m.zone(r.to));
    if !a.is_cde() && !b.is_cde() {
        return "n/a (no cde)".into();
    }
    match r.review(today, m.policy.review_interval_days) {
        Review::Never => "NEVER REVIEWED".into(),
        Review::Overdue { due, .. } => format!("OVERDUE since {due}"),
        Review::Current { due, .. } => format!("ok, due {due}"),
        Review::Future { date } => format!("INVALID: {date} is in the future"),
    }
}

/// Every assert with where it is and its result (an assert that fails is
/// E401, and a policy with errors gets no report).
fn asserts(c: &Compilation) -> Vec<Vec<String>> {
    let m = &c.model;
    let violated: Vec<_> = c.diagnostics.iter().filter(|d| d.code.as_str() == "E401").map(|d| d.span).collect();
    m.asserts
        .iter()
        .map(|a| {
            let what = match &a.kind {
                segc_compiler::ir::AssertKind::Unreachable => "unreachable".to_string(),
                segc_compiler::ir::AssertKind::Denied { set, .. } => format!("denied on {set}"),
            };
            let holds = !violated.contains(&a.span);
            vec![
                format!("{} -> {} {what}", m.zone(a.from).name, m.zone(a.to).name),
                c.sources().location(a.span),
                if holds { "holds" } else { "VIOLATED" }.into(),
            ]
        })
        .collect()
}

/// Every test case with its result.
fn tests(results: &[segc_compiler::analysis::verify::CaseResult]) -> Vec<Vec<String>> {
    results
        .iter()
        .map(|r| {
            vec![
                r.test.clone(),
                r.case.clone(),
                format!("{:?}", r.expect).to_lowercase(),
                r.got.as_str().into(),
                if r.passed { "passes" } else { "FAILS" }.into(),
            ]
        })
        .collect()
}

/// A section of the report: title, header, rows.
type Section = (String, Vec<String>, Vec<Vec<String>>);

/// The report as rows of cells, shared by every format.
struct Tables {
    title: String,
    intro: Vec<String>,
    verdict: String,
    reasons: Vec<String>,
    sections: Vec<Section>,
    dot: String,
    svg: String,
}

/// The newest `segc probes --run` of this policy (same source hash) from
/// each zone, as report rows, from the audit log; none when it cannot be read.
/// The newest `probes.run` audit event from one zone.
pub struct ProbeRun {
    /// Unix time of the event.
    pub ts: u64,
    pub from: String,
    pub probes: u64,
    pub as_expected: u64,
    pub mismatches: u64,
    pub skipped: u64,
    /// The event's sequence number in the audit log.
    pub seq: u64,
}

impl ProbeRun {
    fn row(&self) -> Vec<String> {
        let at = Date::from_days((self.ts / 86_400) as i64);
        let (h, m) = ((self.ts % 86_400) / 3600, (self.ts % 3600) / 60);
        vec![
            format!("{at} {h:02}:{m:02} UTC"),
            self.from.clone(),
            self.probes.to_string(),
            self.as_expected.to_string(),
            self.mismatches.to_string(),
            self.skipped.to_string(),
            if self.mismatches == 0 { "as the policy says".into() } else { "MISMATCHES".into() },
            format!("audit event {}", self.seq),
        ]
    }
}

pub fn probe_runs(c: &Compilation) -> Vec<ProbeRun> {
    let digest = c.sources().digest();
    let Ok(events) = segc_audit::Log::open_existing(&segc_audit::default_dir()).and_then(|l| l.events()) else { return vec![] };
    let mut newest: std::collections::BTreeMap<String, &segc_audit::Event> = std::collections::BTreeMap::new();
    for e in events.iter().filter(|e| e.kind == "probes.run" && e.data["source_sha256"] == digest.as_str()) {
        newest.insert(e.data["from"].as_str().unwrap_or("").to_string(), e);
    }
    newest
        .into_iter()
        .map(|(from, e)| {
            let n = |k: &str| e.data[k].as_u64().unwrap_or(0);
            ProbeRun {
                ts: e.ts,
                from,
                probes: n("probes"),
                as_expected: n("as_expected"),
                mismatches: n("mismatches"),
                skipped: n("skipped"),
                seq: e.seq,
            }
        })
        .collect()
}

/// How many untrusted-to-cde paths the summary spells out.
const EXPOSURES_LISTED: usize = 20;

/// The summary lines at the top: verdict, provenance, counts, paths.
fn intro(c: &Compilation, today: Date, facts: &Facts, graph: &ZoneGraph) -> Vec<String> {
    let m = &c.model;
    let (verdict, why) = facts.verdict();
    let errors = c.diagnostics.iter().filter(|d| d.is_error()).count();
    let cde = m.zones.iter().filter(|z| z.is_cde()).count();
    let all = graph.exposures(m);
    // The first few paths in the summary; `segc check --format json` lists them all.
    let exposures: Vec<String> = all
        .iter()
        .take(EXPOSURES_LISTED)
        .map(|e| {
            let mut p = m.zone(e.from).name.clone();
            for (_, to, set) in &e.hops {
                p.push_str(&format!(" -> {} ({set})", m.zone(*to).name));
            }
            p
        })
        .collect();
    let mut intro = vec![
        format!("Verdict: {verdict}: {}.", why.join("; ")),
        format!("Generated by segc {} on {today}; source SHA-256 {}.", env!("CARGO_PKG_VERSION"), c.sources().digest()),
        format!(
            "Owner: {}. Review interval: {} days (PCI DSS 1.2.7).",
            m.policy.owner.as_deref().unwrap_or("not set"),
            m.policy.review_interval_days
        ),
        format!(
            "{} zones ({cde} in the cardholder-data environment), {} flows, {} denies; {errors} errors and {} warnings.",
            m.zones.len(),
            m.flows.len(),
            m.denies.len(),
            c.diagnostics.len() - errors
        ),
    ];
    if exposures.is_empty() {
        intro.push("No path leads from an untrusted zone into the cde.".into());
    } else {
        let more = match all.len() - exposures.len() {
            0 => String::new(),
            n => format!("; and {n} more (`segc check --format json` lists every path)"),
        };
        intro.push(format!("Paths from untrusted zones into the cde ({}): {}{more}.", all.len(), exposures.join("; ")));
    }
    intro.push(format!(
        "Tests: {} cases, {} failing; {} of {} flows exercised by a test.",
        facts.tests, facts.tests_failed, facts.flows_exercised, facts.flows
    ));
    intro
}

fn zone_rows(m: &Model) -> Vec<Vec<String>> {
    m.zones
        .iter()
        .map(|z| {
            vec![
                z.name.clone(),
                z.scope.as_str().into(),
                z.kind.as_str().into(),
                z.prefixes.iter().map(|p| p.prefix.to_string()).collect::<Vec<_>>().join(" "),
                z.owner.clone().unwrap_or_default(),
                z.description.clone().unwrap_or_default(),
            ]
        })
        .collect()
}

fn flow_rows(c: &Compilation, today: Date) -> Vec<Vec<String>> {
    let m = &c.model;
    m.flows
        .iter()
        .map(|f| {
            vec![
                m.zone(f.from).name.clone(),
                m.zone(f.to).name.clone(),
                f.services_text(),
                f.justification.clone().unwrap_or_else(|| "-".into()),
                f.owner.clone().unwrap_or_else(|| "-".into()),
                f.reviewed.map_or_else(|| "-".into(), |d| d.to_string()),
                review_status(m, f, today),
                c.sources().location(f.span),
            ]
        })
        .collect()
}

/// AWS ingress rules widened over bound zones' addresses (DECISIONS 27):
/// exact only because those zones' own egress decides, which a reviewer
/// must be told rather than find.
fn widened_rows(m: &Model) -> Vec<Vec<String>> {
    segc_compiler::lower::aws::lower(m)
        .map(|out| {
            out.security_groups
                .iter()
                .flat_map(|g| {
                    g.ingress.iter().filter(|r| !r.covers.is_empty()).map(|r| {
                        let ports = match (r.protocol.as_str(), r.from_port, r.to_port) {
                            ("-1", _, _) => "all traffic".to_string(),
                            (p, -1, _) => p.to_string(),
                            (p, a, b) if a == b || b == -1 => format!("{p}/{a}"),
                            (p, a, b) => format!("{p}/{a}-{b}"),
                        };
                        let peer = match &r.peer {
                            segc_compiler::lower::aws::SgPeer::Cidr(c) | segc_compiler::lower::aws::SgPeer::Group(c) => c.clone(),
                        };
                        vec![g.name.clone(), format!("{ports} from {peer}"), r.description.clone(), r.covers.join(", ")]
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn feed_rows(m: &Model, ages: &std::collections::BTreeMap<String, String>) -> Vec<Vec<String>> {
    m.feeds
        .iter()
        .map(|f| {
            vec![
                f.name.clone(),
                f.location.clone(),
                f.format.as_str().into(),
                f.entries.len().to_string(),
                f.sha256.clone(),
                ages.get(&f.name).cloned().unwrap_or_else(|| "unknown".into()),
                if f.blocked { "yes".into() } else { "no (W503)".into() },
            ]
        })
        .collect()
}

fn tables(c: &Compilation, today: Date, inputs: &Inputs) -> Tables {
    let m = &c.model;
    let runs = &inputs.runs;
    let ev = Evaluator::new(m);
    let graph = ZoneGraph::new(&ev);
    let results = segc_compiler::analysis::verify::run_tests(&ev);
    let facts = Facts::new(c, today, &graph, &results, runs);
    let mut intro = intro(c, today, &facts, &graph);
    let denies = m
        .denies
        .iter()
        .map(|d| vec![m.zone(d.from).name.clone(), m.zone(d.to).name.clone(), d.services_text(), c.sources().location(d.span)])
        .collect();
    let findings = c
        .diagnostics
        .iter()
        .map(|d| vec![d.code.to_string(), d.severity.as_str().into(), c.sources().location(d.span), d.message.clone()])
        .collect();
    let h = |v: &[&str]| v.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
    let (probe_header, probes) = probes::section(m, &mut intro);
    let mut sections = vec![
        ("Zones".into(), h(&["zone", "scope", "kind", "prefixes", "owner", "description"]), zone_rows(m)),
        (
            "Flows (PCI DSS 1.2.5, 1.2.7)".into(),
            h(&["from", "to", "services", "justification", "owner", "reviewed", "review status", "where"]),
            flow_rows(c, today),
        ),
        ("Denies".into(), h(&["from", "to", "services", "where"]), denies),
        ("Findings".into(), h(&["code", "severity", "where", "message"]), findings),
        ("Asserts".into(), h(&["assert", "where", "result"]), asserts(c)),
        ("Tests".into(), h(&["test", "case", "expected", "got", "result"]), tests(&results)),
        ("Segmentation test probes (PCI DSS 11.4.5)".into(), probe_header, probes),
        ("Threat feeds".into(), h(&["feed", "source", "format", "prefixes", "sha256", "age", "blocked"]), feed_rows(m, &inputs.feed_ages)),
        (
            "Segmentation test runs (PCI DSS 11.4.5)".into(),
            h(&["run", "from zone", "probes", "as expected", "mismatches", "skipped", "result", "record"]),
            runs.iter().map(ProbeRun::row).collect(),
        ),
    ];
    if let Some(t) = inputs.template {
        let (title, rows) = controls::controls(t, &facts);
        sections.insert(0, (title, h(&["control", "requirement", "what segc shows", "status", "what a person must add"]), rows));
    }
    if runs.is_empty() {
        intro.push("No probe run of this policy is in the audit log: run `segc probes --run --from ZONE` from a host in each zone.".into());
    }
    let widened = widened_rows(m);
    if !widened.is_empty() {
        intro.push(format!(
            "AWS: {} ingress rules from zones addressed by CIDR also cover bound zones' addresses, because one wider CIDR replaces several \
             narrower ones (security groups allow 60 rules per direction). A packet from such an address is a member of its zone's group, \
             whose own egress rules (always exact) must also allow it; this holds while each instance carries only its zone's group.",
            widened.len()
        ));
        sections.push((
            "AWS rules that rely on the source group's egress".into(),
            h(&["group", "rule", "serves", "also covers bound zones"]),
            widened,
        ));
    }
    let (verdict, reasons) = facts.verdict();
    Tables {
        title: format!("Segmentation report: {}", m.policy.name.as_deref().unwrap_or("policy")),
        intro,
        verdict: verdict.to_string(),
        reasons: reasons.iter().map(|r| r.to_string()).collect(),
        sections,
        dot: crate::graph::dot(m, &graph),
        svg: crate::graph::svg(m, &graph),
    }
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn markdown(c: &Compilation, today: Date, inputs: &Inputs) -> String {
    let t = tables(c, today, inputs);
    let mut s = format!("# {}\n\n", t.title);
    for line in &t.intro {
        let _ = writeln!(s, "{line}\n");
    }
    for (title, head, rows) in &t.sections {
        let _ = writeln!(s, "## {title}\n");
        if rows.is_empty() {
            s.push_str("None.\n\n");
            continue;
        }
        let _ = writeln!(s, "| {} |", head.join(" | "));
        let _ = writeln!(s, "|{}", "---|".repeat(head.len()));
        for r in rows {
            let cells: Vec<String> = r.iter().map(|c| md_cell(c)).collect();
            let _ = writeln!(s, "| {} |", cells.join(" | "));
        }
        s.push('\n');
    }
    let _ = write!(s, "## Zone diagram\n\n```dot\n{}```\n", t.dot);
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub fn html(c: &Compilation, today: Date, inputs: &Inputs) -> String {
    let t = tables(c, today, inputs);
    let mut s = String::from("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    let _ = writeln!(s, "<title>{}</title>", esc(&t.title));
    s.push_str("<style>body{font-family:Helvetica,Arial,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin-bottom:1.5em}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top;font-size:13px}th{background:#f3f3f3}td.bad{color:#b00;font-weight:bold}</style></head><body>\n");
    let _ = writeln!(s, "<h1>{}</h1>", esc(&t.title));
    for line in &t.intro {
        let _ = writeln!(s, "<p>{}</p>", esc(line));
    }
    let _ = writeln!(s, "<h2>Zone diagram</h2>\n{}", t.svg);
    for (title, head, rows) in &t.sections {
        let _ = writeln!(s, "<h2>{}</h2>", esc(title));
        if rows.is_empty() {
            s.push_str("<p>None.</p>\n");
            continue;
        }
        s.push_str("<table><tr>");
        for h in head {
            let _ = write!(s, "<th>{}</th>", esc(h));
        }
        s.push_str("</tr>\n");
        for r in rows {
            s.push_str("<tr>");
            for cell in r {
                let bad = cell.starts_with("OVERDUE") || cell.starts_with("NEVER") || cell == "error";
                let _ = write!(s, "<td{}>{}</td>", if bad { " class=\"bad\"" } else { "" }, esc(cell));
            }
            s.push_str("</tr>\n");
        }
        s.push_str("</table>\n");
    }
    s.push_str("</body></html>\n");
    s
}

/// The typeset PDF (`pdf`).
pub fn pdf(c: &Compilation, today: Date, inputs: &Inputs) -> Vec<u8> {
    let t = tables(c, today, inputs);
    let m = &c.model;
    let hash = c.sources().digest();
    let template = inputs.template.map(|t| {
        match t {
            crate::Template::Pci => "PCI DSS v4.0 controls",
            crate::Template::Soc2 => "SOC 2 controls",
            crate::Template::Gdpr => "GDPR articles",
        }
        .to_string()
    });
    let cover = pdf::Cover {
        policy: m.policy.name.as_deref().unwrap_or("policy"),
        owner: m.policy.owner.as_deref().unwrap_or("not set"),
        description: m.policy.description.as_deref(),
        hash: &hash,
        date: today.to_string(),
        verdict: &t.verdict,
        reasons: &t.reasons,
        template: template.as_deref(),
    };
    // The first two intro lines (verdict, provenance) are on the cover already.
    pdf::document(&cover, &t.intro[2.min(t.intro.len())..], &t.svg, &t.sections)
}
