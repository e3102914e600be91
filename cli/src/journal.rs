//! The one way a command records what it did in the audit log, and the drift
//! findings those records carry.

use anyhow::Result;
use segc_audit::Kind;
use serde::Serialize;

/// Appends an audit event. When the log cannot be written, a change to
/// enforcement (`required`) fails loudly; anything else only warns.
pub fn record(kind: Kind, data: serde_json::Value, required: bool) -> Result<()> {
    let dir = segc_audit::default_dir();
    let result = segc_audit::Log::open(&dir).and_then(|log| log.append(kind, data));
    match result {
        Ok(_) => Ok(()),
        // A key that is refused (readable by others, owned by someone else,
        // inside the log folder) is a configuration error, whatever is recorded.
        Err(e @ segc_audit::Error::Key(_)) => Err(anyhow::anyhow!("{e}")),
        Err(e) if required => Err(anyhow::anyhow!("the change was applied but could not be recorded in the audit log: {e}")),
        Err(e) => {
            eprintln!("warning: not recorded in the audit log ({}): {e}", dir.display());
            Ok(())
        }
    }
}

/// Fails unless an event can be recorded now: called before a change to
/// enforcement is applied, so that a change whose record would fail is not
/// made (nothing applied and then left unrecorded).
pub fn ensure_writable() -> Result<()> {
    let dir = segc_audit::default_dir();
    let log =
        segc_audit::Log::open(&dir).map_err(|e| anyhow::anyhow!("the audit log cannot record this change, so nothing was changed: {e}"))?;
    if log.is_legacy() {
        anyhow::bail!(
            "the audit log in {} is of the first format: check it with `segc audit verify`, then run `segc audit migrate` once; nothing was changed",
            dir.display()
        );
    }
    Ok(())
}

/// How live state differs from the compiled policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingKind {
    /// Compiled, not live: something the policy allows is blocked.
    Missing,
    /// Live, not compiled: something the policy does not allow is open.
    Extra,
    /// Live under segc's name, but not as compiled.
    Changed,
    /// A segc interface whose filter is not attached in the kernel.
    NotAttached,
    /// A group or NSG segc manages whose zone has left the policy.
    Orphan,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Missing => "missing",
            FindingKind::Extra => "extra",
            FindingKind::Changed => "changed",
            FindingKind::NotAttached => "not attached",
            FindingKind::Orphan => "orphan",
        }
    }
}

/// One drift finding: its kind and the entry, as a person reads it, and for
/// a cloud rule what it lets through.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub entry: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<RuleDetail>,
}

/// A cloud rule as a reviewer needs it: where it is and what it lets through.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct RuleDetail {
    /// The security group or NSG.
    pub resource: String,
    /// Its zone, where segc knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// `allow` or `deny`.
    pub access: String,
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `all`, or an IP protocol number.
    pub protocol: String,
    /// `443`, `1000-2000`, `80,443`, `all`; for ICMP `type 8` or `all`.
    pub ports: String,
    /// Sources (inbound) or destinations (outbound): CIDRs, `sg-…`, `pl-…`,
    /// service tags, application security groups.
    pub peers: Vec<String>,
    /// Azure: the source side of an outbound rule, the destination side of an
    /// inbound one (the NSG's own members, usually `*`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub local: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// The rule's name (Azure) or stored description (AWS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl std::fmt::Display for RuleDetail {
    /// `inbound on web (zone web): allow tcp/22 from 0.0.0.0/0, priority 100 (rogue)`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}", self.direction, self.resource)?;
        if let Some(z) = &self.zone {
            write!(f, " (zone {z})")?;
        }
        let service = match (self.protocol.as_str(), self.ports.as_str()) {
            ("all", _) => "all traffic".to_string(),
            (p, "all") => format!("{p} (all ports)"),
            (p, ports) if ports.starts_with("type") => format!("{p} {ports}"),
            (p, ports) => format!("{p}/{ports}"),
        };
        let way = if self.direction == "outbound" { "to" } else { "from" };
        let peers = if self.peers.is_empty() { "-".to_string() } else { self.peers.join(", ") };
        write!(f, ": {} {service} {way} {peers}", self.access)?;
        if !self.local.is_empty() && self.local != ["*"] {
            write!(f, " ({} {})", if way == "to" { "from" } else { "to" }, self.local.join(", "))?;
        }
        if let Some(p) = self.priority {
            write!(f, ", priority {p}")?;
        }
        if let Some(n) = &self.name {
            if !n.is_empty() {
                write!(f, " ({n})")?;
            }
        }
        Ok(())
    }
}

impl Finding {
    pub fn new(kind: FindingKind, entry: impl Into<String>) -> Finding {
        Finding { kind, entry: entry.into(), rule: None }
    }

    /// A finding about one rule: the entry is the rule as a person reads it,
    /// with `note` after it.
    pub fn rule(kind: FindingKind, rule: RuleDetail, note: &str) -> Finding {
        let entry = if note.is_empty() { rule.to_string() } else { format!("{rule} [{note}]") };
        Finding { kind, entry, rule: Some(rule) }
    }
}

/// Findings as JSON, for the output and the audit event alike:
/// `[{"kind": "missing"|"extra"|"changed"|"not attached"|"orphan", "entry": ...,
/// "rule": {...}}]` (`rule` for cloud rules: see [`RuleDetail`]).
pub fn findings_json(f: &[Finding]) -> serde_json::Value {
    f.iter()
        .map(|f| {
            let mut v = serde_json::json!({"kind": f.kind.as_str(), "entry": f.entry});
            if let Some(r) = &f.rule {
                v["rule"] = serde_json::to_value(r).unwrap_or_default();
            }
            v
        })
        .collect()
}
