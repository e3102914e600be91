//! GCP firewall rules as the API holds them, in a form that can be compared
//! (what decides what a rule matches and does), what a reviewer reads of
//! them, and the order of an apply (see the parent module).

use std::collections::{BTreeMap, BTreeSet};

use google_cloud_compute_v1::model::firewall::{Allowed, Denied, Direction};
use google_cloud_compute_v1::model::Firewall;
use segc_compiler::lower::gcp::{Allowed as LAllowed, Rule};

use crate::journal::RuleDetail;

/// Everything that decides what a rule matches or does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    pub ingress: bool,
    pub priority: i32,
    pub deny: bool,
    pub disabled: bool,
    pub target_tags: BTreeSet<String>,
    pub source_tags: BTreeSet<String>,
    pub source_ranges: BTreeSet<String>,
    pub destination_ranges: BTreeSet<String>,
    /// (protocol, ports), sorted.
    pub protocols: BTreeSet<(String, BTreeSet<String>)>,
    /// Service accounts on either side: segc never writes them, so one found
    /// live is a difference.
    pub accounts: BTreeSet<String>,
}

fn set(v: &[String]) -> BTreeSet<String> {
    v.iter().cloned().collect()
}

pub fn shape(f: &Firewall) -> Shape {
    let allowed = f.allowed.iter().map(|a| (a.ip_protocol.clone().unwrap_or_default().to_lowercase(), set(&a.ports)));
    let denied = f.denied.iter().map(|a| (a.ip_protocol.clone().unwrap_or_default().to_lowercase(), set(&a.ports)));
    let ingress = !matches!(f.direction, Some(Direction::Egress));
    let mut source_ranges = set(&f.source_ranges);
    let mut destination_ranges = set(&f.destination_ranges);
    // GCP fills in the defaults: an ingress rule with no source is from
    // 0.0.0.0/0, an egress rule with no destination to 0.0.0.0/0.
    if ingress && source_ranges.is_empty() && f.source_tags.is_empty() && f.source_service_accounts.is_empty() {
        source_ranges.insert("0.0.0.0/0".into());
    }
    if !ingress && destination_ranges.is_empty() {
        destination_ranges.insert("0.0.0.0/0".into());
    }
    Shape {
        ingress,
        priority: f.priority.unwrap_or(1000),
        deny: !f.denied.is_empty(),
        disabled: f.disabled.unwrap_or(false),
        target_tags: set(&f.target_tags),
        source_tags: set(&f.source_tags),
        source_ranges,
        destination_ranges,
        protocols: allowed.chain(denied).collect(),
        accounts: f.source_service_accounts.iter().chain(&f.target_service_accounts).cloned().collect(),
    }
}

/// The marker in a description that says which policy a rule belongs to.
pub fn marker(policy: &str) -> String {
    format!("[segc policy {policy}]")
}

/// Whether a live rule is segc's for this policy: its name and its description.
pub fn ours(f: &Firewall, policy: &str) -> bool {
    f.name.as_deref().is_some_and(|n| n.starts_with("segc-")) && f.description.as_deref().is_some_and(|d| d.ends_with(&marker(policy)))
}

/// The API's form of a compiled rule, on `network`, marked as `policy`'s.
pub fn firewall(r: &Rule, network: &str, policy: &str) -> Firewall {
    let list = |v: &[LAllowed]| -> Vec<(String, Vec<String>)> { v.iter().map(|a| (a.ip_protocol.clone(), a.ports.clone())).collect() };
    let mut f = Firewall::default();
    f.name = Some(r.name.clone());
    f.network = Some(network.to_string());
    f.direction = Some(if r.direction == "EGRESS" { Direction::Egress } else { Direction::Ingress });
    f.priority = Some(r.priority as i32);
    f.target_tags = r.target_tags.clone();
    f.source_tags = r.source_tags.clone();
    f.source_ranges = r.source_ranges.clone();
    f.destination_ranges = r.destination_ranges.clone();
    for (p, ports) in list(&r.allowed) {
        let mut a = Allowed::default();
        a.ip_protocol = Some(p);
        a.ports = ports;
        f.allowed.push(a);
    }
    for (p, ports) in list(&r.denied) {
        let mut d = Denied::default();
        d.ip_protocol = Some(p);
        d.ports = ports;
        f.denied.push(d);
    }
    f.description = Some(format!("{} {}", r.description, marker(policy)));
    f
}

/// A rule as a reviewer reads it.
pub fn detail(f: &Firewall) -> RuleDetail {
    let s = shape(f);
    let protocol = s.protocols.iter().map(|(p, _)| if p == "all" { "all".to_string() } else { p.clone() }).collect::<Vec<_>>().join(",");
    let ports: Vec<String> = s.protocols.iter().flat_map(|(_, ports)| ports.iter().cloned()).collect();
    let peers: Vec<String> = if s.ingress {
        s.source_ranges.iter().cloned().chain(s.source_tags.iter().map(|t| format!("tag:{t}"))).collect()
    } else {
        s.destination_ranges.iter().cloned().collect()
    };
    RuleDetail {
        resource: format!("network {}", f.network.as_deref().and_then(|n| n.rsplit('/').next()).unwrap_or("default")),
        zone: None,
        direction: if s.ingress { "inbound" } else { "outbound" }.into(),
        access: if s.deny { "deny" } else { "allow" }.into(),
        protocol,
        ports: if ports.is_empty() { "all".into() } else { ports.join(",") },
        peers,
        local: s.target_tags.iter().map(|t| format!("tag:{t}")).chain(s.accounts.iter().map(|a| format!("sa:{a}"))).collect(),
        priority: Some(s.priority.max(0) as u32),
        name: f.name.clone(),
    }
}

#[derive(Clone, Debug)]
pub enum Change {
    Insert(Box<Firewall>),
    /// Replaced whole (PUT): never a merge that could keep an old field.
    Update(Box<Firewall>),
    Delete(Box<Firewall>),
}

impl Change {
    pub fn firewall(&self) -> &Firewall {
        match self {
            Change::Insert(f) | Change::Update(f) | Change::Delete(f) => f,
        }
    }

    /// The step of `order` this change belongs to: new denies, new
    /// allows, updates, removed allows, removed denies. Changes of one step
    /// may run together; a step starts when the one before it is done.
    pub fn step(&self) -> u8 {
        let deny = !self.firewall().denied.is_empty();
        match self {
            Change::Insert(_) => u8::from(!deny),
            Change::Update(_) => 2,
            Change::Delete(_) => 3 + u8::from(deny),
        }
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Insert(r) => write!(f, "add {}", detail(r)),
            Change::Update(r) => write!(f, "update {}", detail(r)),
            Change::Delete(r) => write!(f, "delete {}", detail(r)),
        }
    }
}

/// The changes that turn `live` (this policy's rules) into `want`, in an
/// order that is never more open than old and new together:
/// - new deny rules first, then new allows, then updates (each replaces one
///   rule whole, from its old form to its new one);
/// - removals last, allows before denies, so a tag keeps its deny-all
///   egress until nothing it allowed is left;
/// - unless old and new together would not fit the project's quota of
///   `room` more rules: then the removals (which only close) go first.
pub fn order(live: &BTreeMap<String, Firewall>, want: &BTreeMap<String, Firewall>, room: usize) -> Vec<Change> {
    let deny = |f: &Firewall| !f.denied.is_empty();
    let mut inserts: Vec<&Firewall> = want.iter().filter(|(n, _)| !live.contains_key(*n)).map(|(_, f)| f).collect();
    inserts.sort_by_key(|f| !deny(f));
    let updates: Vec<&Firewall> = want.iter().filter(|(n, f)| live.get(*n).is_some_and(|l| shape(l) != shape(f))).map(|(_, f)| f).collect();
    let mut deletes: Vec<&Firewall> = live.iter().filter(|(n, _)| !want.contains_key(*n)).map(|(_, f)| f).collect();
    deletes.sort_by_key(|f| deny(f));
    let ins = inserts.into_iter().map(|f| Change::Insert(Box::new(f.clone())));
    let upd = updates.into_iter().map(|f| Change::Update(Box::new(f.clone())));
    let del: Vec<Change> = deletes.into_iter().map(|f| Change::Delete(Box::new(f.clone()))).collect();
    let adds = want.keys().filter(|n| !live.contains_key(*n)).count();
    if adds > room {
        del.into_iter().chain(ins).chain(upd).collect()
    } else {
        ins.chain(upd).chain(del).collect()
    }
}
