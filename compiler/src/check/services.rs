//! Services: literals (`tcp/443`, E202/E204) and named services resolved to
//! exact sets, memoised, with services defined in terms of themselves (E207)
//! caught and nesting bounded.

use crate::hash::{HashMap, HashSet};

use super::attrs::check_block;
use super::schema;
use crate::diag::{did_you_mean, Code, Diagnostic, Span};
use crate::ir::{RangeSet, RuleService, ServiceSet};
use crate::resolve::{Def, DefId, DefKind, Scope as Names, Tree};
use crate::syntax::ast::{Item, ServiceRef};

/// Parses a service literal such as `tcp/443`, `udp/1000-2000` or `icmp/8`.
pub fn literal_set(text: &str, span: Span) -> Result<ServiceSet, Diagnostic> {
    // `tcp:443` was reported by the lexer; read it as `tcp/443` so it is reported once.
    let (proto, ports) = text.split_once(['/', ':']).unwrap_or((text, ""));
    let max: u64 = match proto {
        "tcp" | "udp" => 65_535,
        "icmp" => 255,
        other => {
            let mut d = Diagnostic::new(Code::E202, span, format!("unknown protocol `{other}`"))
                .with_label(span, "expected `tcp`, `udp` or `icmp`");
            if let Some(best) = did_you_mean(other, ["tcp", "udp", "icmp"]) {
                d = d.with_help(format!("did you mean `{best}/{ports}`?"));
            } else {
                d = d.with_help("for every protocol, write `any`");
            }
            return Err(d);
        }
    };
    let what = if proto == "icmp" { "ICMP type" } else { "port" };
    let num = |s: &str| -> u64 { s.parse::<u64>().unwrap_or(u64::MAX) };
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (num(a), num(b)),
        None => (num(ports), num(ports)),
    };
    for n in [lo, hi] {
        if n > max {
            let shown = if n == u64::MAX { "the number".to_string() } else { n.to_string() };
            return Err(
                Diagnostic::new(Code::E204, span, format!("{what} {shown} is out of range 0..={max}")).with_label(span, "out of range")
            );
        }
    }
    if lo > hi {
        return Err(Diagnostic::new(Code::E204, span, format!("{what} range `{lo}-{hi}` is reversed"))
            .with_label(span, "the first must not exceed the second")
            .with_help(format!("did you mean `{proto}/{hi}-{lo}`?")));
    }
    let set = RangeSet::range(lo as u16, hi as u16);
    let mut s = ServiceSet::default();
    match proto {
        "tcp" => s.tcp = set,
        "udp" => s.udp = set,
        _ => s.icmp = set,
    }
    Ok(s)
}

/// Resolves service references to sets, memoising named services and catching
/// services defined in terms of themselves. Resolution is iterative: a chain
/// of thousands of services (`service s2 = s1` ...) needs no deep stack.
pub struct Services<'t> {
    tree: &'t Tree,
    names: &'t Names,
    memo: HashMap<DefId, Option<(ServiceSet, bool)>>,
    /// Named services referenced anywhere, for W503 and the IR.
    pub used: HashSet<DefId>,
}

/// A named service being resolved: the refs still to read, what it has so far.
struct Frame<'t> {
    def: DefId,
    refs: &'t [ServiceRef],
    next: usize,
    set: ServiceSet,
    insecure: bool,
    ok: bool,
}

impl<'t> Services<'t> {
    pub fn new(tree: &'t Tree, names: &'t Names) -> Self {
        Services { tree, names, memo: HashMap::default(), used: HashSet::default() }
    }

    /// One entry of a service list: a literal, `icmp`, `any` or a name.
    pub fn reference(&mut self, r: &ServiceRef, diags: &mut Vec<Diagnostic>) -> Option<RuleService> {
        let (text, set, insecure) = match (r, plain(r)) {
            (_, Some(result)) => (crate::syntax::fmt::service(r), result.map_err(|d| diags.push(d)).ok()?, false),
            (ServiceRef::Name(path), None) => {
                let def = self.names.lookup(path, DefKind::Service, diags)?.clone();
                self.used.insert(def.id);
                let (set, insecure) = self.named(&def, diags)?;
                (path.dotted(), set, insecure)
            }
            (_, None) => return None,
        };
        Some(RuleService { text, set, insecure, span: r.span() })
    }

    /// A named service's set and whether it is insecure; `None` when it (or a
    /// service it names) has an error.
    pub fn named(&mut self, def: &Def, diags: &mut Vec<Diagnostic>) -> Option<(ServiceSet, bool)> {
        if let Some(done) = self.memo.get(&def.id) {
            return done.clone();
        }
        let mut stack: Vec<Frame<'t>> = Vec::new();
        self.push(&mut stack, def.id, diags)?;
        loop {
            let top = stack.last_mut()?;
            let Some(r) = top.refs.get(top.next) else {
                let done = stack.pop()?;
                let result = done.ok.then_some((done.set, done.insecure));
                self.memo.insert(done.def, result.clone());
                match stack.last_mut() {
                    Some(parent) => merge(parent, result.as_ref()),
                    None => return result,
                }
                continue;
            };
            top.next += 1;
            if let Some(result) = plain(r) {
                let result = result.map_err(|d| diags.push(d)).ok().map(|s| (s, false));
                merge(top, result.as_ref());
                continue;
            }
            let ServiceRef::Name(path) = r else { continue };
            let Some(child) = self.names.lookup(path, DefKind::Service, diags).cloned() else {
                top.ok = false;
                continue;
            };
            self.used.insert(child.id);
            if let Some(done) = self.memo.get(&child.id).cloned() {
                merge(top, done.as_ref());
            } else if let Some(pos) = stack.iter().position(|f| f.def == child.id) {
                diags.push(self.cycle(&child, &stack[pos + 1..]));
                self.memo.insert(child.id, None);
                if let Some(top) = stack.last_mut() {
                    top.ok = false;
                }
            } else if self.push(&mut stack, child.id, diags).is_none() {
                if let Some(top) = stack.last_mut() {
                    top.ok = false;
                }
            }
        }
    }

    /// Starts resolving `id`: checks its attributes and pushes its frame.
    fn push(&mut self, stack: &mut Vec<Frame<'t>>, id: DefId, diags: &mut Vec<Diagnostic>) -> Option<()> {
        let Item::Service(item) = self.tree.item(id) else { return None };
        let attrs = check_block(item.body.as_ref(), schema::SERVICE, "a service", item.name.span, diags);
        let insecure = attrs.bool("insecure").unwrap_or(false);
        stack.push(Frame { def: id, refs: &item.services, next: 0, set: ServiceSet::default(), insecure, ok: true });
        Some(())
    }

    /// E207 for `def`, defined through the services on `path`.
    fn cycle(&self, def: &Def, path: &[Frame<'_>]) -> Diagnostic {
        let mut d = Diagnostic::new(Code::E207, def.span, format!("service `{}` is defined in terms of itself", def.name))
            .with_label(def.span, "defined here");
        for f in path {
            if let Item::Service(s) = self.tree.item(f.def) {
                d = d.with_label(s.name.span, format!("through `{}`", s.name.name));
            }
        }
        d.with_help("a service must end in literals such as `tcp/443`: break the cycle")
    }
}

/// Adds a resolved reference to the service being built.
fn merge(frame: &mut Frame<'_>, part: Option<&(ServiceSet, bool)>) {
    match part {
        Some((set, insecure)) => {
            frame.set = frame.set.union(set);
            frame.insecure |= insecure;
        }
        None => frame.ok = false,
    }
}

/// The set of a reference that is not a name (a literal, `icmp` or `any`);
/// `None` for a name.
fn plain(r: &ServiceRef) -> Option<Result<ServiceSet, Diagnostic>> {
    match r {
        ServiceRef::Literal { text, span } => Some(literal_set(text, *span)),
        ServiceRef::Icmp(_) => Some(Ok(ServiceSet { icmp: RangeSet::range(0, 255), ..ServiceSet::default() })),
        ServiceRef::Any(_) => Some(Ok(ServiceSet::any())),
        ServiceRef::Name(_) => None,
    }
}
