//! The one IR every analysis and every target works from: zones with their
//! prefixes, services as exact sets, flows and denies between zones, asserts and
//! tests. Ids are indices into sorted vectors, so the IR does not depend on the
//! order items were written in.

pub mod addr;
pub mod bindings;
pub mod date;
pub mod derived;
pub mod eval;
pub mod feed;
pub mod service;

use serde::Serialize;

pub use addr::{Family, Prefix};
pub use bindings::{Bindings, K8sBinding};
pub use date::Date;
pub use service::{Proto, RangeSet, ServiceSet};

use crate::diag::Span;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ZoneId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct RuleId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct FeedId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Cde,
    Connected,
    OutOfScope,
    Untrusted,
}

impl Scope {
    pub const NAMES: &'static [&'static str] = &["cde", "connected", "out_of_scope", "untrusted"];

    pub fn parse(s: &str) -> Option<Scope> {
        Some(match s {
            "cde" => Scope::Cde,
            "connected" => Scope::Connected,
            "out_of_scope" => Scope::OutOfScope,
            "untrusted" => Scope::Untrusted,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ZoneKind {
    Wired,
    Wireless,
    Vpn,
    Cloud,
}

impl ZoneKind {
    pub const NAMES: &'static [&'static str] = &["wired", "wireless", "vpn", "cloud"];

    pub fn parse(s: &str) -> Option<ZoneKind> {
        Some(match s {
            "wired" => ZoneKind::Wired,
            "wireless" => ZoneKind::Wireless,
            "vpn" => ZoneKind::Vpn,
            "cloud" => ZoneKind::Cloud,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// A prefix with where it was written.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ZonePrefix {
    pub prefix: Prefix,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub struct Zone {
    pub name: String,
    pub scope: Scope,
    pub kind: ZoneKind,
    pub prefixes: Vec<ZonePrefix>,
    pub owner: Option<String>,
    pub description: Option<String>,
    /// Hosts inside the zone that probes target and send from (`probe_hosts`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub probe_hosts: Vec<ZonePrefix>,
    /// How targets address the zone (`aws.security_group` ...).
    pub bindings: Bindings,
    /// The zone's name where it is defined.
    #[serde(skip)]
    pub span: Span,
    /// Whether it comes from the standard library.
    pub std: bool,
}

impl Zone {
    pub fn is_cde(&self) -> bool {
        self.scope == Scope::Cde
    }
}

/// One entry of a rule's service list, as written and as a set.
#[derive(Clone, Debug, Serialize)]
pub struct RuleService {
    /// The name or literal as written (`postgres`, `tcp/8443`, `any`).
    pub text: String,
    pub set: ServiceSet,
    /// Whether it names a service marked `insecure = true`.
    pub insecure: bool,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
}

/// A `flow` (allow) or a `deny` between two zones.
#[derive(Clone, Debug, Serialize)]
pub struct Rule {
    pub action: Action,
    pub from: ZoneId,
    pub to: ZoneId,
    pub services: Vec<RuleService>,
    /// The union of `services`.
    pub set: ServiceSet,
    pub justification: Option<String>,
    pub owner: Option<String>,
    pub reviewed: Option<Date>,
    pub description: Option<String>,
    /// The whole item.
    #[serde(skip)]
    pub span: Span,
    /// The item's first line, `flow a -> b on x, y`, for labels.
    #[serde(skip)]
    pub head: Span,
    /// The groups the item named where this rule's zones came from one.
    pub via: Via,
}

/// The groups an end of a rule came from (`flow stores -> gw`: `from` is
/// `stores` for each store's rule).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Via {
    pub from: Option<String>,
    pub to: Option<String>,
}

impl Via {
    /// ` (via group stores)`, or nothing when neither end came from a group.
    pub fn text(&self) -> String {
        match (&self.from, &self.to) {
            (None, None) => String::new(),
            (Some(a), None) | (None, Some(a)) => format!(" (via group {a})"),
            (Some(a), Some(b)) if a == b => format!(" (via group {a})"),
            (Some(a), Some(b)) => format!(" (via groups {a} and {b})"),
        }
    }
}

/// How long ago a rule was reviewed, against the policy's review interval:
/// the one review-age computation (P104, the report, editor hovers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Review {
    /// No `reviewed` date.
    Never,
    /// Reviewed `age` days ago; due again on `due`.
    Current { date: Date, age: i64, due: Date },
    /// Reviewed `age` days ago; the review was due on `due`.
    Overdue { date: Date, age: i64, due: Date },
    /// The date is after today: not a review (E206).
    Future { date: Date },
}

impl Review {
    pub fn of(reviewed: Option<Date>, today: Date, interval_days: u32) -> Review {
        let Some(date) = reviewed else { return Review::Never };
        let age = today.0 - date.0;
        let due = Date(date.0 + i64::from(interval_days));
        if age < 0 {
            Review::Future { date }
        } else if age > i64::from(interval_days) {
            Review::Overdue { date, age, due }
        } else {
            Review::Current { date, age, due }
        }
    }
}

impl Rule {
    /// ` (via group stores)` when the item named a group.
    pub fn via_text(&self) -> String {
        self.via.text()
    }

    pub fn review(&self, today: Date, interval_days: u32) -> Review {
        Review::of(self.reviewed, today, interval_days)
    }

    /// The service list as written, joined: `postgres, tcp/8443`.
    pub fn services_text(&self) -> String {
        let mut text = String::with_capacity(self.services.iter().map(|s| s.text.len() + 2).sum());
        for (i, s) in self.services.iter().enumerate() {
            if i > 0 {
                text.push_str(", ");
            }
            text.push_str(&s.text);
        }
        text
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PolicyMeta {
    pub name: Option<String>,
    pub owner: Option<String>,
    pub description: Option<String>,
    pub review_interval_days: u32,
    #[serde(skip)]
    pub span: Option<Span>,
}

impl Default for PolicyMeta {
    fn default() -> Self {
        PolicyMeta { name: None, owner: None, description: None, review_interval_days: 180, span: None }
    }
}

#[derive(Clone, Debug, Serialize)]
pub enum AssertKind {
    Unreachable,
    Denied { services: Vec<RuleService>, set: ServiceSet },
}

#[derive(Clone, Debug, Serialize)]
pub struct Assert {
    pub kind: AssertKind,
    pub from: ZoneId,
    pub to: ZoneId,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub enum Endpoint {
    Addr(std::net::IpAddr),
    Zone(ZoneId),
}

#[derive(Clone, Debug, Serialize)]
pub struct TestCase {
    pub expect: crate::syntax::ast::Expect,
    pub from: Endpoint,
    pub to: Endpoint,
    pub service: RuleService,
    /// The case as written, for reports.
    pub text: String,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub struct Test {
    pub name: String,
    pub cases: Vec<TestCase>,
    #[serde(skip)]
    pub span: Span,
}

/// `group stores = [a, b]`: a name for several zones.
#[derive(Clone, Debug, Serialize)]
pub struct Group {
    pub name: String,
    /// Its zones, nested groups flattened, sorted.
    pub zones: Vec<ZoneId>,
    #[serde(skip)]
    pub span: Span,
}

/// A checked policy. Zones are sorted by name; rules by (from, to, services).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Model {
    pub policy: PolicyMeta,
    pub zones: Vec<Zone>,
    pub flows: Vec<Rule>,
    pub denies: Vec<Rule>,
    pub asserts: Vec<Assert>,
    pub tests: Vec<Test>,
    /// Named services (not literals), sorted by name, for reports and W503.
    pub services: Vec<NamedService>,
    /// Groups, sorted by name.
    pub groups: Vec<Group>,
    /// Feeds, sorted by name.
    pub feeds: Vec<feed::Feed>,
    /// What the targets derive from the finished model, computed once.
    #[serde(skip)]
    pub(crate) derived: derived::Derived,
}

#[derive(Clone, Debug, Serialize)]
pub struct NamedService {
    pub name: String,
    pub set: ServiceSet,
    pub insecure: bool,
    pub description: Option<String>,
    pub std: bool,
    /// Whether a flow, deny, assert, test or other service names it.
    pub used: bool,
    #[serde(skip)]
    pub span: Span,
}

impl Model {
    pub fn zone(&self, id: ZoneId) -> &Zone {
        &self.zones[id.0 as usize]
    }

    pub fn zone_id(&self, name: &str) -> Option<ZoneId> {
        self.zones.binary_search_by(|z| z.name.as_str().cmp(name)).ok().map(|i| ZoneId(i as u32))
    }

    pub fn feed(&self, id: FeedId) -> &feed::Feed {
        &self.feeds[id.0 as usize]
    }

    /// Whether any feed is blocked.
    pub fn blocks_feeds(&self) -> bool {
        self.feeds.iter().any(|f| f.blocked)
    }

    pub fn rule(&self, action: Action, id: RuleId) -> &Rule {
        match action {
            Action::Allow => &self.flows[id.0 as usize],
            Action::Deny => &self.denies[id.0 as usize],
        }
    }

    /// `dmz -> card_vault`
    pub fn pair_text(&self, from: ZoneId, to: ZoneId) -> String {
        format!("{} -> {}", self.zone(from).name, self.zone(to).name)
    }
}
