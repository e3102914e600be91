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
mod json;
pub mod k8s;
pub mod nft;
pub mod windows;

use std::collections::BTreeSet;
use std::io::{self, Write};

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

    /// How much work lowering for this target is, relative to the others,
    /// on a large policy (docs/BENCHMARKS.md): the costliest start first.
    fn cost(self) -> u32 {
        match self {
            Target::Gcp => 7,
            Target::Azure => 6,
            Target::Aws => 4,
            Target::Nft | Target::Windows => 3,
            Target::K8s => 2,
            Target::Bpf => 1,
        }
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

impl Artifact {
    pub fn new(path: impl Into<String>, bytes: Vec<u8>) -> Self {
        let sha256 = crate::sha256::hex(&bytes);
        Artifact { path: path.into(), bytes, sha256 }
    }
}

/// Where lowering puts each output file: into memory ([`lower`]), or
/// straight into files as `segc build` does ([`lower_into`]), so tens of
/// megabytes of artifacts are never held, copied and hashed in a second pass.
pub trait Sink: Sync {
    /// What the sink keeps of one file it was given.
    type Put: Send;
    /// One file at `path` (relative to the output folder): `body` writes its
    /// bytes into the writer it is handed.
    fn put(&self, path: &str, body: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>) -> io::Result<Self::Put>;
}

/// The in-memory sink: each file an [`Artifact`].
struct InMemory;

impl Sink for InMemory {
    type Put = Artifact;

    fn put(&self, path: &str, body: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>) -> io::Result<Artifact> {
        let mut bytes = Vec::new();
        body(&mut bytes)?;
        Ok(Artifact::new(path, bytes))
    }
}

/// Why [`lower_into`] made nothing.
#[derive(Debug)]
pub enum Failed {
    /// Some target cannot express the policy exactly.
    Diagnostics(Vec<Diagnostic>),
    /// The sink could not take a file.
    Io { path: String, error: io::Error },
}

/// Pretty JSON and a final newline, through a buffer (the serialiser makes
/// many small writes; the sink sees large ones).
pub(crate) fn write_json<T: serde::Serialize + ?Sized>(v: &T, w: &mut dyn Write) -> io::Result<()> {
    let mut w = io::BufWriter::with_capacity(1 << 16, w);
    serde_json::to_writer_pretty(&mut w, v)?;
    w.write_all(b"\n")?;
    w.flush()
}

/// Lowers a checked model (no errors) for the given targets. All or nothing:
/// any target diagnostic means no artifact at all.
pub fn lower(model: &Model, targets: &BTreeSet<Target>) -> Result<Vec<Artifact>, Vec<Diagnostic>> {
    match lower_into(model, targets, &InMemory) {
        Ok(mut out) => {
            out.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(out)
        }
        Err(Failed::Diagnostics(d)) => Err(d),
        // A `Vec` takes every write, and the serialisers fail only on IO.
        Err(Failed::Io { path, error }) => unreachable!("writing `{path}` into memory failed: {error}"),
    }
}

/// Lowers for the given targets into `sink`, in target order. The targets
/// are independent: one worker per core takes them, the costliest first (a
/// thread per target would time-slice six working sets on two cores). Any
/// target diagnostic or sink error means nothing is returned: what the sink
/// was given is dropped (a sink of files removes them then).
pub fn lower_into<S: Sink>(model: &Model, targets: &BTreeSet<Target>, sink: &S) -> Result<Vec<S::Put>, Failed> {
    let mut queue: Vec<Target> = targets.iter().copied().collect();
    queue.sort_by_key(|t| std::cmp::Reverse(t.cost()));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(queue.len()).max(1);
    type Lowered<P> = (Target, Result<Vec<P>, Failed>);
    let mut done: Vec<Lowered<S::Put>> = std::thread::scope(|s| {
        let work = || {
            let mut mine = Vec::new();
            while let Some(&t) = queue.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
                mine.push((t, lower_one(model, t, sink)));
            }
            mine
        };
        let handles: Vec<_> = (0..workers).map(|_| s.spawn(work)).collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    done.sort_by_key(|(t, _)| *t);
    let results = done.into_iter().map(|(_, r)| r);
    let mut out = Vec::new();
    let mut diags = Vec::new();
    for r in results {
        match r {
            Ok(a) => out.extend(a),
            Err(Failed::Diagnostics(d)) => diags.extend(d),
            Err(io @ Failed::Io { .. }) => return Err(io),
        }
    }
    if !diags.is_empty() {
        return Err(Failed::Diagnostics(diags));
    }
    Ok(out)
}

/// One target's files, or what stops it.
fn lower_one<S: Sink>(model: &Model, t: Target, sink: &S) -> Result<Vec<S::Put>, Failed> {
    let put = |path: &str, body: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>| {
        sink.put(path, body).map_err(|error| Failed::Io { path: path.to_string(), error })
    };
    let bytes = |path: &str, bytes: &[u8]| put(path, &mut |w| w.write_all(bytes));
    match t {
        Target::Nft => Ok(vec![bytes("nft/ruleset.nft", nft::render(model).as_bytes())?]),
        Target::Bpf => {
            let tables = bpf::tables(model);
            let over = bpf::check_capacity(model, &tables);
            if !over.is_empty() {
                return Err(Failed::Diagnostics(over));
            }
            Ok(vec![bytes("bpf/policy.bundle", &bpf::bundle(&tables))?, put("bpf/policy.json", &mut |w| write_json(&tables, w))?])
        }
        Target::Aws => {
            let o = aws::lower(model).map_err(Failed::Diagnostics)?;
            Ok(vec![put("aws/security-groups.json", &mut |w| aws::write(&o, w))?])
        }
        Target::K8s => {
            let p = k8s::lower(model).map_err(Failed::Diagnostics)?;
            Ok(vec![bytes("k8s/networkpolicies.yaml", &k8s::render(&p))?])
        }
        Target::Gcp => {
            let o = gcp::lower(model).map_err(Failed::Diagnostics)?;
            Ok(vec![put("gcp/firewall.json", &mut |w| gcp::write(&o, w))?])
        }
        Target::Azure => {
            let n = azure::lower(model).map_err(Failed::Diagnostics)?;
            Ok(vec![put("azure/nsg.json", &mut |w| azure::write(model, &n, w))?])
        }
        Target::Windows => {
            let scripts = windows::lower(model).map_err(Failed::Diagnostics)?;
            scripts.iter().map(|s| bytes(&format!("windows/{}.ps1", s.group), windows::render(model, s).as_bytes())).collect()
        }
    }
}
