//! Asserts and test blocks, run against the reference evaluator: `assert
//! unreachable` over transitive paths (E401), `assert denied` on one zone pair
//! (E401), and test cases (E402).

use std::net::IpAddr;

use crate::diag::{Code, Diagnostic, Span};
use crate::graph::ZoneGraph;
use crate::ir::eval::Evaluator;
use crate::ir::{Action, AssertKind, Endpoint, FeedId, Model, Prefix, RuleId, ServiceSet, TestCase, ZoneId};
use crate::source::SourceMap;
use crate::syntax::ast::Expect;

/// The verdict a test case got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Got {
    Allow,
    Deny,
    /// Part of the case's service is allowed and part is denied.
    Partial {
        allowed: ServiceSet,
        denied: ServiceSet,
    },
}

impl Got {
    pub fn as_str(&self) -> &'static str {
        match self {
            Got::Allow => "allow",
            Got::Deny => "deny",
            Got::Partial { .. } => "partly allow",
        }
    }
}

/// The outcome of one test case.
#[derive(Clone, Debug)]
pub struct CaseResult {
    pub test: String,
    pub case: String,
    pub expect: Expect,
    pub got: Got,
    pub passed: bool,
    /// The flows and denies that decided the verdict.
    pub deciding: Vec<(Action, RuleId)>,
    /// The zones of the two ends, when they are in one.
    pub zones: (Option<ZoneId>, Option<ZoneId>),
    /// The blocked feed that denied the case: feed, line, prefix, and
    /// whether it was the destination.
    pub feed: Option<(FeedId, u32, Prefix, bool)>,
    pub span: Span,
}

/// A case end: its zone (if any) and, for an address, the prefix that decided it.
fn resolve_end(ev: &Evaluator<'_>, e: &Endpoint) -> (Option<ZoneId>, Option<(IpAddr, Prefix)>) {
    match e {
        Endpoint::Zone(z) => (Some(*z), None),
        Endpoint::Addr(ip) => match ev.zone_of(*ip) {
            Some((z, p)) => (Some(z), Some((*ip, p))),
            None => (None, None),
        },
    }
}

pub fn run_case(ev: &Evaluator<'_>, test: &str, c: &TestCase) -> CaseResult {
    let (zs, _) = resolve_end(ev, &c.from);
    let (zd, _) = resolve_end(ev, &c.to);
    let want = &c.service.set;
    // An address in a blocked feed (in an untrusted zone) is denied outright.
    let blocked = |e: &Endpoint, z: Option<ZoneId>| match (e, z) {
        (Endpoint::Addr(ip), Some(z)) => ev.blocked(*ip, z),
        _ => None,
    };
    let feed = blocked(&c.from, zs).map(|(f, l, p)| (f, l, p, false)).or_else(|| blocked(&c.to, zd).map(|(f, l, p)| (f, l, p, true)));
    let (allowed, deciding) = match (zs, zd) {
        _ if feed.is_some() => (ServiceSet::default(), Vec::new()),
        (Some(a), Some(b)) => {
            let allowed = ev.allowed(a, b).intersect(want);
            let rules = ev.pair(a, b);
            let flows = rules.map(|r| r.flows.clone()).unwrap_or_default();
            let denies = rules.map(|r| r.denies.clone()).unwrap_or_default();
            let model = ev.model;
            let mut deciding: Vec<(Action, RuleId)> = Vec::new();
            // Denies that remove part of the service, then flows that grant part of it.
            for id in denies {
                let r = model.rule(Action::Deny, id);
                if !r.set.intersect(want).intersect(&ev.allowed_before_denies(a, b)).is_empty() {
                    deciding.push((Action::Deny, id));
                }
            }
            for id in flows {
                if !model.rule(Action::Allow, id).set.intersect(&allowed).is_empty() {
                    deciding.push((Action::Allow, id));
                }
            }
            (allowed, deciding)
        }
        _ => (ServiceSet::default(), Vec::new()),
    };
    let denied = want.difference(&allowed);
    let got = if denied.is_empty() && !want.is_empty() {
        Got::Allow
    } else if allowed.is_empty() {
        Got::Deny
    } else {
        Got::Partial { allowed, denied }
    };
    let passed = matches!((c.expect, &got), (Expect::Allow, Got::Allow) | (Expect::Deny, Got::Deny));
    CaseResult {
        test: test.to_string(),
        case: c.text.clone(),
        expect: c.expect,
        got,
        passed,
        deciding,
        zones: (zs, zd),
        feed,
        span: c.span,
    }
}

/// Runs every test case, in the model's (sorted) order.
pub fn run_tests(ev: &Evaluator<'_>) -> Vec<CaseResult> {
    ev.model.tests.iter().flat_map(|t| t.cases.iter().map(|c| run_case(ev, &t.name, c))).collect()
}

/// E402 for a failing case: expected, got, and the deciding items.
pub fn case_diagnostic(model: &Model, sources: &SourceMap, c: &TestCase, r: &CaseResult) -> Diagnostic {
    let mut d = Diagnostic::new(Code::E402, r.span, format!("test case failed: expected {}, got {}", r.expect.as_str(), r.got.as_str()))
        .with_label(r.span, format!("in test \"{}\"", r.test));
    for (end, e, zone) in [("source", &c.from, r.zones.0), ("destination", &c.to, r.zones.1)] {
        if let Endpoint::Addr(ip) = e {
            d = d.with_note(match zone {
                Some(z) => format!("the {end} {ip} is in zone `{}`", model.zone(z).name),
                None => format!("the {end} {ip} is in no zone, so everything to and from it is denied"),
            });
        }
    }
    if let Got::Partial { allowed, denied } = &r.got {
        d = d.with_note(format!("allowed: {allowed}; denied: {denied}"));
    }
    if let Some((feed, line, prefix, dst)) = r.feed {
        let f = model.feed(feed);
        d = d.with_note(format!(
            "the {} is in blocked feed `{}` ({}:{line}: {prefix}): denied both ways, before any flow",
            if dst { "destination" } else { "source" },
            f.name,
            f.location
        ));
        if let Some(b) = f.block_span {
            d = d.with_label(b, "blocked here");
        }
    } else if r.deciding.is_empty() {
        if let (Some(a), Some(b)) = r.zones {
            d = d.with_note(format!(
                "no flow from `{}` to `{}` matches {}: denied by default",
                model.zone(a).name,
                model.zone(b).name,
                c.service.text
            ));
        }
    }
    for &(action, id) in &r.deciding {
        let rule = model.rule(action, id);
        let what = match action {
            Action::Allow => "allowed by this flow",
            Action::Deny => "denied by this deny",
        };
        d = d.with_label(rule.head, what);
        d = d.with_note(format!(
            "{what}: {} {} on {} ({})",
            action_word(action),
            model.pair_text(rule.from, rule.to),
            rule.services_text(),
            sources.location(rule.span)
        ));
    }
    d
}

pub fn action_word(a: Action) -> &'static str {
    match a {
        Action::Allow => "flow",
        Action::Deny => "deny",
    }
}

/// Checks every assert; failures are E401.
pub fn run_asserts(ev: &Evaluator<'_>, graph: &ZoneGraph, sources: &SourceMap, diags: &mut Vec<Diagnostic>) {
    let model = ev.model;
    for a in &model.asserts {
        match &a.kind {
            AssertKind::Unreachable => {
                let Some(hops) = graph.shortest_path(a.from, a.to) else { continue };
                let mut d = Diagnostic::new(
                    Code::E401,
                    a.span,
                    format!(
                        "assertion failed: `{}` can reach `{}` in {} hop{}",
                        model.zone(a.from).name,
                        model.zone(a.to).name,
                        hops.len(),
                        if hops.len() == 1 { "" } else { "s" }
                    ),
                )
                .with_label(a.span, "this assertion");
                for (i, (from, to, set)) in hops.iter().enumerate() {
                    let flow = first_flow(ev, *from, *to, set);
                    let loc = flow.map(|f| sources.location(model.rule(Action::Allow, f).span)).unwrap_or_default();
                    if let Some(f) = flow {
                        d = d.with_label(model.rule(Action::Allow, f).head, format!("hop {}: {}", i + 1, model.pair_text(*from, *to)));
                    }
                    d = d.with_note(format!("hop {}: {} on {set} (flow at {loc})", i + 1, model.pair_text(*from, *to)));
                }
                diags.push(d.with_help("remove or narrow a flow on the path, or add a `deny`"));
            }
            AssertKind::Denied { services, set } => {
                let open = ev.allowed(a.from, a.to).intersect(set);
                if open.is_empty() {
                    continue;
                }
                let names: Vec<&str> = services.iter().map(|s| s.text.as_str()).collect();
                let mut d = Diagnostic::new(
                    Code::E401,
                    a.span,
                    format!("assertion failed: `{}` allows {} ({open})", model.pair_text(a.from, a.to), names.join(", ")),
                )
                .with_label(a.span, "this assertion");
                if let Some(rules) = ev.pair(a.from, a.to) {
                    for &id in &rules.flows {
                        let r = model.rule(Action::Allow, id);
                        if !r.set.intersect(&open).is_empty() {
                            d = d.with_label(r.head, format!("allowed by this flow ({})", r.services_text()));
                            d = d.with_note(format!("flow at {} allows {}", sources.location(r.span), r.set.intersect(&open)));
                        }
                    }
                }
                diags.push(d.with_help("remove the service from the flow, or add a `deny` for it"));
            }
        }
    }
}

fn first_flow(ev: &Evaluator<'_>, from: ZoneId, to: ZoneId, set: &ServiceSet) -> Option<RuleId> {
    ev.pair(from, to)?.flows.iter().copied().find(|&id| !ev.model.rule(Action::Allow, id).set.intersect(set).is_empty())
}
