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
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Missing => "missing",
            FindingKind::Extra => "extra",
            FindingKind::Changed => "changed",
            FindingKind::NotAttached => "not attached",
        }
    }
}

/// One drift finding: its kind and the entry, as a person reads it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub entry: String,
}

impl Finding {
    pub fn new(kind: FindingKind, entry: impl Into<String>) -> Finding {
        Finding { kind, entry: entry.into() }
    }
}

/// Findings as JSON, for the output and the audit event alike:
/// `[{"kind": "missing"|"extra"|"changed"|"not attached", "entry": ...}]`.
pub fn findings_json(f: &[Finding]) -> serde_json::Value {
    f.iter().map(|f| serde_json::json!({"kind": f.kind.as_str(), "entry": f.entry})).collect()
}
