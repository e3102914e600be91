//! The segc compiler: pure functions from policy text to diagnostics, a checked
//! policy model and the reference evaluator. No IO, no terminals, no syscalls:
//! the CLI, the LSP and the loader wrap it.
//!
//! ```text
//! text ──lex/parse──▶ AST ──resolve──▶ names ──check──▶ IR ──▶ evaluator
//!                                                        │        │
//!                                                        │        ├─▶ asserts, tests
//!                                                        │        └─▶ PCI checks, hygiene
//!                                                        └─▶ lower (targets)
//! ```

pub mod analysis;
pub mod check;
pub mod diag;
pub mod graph;
mod hash;
pub mod ir;
pub mod lower;
pub mod resolve;
pub mod sha256;
pub mod source;
pub mod syntax;

use diag::{Diagnostic, Severity};
use ir::{Date, Model};
use source::{Loader, SourceMap};

pub use resolve::RootError;

/// Options that change what `check` reports.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The day P104 measures review age against; `None` skips P104.
    pub today: Option<Date>,
}

/// Everything one run of the front end produced.
pub struct Compilation {
    pub tree: resolve::Tree,
    /// The names visible in the tree, for editors (definitions, references).
    pub names: resolve::Scope,
    /// The checked policy. It is complete only when [`Compilation::has_errors`] is false.
    pub model: Model,
    /// Sorted deterministically.
    pub diagnostics: Vec<Diagnostic>,
}

impl Compilation {
    pub fn sources(&self) -> &SourceMap {
        &self.tree.sources
    }

    /// The set of a service name as this policy sees it, else as the standard
    /// library defines it (`ssh`).
    pub fn service_set(&self, name: &str) -> Option<ir::ServiceSet> {
        check::service_set(&self.tree, &self.names, name)
    }

    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.severity == Severity::Error)
    }

    /// Whether the IR is complete: no front-end error. Analysis findings (failed
    /// asserts and tests, PCI errors) leave the model usable for `diff`, `test`
    /// and `explain`, never for `build` or `deploy`.
    pub fn model_complete(&self) -> bool {
        !self.diagnostics.iter().any(|d| d.is_error() && d.code.is_front_end())
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == severity).count()
    }
}

/// Parses, resolves and checks the policy tree rooted at `root` (a path relative
/// to the loader's root folder), then runs the analyses, asserts and tests.
pub fn compile(root: &str, loader: &dyn Loader, opts: &Options) -> Result<Compilation, RootError> {
    let (tree, names, model, mut diags) = front_end(root, loader, opts)?;
    if front_end_clean(&diags) {
        analyse(&tree, &model, opts, &mut diags);
    }
    Ok(finish(tree, names, model, diags))
}

/// [`compile`], running `alongside` on the finished model on a thread of its
/// own while the analyses run, when the front end found no error (`None`
/// otherwise). `segc build` lowers there: what it made is used only when the
/// compilation has no error at all, and dropped otherwise.
pub fn compile_alongside<T: Send>(
    root: &str,
    loader: &dyn Loader,
    opts: &Options,
    alongside: impl FnOnce(&Model) -> T + Send,
) -> Result<(Compilation, Option<T>), RootError> {
    let (tree, names, model, mut diags) = front_end(root, loader, opts)?;
    if !front_end_clean(&diags) {
        return Ok((finish(tree, names, model, diags), None));
    }
    let made = std::thread::scope(|s| {
        let h = s.spawn(|| alongside(&model));
        analyse(&tree, &model, opts, &mut diags);
        h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
    });
    Ok((finish(tree, names, model, diags), Some(made)))
}

/// Loading, name resolution and the model with its diagnostics.
fn front_end(
    root: &str,
    loader: &dyn Loader,
    opts: &Options,
) -> Result<(resolve::Tree, resolve::Scope, Model, Vec<Diagnostic>), RootError> {
    let mut diags = Vec::new();
    let tree = resolve::load(root, loader, &mut diags)?;
    let names = resolve::scope(&tree, &mut diags);
    let model = check::build_model(&tree, &names, opts.today, &mut diags);
    let held_back = names.held_back.borrow().clone();
    if !held_back.is_empty() {
        if let Some(d) = diags.iter_mut().find(|d| d.code == diag::Code::E103) {
            let list: Vec<String> = held_back.iter().map(|n| format!("`{n}`")).collect();
            d.notes.push(format!(
                "not defined in the files that were read, so not reported as unknown: {} (they may be in the file that could not be imported)",
                list.join(", ")
            ));
        }
    }
    Ok((tree, names, model, diags))
}

fn front_end_clean(diags: &[Diagnostic]) -> bool {
    !diags.iter().any(|d| d.is_error() && d.code.is_front_end())
}

/// The asserts, tests and analyses of a model the front end found no error in.
fn analyse(tree: &resolve::Tree, model: &Model, opts: &Options, diags: &mut Vec<Diagnostic>) {
    let ev = ir::eval::Evaluator::new(model);
    let graph = graph::ZoneGraph::new(&ev);
    analysis::verify::run_asserts(&ev, &graph, &tree.sources, diags);
    for t in &model.tests {
        for c in &t.cases {
            let r = analysis::verify::run_case(&ev, &t.name, c);
            if !r.passed {
                diags.push(analysis::verify::case_diagnostic(model, &tree.sources, c, &r));
            }
        }
    }
    analysis::pci::run(&ev, opts.today, diags);
    analysis::hygiene::run(&ev, &tree.sources, diags);
    analysis::feeds::run(model, &tree.sources, diags);
}

fn finish(tree: resolve::Tree, names: resolve::Scope, model: Model, mut diags: Vec<Diagnostic>) -> Compilation {
    diag::sort(&mut diags);
    diags.dedup();
    Compilation { tree, names, model, diagnostics: diags }
}

/// Compiles a single in-memory file named `main.seg`; for tests and fuzzing.
pub fn compile_str(src: &str, opts: &Options) -> Compilation {
    let loader = source::MemoryLoader::new().with("main.seg", src);
    match compile("main.seg", &loader, opts) {
        Ok(c) => c,
        Err(e) => unreachable!("the in-memory root always exists: {e}"),
    }
}
