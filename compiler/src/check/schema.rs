//! The attributes each item accepts, their types, and which are required.

use crate::ir::feed::FeedFormat;
use crate::ir::{Scope, ZoneKind};

#[derive(Clone, Copy, Debug)]
pub enum Ty {
    Str,
    Bool,
    Date,
    Duration,
    /// A duration in seconds, minutes, hours, days or weeks (`30s`, `1h`).
    Interval,
    /// A positive whole number.
    Count,
    Enum(&'static [&'static str]),
    PrefixList,
}

impl Ty {
    pub fn describe(self) -> String {
        match self {
            Ty::Str => "a string".into(),
            Ty::Bool => "`true` or `false`".into(),
            Ty::Date => "a date such as `2026-10-01`".into(),
            Ty::Duration => "a duration such as `180d` or `26w`".into(),
            Ty::Interval => "a duration such as `15m`, `1h` or `1d`".into(),
            Ty::Count => "a whole number such as `500000`".into(),
            Ty::Enum(names) => {
                let q: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
                format!("one of {}", q.join(", "))
            }
            Ty::PrefixList => "a list of prefixes such as `[10.0.9.0/24, 2001:db8:9::/48]`".into(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct AttrSpec {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
    /// One line for hover and completion.
    pub doc: &'static str,
}

const fn opt(name: &'static str, ty: Ty, doc: &'static str) -> AttrSpec {
    AttrSpec { name, ty, required: false, doc }
}

const fn req(name: &'static str, ty: Ty, doc: &'static str) -> AttrSpec {
    AttrSpec { name, ty, required: true, doc }
}

pub const POLICY: &[AttrSpec] = &[
    opt("owner", Ty::Str, "who answers for the policy"),
    opt("review_interval", Ty::Duration, "how often flows touching cde must be reviewed (default 180d, PCI 1.2.7)"),
    opt("description", Ty::Str, "what the policy covers"),
];

pub const ZONE: &[AttrSpec] = &[
    req("cidrs", Ty::PrefixList, "the zone's IPv4 and IPv6 prefixes"),
    req("scope", Ty::Enum(Scope::NAMES), "PCI scope: cde, connected, out_of_scope or untrusted"),
    opt("kind", Ty::Enum(ZoneKind::NAMES), "wired (default), wireless, vpn or cloud"),
    opt("owner", Ty::Str, "the team that owns the zone"),
    opt("description", Ty::Str, "what lives in the zone"),
    opt("probe_hosts", Ty::PrefixList, "hosts inside the zone that segmentation probes target and send from"),
    opt("aws.security_group", Ty::Str, "the AWS security group that stands for this zone"),
    opt("azure.nsg", Ty::Str, "the Azure network security group that stands for this zone"),
    opt("gcp.tag", Ty::Str, "the GCP network tag that stands for this zone"),
    opt("k8s.namespace", Ty::Str, "the Kubernetes namespace that stands for this zone"),
    opt("k8s.selector", Ty::Str, "a Kubernetes label selector such as `app=vault`"),
    opt("windows.group", Ty::Str, "the Windows Firewall rule group (`segc:NAME`) of the hosts in this zone"),
];

pub const SERVICE: &[AttrSpec] = &[
    opt("insecure", Ty::Bool, "a clear-text or legacy protocol (P108 reports it near cde)"),
    opt("description", Ty::Str, "what the service is"),
];

pub const FLOW: &[AttrSpec] = &[
    opt("justification", Ty::Str, "the business reason for the flow (required when it touches cde, PCI 1.2.5)"),
    opt("owner", Ty::Str, "who answers for the flow"),
    opt("reviewed", Ty::Date, "when the flow was last reviewed (PCI 1.2.7)"),
    opt("description", Ty::Str, "what the flow carries"),
];

pub const DENY: &[AttrSpec] = &[
    opt("justification", Ty::Str, "why the traffic is denied"),
    opt("owner", Ty::Str, "who answers for the deny"),
    opt("description", Ty::Str, "what the deny guards against"),
];

pub const FEED: &[AttrSpec] = &[
    req("source", Ty::Str, "the feed: a file beside the policy, or an https:// URL"),
    opt("format", Ty::Enum(FeedFormat::NAMES), "netset (default), spamhaus, json or aws_ip_ranges"),
    opt("refresh", Ty::Interval, "how often the agent reads the feed again (default 1h)"),
    opt("max_prefixes", Ty::Count, "a feed with more prefixes is refused (default 1000000)"),
    opt("description", Ty::Str, "what the feed lists"),
];
