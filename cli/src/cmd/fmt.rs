//! `segc fmt`: canonical formatting, comments kept, idempotent.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use segc_compiler::syntax::{fmt as seg_fmt, parse};

use crate::exit;
use crate::policy::color_stderr;
use crate::render;

/// The `.seg` files to format: the file itself, or every `.seg` file under a folder.
fn seg_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot list `{}`", dir.display()))? {
            let entry = entry?;
            let ty = entry.file_type()?;
            let p = entry.path();
            if ty.is_dir() {
                stack.push(p);
            } else if ty.is_file() && p.extension().is_some_and(|e| e == "seg") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

pub fn fmt(path: &Path, check: bool) -> Result<u8> {
    if path == Path::new("-") {
        let mut src = String::new();
        io::stdin().read_to_string(&mut src).context("cannot read stdin")?;
        return Ok(match format_text("<stdin>", &src)? {
            Some(out) => {
                print!("{out}");
                if check && out != src {
                    exit::FINDINGS
                } else {
                    exit::OK
                }
            }
            None => exit::FINDINGS,
        });
    }
    let mut code = exit::OK;
    for file in seg_files(path)? {
        let bytes =
            segc_fsio::read_regular(&file).map_err(anyhow::Error::msg).with_context(|| format!("cannot read `{}`", file.display()))?;
        let Ok(src) = String::from_utf8(bytes) else {
            eprintln!("error[E002]: `{}` is not valid UTF-8; not formatted", file.display());
            code = exit::FINDINGS;
            continue;
        };
        let Some(out) = format_text(&file.display().to_string(), &src)? else {
            code = exit::FINDINGS;
            continue;
        };
        if out == src {
            continue;
        }
        if check {
            println!("{}", file.display());
            code = exit::FINDINGS;
        } else {
            segc_fsio::write_atomically(&file, out.as_bytes(), None).with_context(|| format!("cannot replace `{}`", file.display()))?;
        }
    }
    Ok(code)
}

/// The formatted text, or `None` (with diagnostics printed) when it has syntax errors.
fn format_text(name: &str, src: &str) -> Result<Option<String>> {
    let mut sources = segc_compiler::source::SourceMap::default();
    let id = sources.add(name.to_string(), src.to_string(), false);
    let parsed = parse(id, src);
    if parsed.has_errors() {
        render::human(&sources, &parsed.diagnostics, color_stderr(), &mut io::stderr().lock())?;
        eprintln!("failed: `{name}` has syntax errors; not formatted");
        return Ok(None);
    }
    Ok(Some(seg_fmt::format(src, &parsed)))
}
