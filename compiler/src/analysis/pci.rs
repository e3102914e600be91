//! PCI DSS v4.0 checks P101 to P108 on the IR. Every check looks at what a flow
//! really allows, after denies, so a flow cancelled by a deny raises nothing here
//! (it is W502 instead).

use crate::diag::{Code, Diagnostic};
use crate::ir::eval::Evaluator;
use crate::ir::{Action, Date, Review, Rule, RuleId, Scope, ServiceSet, ZoneKind};

/// What a flow allows once the denies on its zone pair are subtracted.
pub fn effective(ev: &Evaluator<'_>, id: RuleId) -> ServiceSet {
    let model = ev.model;
    let rule = model.rule(Action::Allow, id);
    let denies = ev.pair(rule.from, rule.to).map(|p| p.denies.as_slice()).unwrap_or(&[]);
    denies.iter().fold(rule.set.clone(), |acc, &d| acc.difference(&model.rule(Action::Deny, d).set))
}

fn pair(ev: &Evaluator<'_>, r: &Rule) -> String {
    format!("`{}`", ev.model.pair_text(r.from, r.to))
}

pub fn run(ev: &Evaluator<'_>, today: Option<Date>, diags: &mut Vec<Diagnostic>) {
    let model = ev.model;
    for (i, r) in model.flows.iter().enumerate() {
        let allowed = effective(ev, RuleId(i as u32));
        if allowed.is_empty() {
            continue;
        }
        scopes(ev, r, &allowed, diags);
        let touches_cde = model.zone(r.from).is_cde() || model.zone(r.to).is_cde();
        if touches_cde {
            if let Some(today) = today {
                review(ev, r, today, diags);
            }
            services(ev, r, diags);
        }
    }
}

/// P101, P102, P103, P105 and P106: what the scopes and kinds of a flow's
/// zones allow it to be.
fn scopes(ev: &Evaluator<'_>, r: &Rule, allowed: &ServiceSet, diags: &mut Vec<Diagnostic>) {
    let (from, to) = (ev.model.zone(r.from), ev.model.zone(r.to));
    let touches_cde = from.is_cde() || to.is_cde();
    let span = r.head;
    if from.scope == Scope::Untrusted && to.is_cde() {
        diags.push(
            Diagnostic::new(
                Code::P101,
                span,
                format!("untrusted zone `{}` is allowed directly into cde zone `{}` (PCI DSS 1.3.1, 1.4.2)", from.name, to.name),
            )
            .with_label(span, format!("allows {allowed}"))
            .with_help("terminate untrusted traffic in a DMZ or connected zone, and allow only that zone into the cde"),
        );
    }
    if from.is_cde() && to.scope == Scope::Untrusted {
        if allowed.is_any() || r.services.iter().any(|s| s.set.is_any()) {
            diags.push(
                Diagnostic::new(
                    Code::P102,
                    span,
                    format!("cde zone `{}` may send anything to untrusted zone `{}` (PCI DSS 1.3.2)", from.name, to.name),
                )
                .with_label(span, "allowed on `any`")
                .with_help("list only the services the cde needs outbound"),
            );
        } else if r.justification.is_none() {
            diags.push(
                Diagnostic::new(
                    Code::P102,
                    span,
                    format!(
                        "outbound flow from cde zone `{}` to untrusted zone `{}` has no justification (PCI DSS 1.3.2)",
                        from.name, to.name
                    ),
                )
                .with_label(span, "no `justification`")
                .with_help("add `justification = \"...\"` with the business reason"),
            );
        }
    } else if touches_cde && r.justification.is_none() {
        diags.push(
            Diagnostic::new(Code::P103, span, format!("flow {} touches the cde and has no justification (PCI DSS 1.2.5)", pair(ev, r)))
                .with_label(span, "no `justification`")
                .with_help("add `justification = \"...\"` with the business reason for the flow"),
        );
    }
    if from.kind == ZoneKind::Wireless && to.is_cde() {
        diags.push(
            Diagnostic::new(
                Code::P105,
                span,
                format!("wireless zone `{}` is allowed into cde zone `{}` (PCI DSS 1.3.3)", from.name, to.name),
            )
            .with_label(span, format!("allows {allowed}"))
            .with_help("route wireless traffic through a connected zone that inspects it, never straight into the cde"),
        );
    }
    let oos = [(from, to), (to, from)].into_iter().find(|(a, b)| a.scope == Scope::OutOfScope && b.is_cde());
    if let Some((o, c)) = oos {
        diags.push(
            Diagnostic::new(
                Code::P106,
                span,
                format!("zone `{}` is marked out_of_scope but has a flow with cde zone `{}` (PCI DSS 1.2.3)", o.name, c.name),
            )
            .with_label(span, "this flow connects it to the cde")
            .with_label(o.span, "declared out_of_scope here")
            .with_help("a zone that talks to the cde is connected: set `scope = connected`, or remove the flow"),
        );
    }
}

/// P104: a flow touching the cde reviewed within the review interval.
fn review(ev: &Evaluator<'_>, r: &Rule, today: Date, diags: &mut Vec<Diagnostic>) {
    let (span, interval) = (r.head, ev.model.policy.review_interval_days);
    match r.review(today, interval) {
        Review::Never => diags.push(
            Diagnostic::new(Code::P104, span, format!("flow {} touches the cde and has never been reviewed (PCI DSS 1.2.7)", pair(ev, r)))
                .with_label(span, "no `reviewed` date")
                .with_help(format!("review the flow and add `reviewed = {today}`")),
        ),
        Review::Overdue { date, age, due } => diags.push(
            Diagnostic::new(
                Code::P104,
                span,
                format!(
                    "flow {} was last reviewed on {date}, {age} days ago; the review interval is {interval} days (PCI DSS 1.2.7)",
                    pair(ev, r),
                ),
            )
            .with_label(span, format!("review overdue since {due}"))
            .with_help(format!("review the flow and set `reviewed = {today}`")),
        ),
        Review::Current { .. } | Review::Future { .. } => {}
    }
}

/// P107 and P108: services too broad or insecure for the cde.
fn services(ev: &Evaluator<'_>, r: &Rule, diags: &mut Vec<Diagnostic>) {
    for s in &r.services {
        let wide = s.set.is_any()
            || [&s.set.tcp, &s.set.udp].iter().any(|p| p.ranges().iter().any(|&(lo, hi)| u32::from(hi) - u32::from(lo) + 1 > 1024));
        if wide {
            diags.push(
                Diagnostic::new(
                    Code::P107,
                    s.span,
                    format!("service `{}` on flow {} is overly broad for the cde (PCI DSS 1.2.6, 1.3.1)", s.text, pair(ev, r)),
                )
                .with_label(s.span, if s.set.is_any() { "every protocol and port".to_string() } else { format!("{}", s.set) })
                .with_help("list the ports the application uses, at most 1024 per range"),
            );
        }
        if s.insecure {
            diags.push(
                Diagnostic::new(
                    Code::P108,
                    s.span,
                    format!("insecure service `{}` on flow {} touches the cde (PCI DSS 1.2.6)", s.text, pair(ev, r)),
                )
                .with_label(s.span, "marked `insecure = true`")
                .with_help("use an encrypted alternative, or document the security features that compensate"),
            );
        }
    }
}
