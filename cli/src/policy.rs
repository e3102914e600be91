//! The one way a command loads a policy: resolve PATH, read through the shared
//! file-system loader, compile, and print what stops the command.

use std::io::{self, IsTerminal};
use std::path::Path;

use anyhow::{Context, Result};
use segc_compiler::diag::Severity;
use segc_compiler::ir::Date;
use segc_compiler::{compile, Compilation, Options};
use segc_fsio::{policy_path, FsLoader};

use crate::render;

/// Loads and compiles the policy at `path`; IO problems are usage errors.
pub fn load(path: &Path, opts: &Options) -> Result<Compilation> {
    let (file, loader) = loader_for(path)?;
    Ok(compile(&file, &loader, opts)?)
}

/// The root file of the policy at `path` and the loader over its folder.
fn loader_for(path: &Path) -> Result<(String, crate::feeds::FeedLoader<FsLoader>)> {
    let p = policy_path(path).map_err(anyhow::Error::msg)?;
    let inner = FsLoader::new(&p.dir).with_context(|| format!("cannot open folder `{}`", p.dir.display()))?;
    Ok((p.file, crate::feeds::FeedLoader { inner }))
}

/// `--today`, or today's date from the one clock.
pub fn today_or_now(today: Option<Date>) -> Date {
    today.unwrap_or_else(segc_fsio::clock::today)
}

/// Whether stderr gets colours.
pub fn color_stderr() -> bool {
    std::env::var_os("NO_COLOR").is_none() && io::stderr().is_terminal()
}

/// Prints every diagnostic of `c` on stderr.
pub fn print_human(c: &Compilation) -> Result<()> {
    print_diagnostics(c, &c.diagnostics)
}

/// Prints `diags` (of `c`'s sources) on stderr.
pub fn print_diagnostics(c: &Compilation, diags: &[segc_compiler::diag::Diagnostic]) -> Result<()> {
    render::human(c.sources(), diags, color_stderr(), &mut io::stderr().lock())?;
    Ok(())
}

/// `2 errors, 1 warning`.
pub fn summary(c: &Compilation) -> String {
    let (e, w) = (c.count(Severity::Error), c.count(Severity::Warning));
    let plural = |n: usize, s: &str| format!("{n} {s}{}", if n == 1 { "" } else { "s" });
    format!("{}, {}", plural(e, "error"), plural(w, "warning"))
}

/// [`load`] with `alongside` run on the model while the analyses run (see
/// [`segc_compiler::compile_alongside`]).
pub fn load_alongside<T: Send>(
    path: &Path,
    opts: &Options,
    alongside: impl FnOnce(&segc_compiler::ir::Model) -> T + Send,
) -> Result<(Compilation, Option<T>)> {
    let (file, loader) = loader_for(path)?;
    Ok(segc_compiler::compile_alongside(&file, &loader, opts, alongside)?)
}

/// Prints the errors of a policy that had to have none, and what was not done.
pub fn refuse(c: &Compilation, verb: &str) -> Result<()> {
    print_human(c)?;
    eprintln!("failed: the policy has errors ({}); nothing was {verb}", summary(c));
    Ok(())
}

/// Compiles a policy that must have no error at all (what is built or
/// deployed); prints them and returns `None` otherwise.
pub fn load_error_free(path: &Path, today: Option<Date>, verb: &str) -> Result<Option<Compilation>> {
    let c = load(path, &Options { today: Some(today_or_now(today)) })?;
    if c.has_errors() {
        refuse(&c, verb)?;
        return Ok(None);
    }
    Ok(Some(c))
}

/// Compiles a policy whose model must be complete (no front-end error); prints
/// the errors and returns `None` otherwise.
pub fn load_complete(path: &Path) -> Result<Option<Compilation>> {
    let c = load(path, &Options::default())?;
    if !c.model_complete() {
        let errors: Vec<_> = c.diagnostics.iter().filter(|d| d.is_error() && d.code.is_front_end()).cloned().collect();
        print_diagnostics(&c, &errors)?;
        eprintln!("failed: `{}` has errors", path.display());
        return Ok(None);
    }
    if c.has_errors() {
        eprintln!("note: `{}` has findings ({}); run `segc check` for them", path.display(), summary(&c));
    }
    Ok(Some(c))
}
