//! Lowering: one module per target over the IR. Every target is deterministic
//! (same policy, same bytes, whatever the item order) and exact: where a
//! platform cannot express the policy, lowering fails with a target diagnostic
//! instead of widening access.

pub mod atoms;
pub mod aws;
pub mod azure;
pub mod bpf;
pub mod cloud;
pub mod feeds;
pub mod gcp;
pub mod k8s;
pub mod nft;
pub mod windows;

use std::collections::BTreeSet;

use crate::diag::Diagnostic;
use crate::ir::Model;

/// A target segc can build for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Bpf,
    Nft,
    Aws,
    Azure,
    K8s,
    Gcp,
    Windows,
}

impl Target {
    pub const ALL: &'static [Target] = &[Target::Bpf, Target::Nft, Target::Aws, Target::Azure, Target::K8s, Target::Gcp, Target::Windows];

    pub fn name(self) -> &'static str {
        match self {
            Target::Bpf => "bpf",
            Target::Nft => "nft",
            Target::Aws => "aws",
            Target::Azure => "azure",
            Target::K8s => "k8s",
            Target::Gcp => "gcp",
            Target::Windows => "windows",
        }
    }

    pub fn parse(s: &str) -> Option<Target> {
        Target::ALL.iter().copied().find(|t| t.name() == s)
    }

    /// The binding prefix zones use for this target (`aws.` ...), if any.
    fn binding(self) -> Option<&'static str> {
        match self {
            Target::Bpf | Target::Nft => None,
            Target::Aws => Some("aws."),
            Target::Azure => Some("azure."),
            Target::K8s => Some("k8s."),
            Target::Gcp => Some("gcp."),
            Target::Windows => Some("windows."),
        }
    }
}

/// The targets built when none are named: bpf and nft always, and each cloud or
/// cluster target that some zone binds.
pub fn default_targets(model: &Model) -> BTreeSet<Target> {
    Target::ALL
        .iter()
        .copied()
        .filter(|t| match t.binding() {
            None => true,
            Some(prefix) => model.zones.iter().any(|z| z.bindings.binds(prefix)),
        })
        .collect()
}

/// What a build says besides errors: T003 for each chosen target that
/// cannot enforce a feed block (security groups and NetworkPolicy can only
/// allow), so the gap is written down, never silent.
pub fn warnings(model: &Model, targets: &BTreeSet<Target>) -> Vec<Diagnostic> {
    let Some(feed) = model.feeds.iter().find(|f| f.blocked) else { return Vec::new() };
    let span = feed.block_span.unwrap_or(feed.span);
    let names = feeds::blocked_names(model).join(", ");
    targets
        .iter()
        .filter_map(|t| match t {
            Target::Aws => Some("AWS security groups"),
            Target::K8s => Some("Kubernetes NetworkPolicy"),
            _ => None,
        })
        .map(|what| {
            crate::diag::Diagnostic::new(
                crate::diag::Code::T003,
                span,
                format!("{what} cannot block feeds ({names}): they only allow, so the block holds only where other targets enforce it"),
            )
            .with_label(span, "blocked here")
            .with_help("enforce the block on the hosts (bpf, nft) or at an Azure NSG or GCP firewall in front of them")
        })
        .collect()
}

/// A feed's snapshot as built: one prefix a line, sorted.
pub fn feed_snapshot(feed: &crate::ir::feed::Feed) -> Vec<u8> {
    let mut s = format!("# segc snapshot of feed {} ({}, {}), sha256 {}\n", feed.name, feed.location, feed.format.as_str(), feed.sha256);
    for e in &feed.entries {
        s.push_str(&e.prefix.to_string());
        s.push('\n');
    }
    s.into_bytes()
}

/// One output file, relative to the output folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    pub path: String,
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`, lower-case hex (for the manifest), computed on
    /// the thread that made them.
    pub sha256: String,
}

/// Pretty JSON and a final newline. The buffer starts at `items` times a
/// generous size of one (untouched capacity costs nothing): a large policy's
/// documents run to tens of megabytes, which regrowing copies again and again.
pub(crate) fn pretty_json<T: serde::Serialize + ?Sized>(v: &T, items: usize) -> Vec<u8> {
    let mut ser = serde_json::Serializer::pretty(Vec::with_capacity(65536 + items * 1024));
    if v.serialize(&mut ser).is_err() {
        return Vec::new();
    }
    let mut out = ser.into_inner();
    out.push(b'\n');
    out
}

impl Artifact {
    pub fn new(path: impl Into<String>, bytes: Vec<u8>) -> Self {
        let sha256 = crate::sha256::hex(&bytes);
        Artifact { path: path.into(), bytes, sha256 }
    }
}

/// Lowers a checked model (no errors) for the given targets. All or nothing:
/// any target diagnostic means no artifact at all.
pub fn lower(model: &Model, targets: &BTreeSet<Target>) -> Result<Vec<Artifact>, Vec<Diagnostic>> {
    // The targets are independent: each lowers on a thread of its own; the
    // results are taken in target order, so the output is the same bytes.
    let results: Vec<Result<Vec<Artifact>, Vec<Diagnostic>>> = std::thread::scope(|s| {
        let handles: Vec<_> = targets.iter().map(|&t| s.spawn(move || lower_one(model, t))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    let mut out = Vec::new();
    let mut diags = Vec::new();
    for r in results {
        match r {
            Ok(a) => out.extend(a),
            Err(d) => diags.extend(d),
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// One target's artifacts, or what stops it.
fn lower_one(model: &Model, t: Target) -> Result<Vec<Artifact>, Vec<Diagnostic>> {
    let one = |path: &str, bytes: Vec<u8>| vec![Artifact::new(path, bytes)];
    match t {
        Target::Nft => Ok(one("nft/ruleset.nft", nft::render(model).into_bytes())),
        Target::Bpf => {
            let tables = bpf::tables(model);
            let over = bpf::check_capacity(model, &tables);
            if !over.is_empty() {
                return Err(over);
            }
            let json = pretty_json(&tables, tables.rules.len());
            Ok(vec![Artifact::new("bpf/policy.bundle", bpf::bundle(&tables)), Artifact::new("bpf/policy.json", json)])
        }
        Target::Aws => aws::lower(model).map(|o| one("aws/security-groups.json", aws::render(&o))),
        Target::K8s => k8s::lower(model).map(|p| one("k8s/networkpolicies.yaml", k8s::render(&p))),
        Target::Gcp => gcp::lower(model).map(|o| one("gcp/firewall.json", gcp::render(&o))),
        Target::Azure => azure::lower(model).map(|n| one("azure/nsg.json", azure::render(model, &n))),
        Target::Windows => windows::lower(model).map(|scripts| {
            scripts.iter().map(|s| Artifact::new(format!("windows/{}.ps1", s.group), windows::render(model, s).into_bytes())).collect()
        }),
    }
}
