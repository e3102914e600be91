//! The facts a report's verdict and its framework templates rest on, and
//! the controls of PCI DSS v4.0, SOC 2 and GDPR (SPEC §9) with what segc
//! shows for each and what a person must add.

use segc_compiler::analysis::verify;
use segc_compiler::graph::ZoneGraph;
use segc_compiler::ir::{Action, Date, Review};
use segc_compiler::Compilation;

use super::ProbeRun;
use crate::Template;

/// What the policy and the audit log show, counted.
pub struct Facts {
    pub warnings: usize,
    pub tests: usize,
    pub tests_failed: usize,
    pub flows: usize,
    pub flows_exercised: usize,
    pub asserts: usize,
    pub cde_flows: usize,
    pub cde_unjustified: usize,
    pub cde_review_due: usize,
    pub cde_inbound: usize,
    pub cde_outbound: usize,
    /// Flows straight from an untrusted zone into a cde zone.
    pub direct: usize,
    /// Paths from untrusted zones into the cde through other zones.
    pub exposures: usize,
    pub runs: usize,
    pub run_mismatches: usize,
    pub source_sha256: String,
}

impl Facts {
    pub fn new(c: &Compilation, today: Date, graph: &ZoneGraph, results: &[verify::CaseResult], runs: &[ProbeRun]) -> Facts {
        let m = &c.model;
        let mut exercised = vec![false; m.flows.len()];
        for r in results {
            for &(a, id) in &r.deciding {
                if a == Action::Allow {
                    exercised[id.0 as usize] = true;
                }
            }
        }
        let cde = |f: &segc_compiler::ir::Rule| m.zone(f.from).is_cde() || m.zone(f.to).is_cde();
        let cde_flows: Vec<_> = m.flows.iter().filter(|f| cde(f)).collect();
        Facts {
            warnings: c.diagnostics.iter().filter(|d| !d.is_error()).count(),
            tests: results.len(),
            tests_failed: results.iter().filter(|r| !r.passed).count(),
            flows: m.flows.len(),
            flows_exercised: exercised.iter().filter(|&&e| e).count(),
            asserts: m.asserts.len(),
            cde_flows: cde_flows.len(),
            cde_unjustified: cde_flows.iter().filter(|f| f.justification.as_deref().is_none_or(|j| j.trim().is_empty())).count(),
            cde_review_due: cde_flows
                .iter()
                .filter(|f| !matches!(f.review(today, m.policy.review_interval_days), Review::Current { .. }))
                .count(),
            cde_inbound: m.flows.iter().filter(|f| m.zone(f.to).is_cde() && !m.zone(f.from).is_cde()).count(),
            cde_outbound: m.flows.iter().filter(|f| m.zone(f.from).is_cde() && !m.zone(f.to).is_cde()).count(),
            direct: m.flows.iter().filter(|f| m.zone(f.from).scope == segc_compiler::ir::Scope::Untrusted && m.zone(f.to).is_cde()).count(),
            exposures: graph.exposures(m).len(),
            runs: runs.len(),
            run_mismatches: runs.iter().filter(|r| r.mismatches > 0).count(),
            source_sha256: c.sources().digest(),
        }
    }

    /// One overall verdict, and why.
    pub fn verdict(&self) -> (String, Vec<String>) {
        let mut fail = Vec::new();
        if self.direct > 0 {
            fail.push(format!("{} flows lead straight from untrusted zones into the cde (PCI DSS 1.4.4)", self.direct));
        }
        if self.cde_unjustified > 0 {
            fail.push(format!("{} cde flows have no justification (PCI DSS 1.2.5)", self.cde_unjustified));
        }
        if self.cde_review_due > 0 {
            fail.push(format!("{} cde flows are not reviewed within the interval (PCI DSS 1.2.7)", self.cde_review_due));
        }
        if self.tests_failed > 0 {
            fail.push(format!("{} test cases fail", self.tests_failed));
        }
        if self.run_mismatches > 0 {
            fail.push(format!("the newest probe run from {} zones found mismatches (PCI DSS 11.4.5)", self.run_mismatches));
        }
        if !fail.is_empty() {
            return ("FAIL".into(), fail);
        }
        let mut attention = Vec::new();
        if self.runs == 0 {
            attention.push("no segmentation test run of this policy is recorded (`segc probes --run`)".to_string());
        }
        if self.exposures > 0 {
            attention.push(format!(
                "{} paths reach the cde from untrusted zones through other zones (each hop a justified flow)",
                self.exposures
            ));
        }
        if self.warnings > 0 {
            attention.push(format!("{} warnings", self.warnings));
        }
        if attention.is_empty() {
            ("PASS".into(), vec!["every check segc makes holds".into()])
        } else {
            ("PASS WITH NOTES".into(), attention)
        }
    }
}

fn met(ok: bool) -> String {
    if ok { "met" } else { "NOT MET" }.into()
}

/// What several controls cite, worded once.
struct Shown {
    source: String,
    runs: String,
    tested: bool,
    untrusted: String,
}

fn row(id: &str, req: &str, shows: String, status: String, person: &str) -> Vec<String> {
    vec![id.to_string(), req.to_string(), shows, status, person.to_string()]
}

/// The framework's controls: control, requirement, what segc shows, status,
/// what a person must add.
pub fn controls(t: Template, f: &Facts) -> (String, Vec<Vec<String>>) {
    let runs = if f.runs == 0 {
        "no probe run recorded".to_string()
    } else {
        format!("newest probe runs from {} zones, {} with mismatches", f.runs, f.run_mismatches)
    };
    let shown = Shown {
        source: format!("the policy as code, source SHA-256 {}", &f.source_sha256[..16.min(f.source_sha256.len())]),
        runs,
        tested: f.runs > 0 && f.run_mismatches == 0,
        untrusted: format!(
            "{} flows straight from untrusted zones into the cde; {} paths through other zones, each hop a justified flow",
            f.direct, f.exposures
        ),
    };
    match t {
        Template::Pci => pci(f, &shown),
        Template::Soc2 => soc2(f, &shown),
        Template::Gdpr => gdpr(f, &shown),
    }
}

fn pci(f: &Facts, s: &Shown) -> (String, Vec<Vec<String>>) {
    let Shown { source, runs, tested, untrusted } = s;
    let tested = *tested;
    (
        "Controls: PCI DSS v4.0".into(),
        vec![
            row(
                "1.2.1",
                "NSC configuration standards defined and maintained",
                format!("{source}; every build records it in its manifest"),
                "shown".into(),
                "the change-control records approving this revision",
            ),
            row(
                "1.2.5",
                "every allowed service has an identified business need",
                format!("{} cde flows, {} without a justification", f.cde_flows, f.cde_unjustified),
                met(f.cde_unjustified == 0),
                "approval of each justification by its owner",
            ),
            row(
                "1.2.7",
                "NSC configurations reviewed at least every six months",
                format!("{} cde flows outside their review interval", f.cde_review_due),
                met(f.cde_review_due == 0),
                "the minutes of the review",
            ),
            row(
                "1.3.1",
                "inbound traffic to the CDE restricted to what is necessary",
                format!("{} flows into the cde, everything else denied by default", f.cde_inbound),
                "shown".into(),
                "confirmation that each inbound flow is necessary",
            ),
            row(
                "1.3.2",
                "outbound traffic from the CDE restricted to what is necessary",
                format!("{} flows out of the cde, everything else denied by default", f.cde_outbound),
                "shown".into(),
                "confirmation that each outbound flow is necessary",
            ),
            row(
                "1.4.1",
                "NSCs between trusted and untrusted networks",
                untrusted.clone(),
                met(f.direct == 0),
                "the deployed NSCs' inventory",
            ),
            row(
                "10.5.1",
                "audit log history retained for at least 12 months",
                "segc's audit log: hash-chained, per-event MACs, key outside the log folder (`segc audit verify`)".into(),
                "shown".into(),
                "retention of the exported log (SIEM) for 12 months",
            ),
            row(
                "11.4.5",
                "segmentation controls tested at least every 12 months",
                format!("the probe plan below; {runs}"),
                met(tested),
                "the tester's sign-off and the runs from every zone",
            ),
        ],
    )
}

fn soc2(f: &Facts, s: &Shown) -> (String, Vec<Vec<String>>) {
    let Shown { source, runs, tested, untrusted } = s;
    let tested = *tested;
    (
        "Controls: SOC 2 (2017 Trust Services Criteria)".into(),
        vec![
            row(
                "CC6.1",
                "logical access security architecture",
                format!("default deny between all zones, {} flows; {source}", f.flows),
                "shown".into(),
                "the system description linking zones to systems",
            ),
            row(
                "CC6.6",
                "boundary protection against threats from outside",
                untrusted.clone(),
                met(f.direct == 0),
                "the inventory of internet-facing systems",
            ),
            row(
                "CC6.7",
                "transmission of data restricted to authorised parties",
                format!(
                    "{} cde flows, {} without a justification; {} test cases, {} failing",
                    f.cde_flows, f.cde_unjustified, f.tests, f.tests_failed
                ),
                met(f.cde_unjustified == 0 && f.tests_failed == 0),
                "the data-flow owners' approvals",
            ),
            row(
                "CC7.2",
                "monitoring of components for anomalies",
                format!("audit log, drift detection, deny samples; {runs}"),
                met(tested),
                "the monitoring and alert-handling procedure",
            ),
        ],
    )
}

fn gdpr(f: &Facts, s: &Shown) -> (String, Vec<Vec<String>>) {
    let Shown { source, runs, tested, untrusted } = s;
    let tested = *tested;
    (
        "Controls: GDPR".into(),
        vec![
            row(
                "Art. 25",
                "data protection by design and by default",
                format!("default deny; {} flows, each named with its services; {source}", f.flows),
                "shown".into(),
                "the record of processing activities naming the zones that hold personal data",
            ),
            row(
                "Art. 32(1)(b)",
                "confidentiality and integrity of processing systems",
                untrusted.clone(),
                met(f.direct == 0),
                "the risk assessment (DPIA) this segmentation answers",
            ),
            row(
                "Art. 32(1)(d)",
                "regularly testing the effectiveness of the measures",
                format!(
                    "{} test cases ({} failing), {} of {} flows exercised; {runs}",
                    f.tests, f.tests_failed, f.flows_exercised, f.flows
                ),
                met(tested && f.tests_failed == 0),
                "the testing schedule and its results",
            ),
        ],
    )
}
