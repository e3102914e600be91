//! The commands about segc itself: the language server, completions, man pages.

use std::io;
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::{exit, Cli};

pub fn lsp() -> Result<u8> {
    segc_lsp::run_stdio(Some(lsp_fetch))?;
    Ok(exit::OK)
}

pub fn completions(shell: clap_complete::Shell) -> Result<u8> {
    clap_complete::generate(shell, &mut Cli::command(), "segc", &mut io::stdout());
    Ok(exit::OK)
}

/// Prints `segc(1)`, one self-contained page with every command and its
/// options; or writes `segc.1` and one `segc-COMMAND.1` per command (the pages
/// `segc.1` then refers to) into `dir`.
pub fn man(dir: Option<&Path>) -> Result<u8> {
    let cmd = Cli::command();
    let Some(dir) = dir else {
        let mut out = Vec::new();
        single_page(&cmd, &mut out)?;
        io::Write::write_all(&mut io::stdout().lock(), &out)?;
        return Ok(exit::OK);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    // Built, so that clap's own `help` subcommands (which the pages list) are there.
    let mut cmd = cmd;
    cmd.build();
    let mut written = Vec::new();
    write_pages(&cmd, "segc", dir, &mut written)?;
    for p in &written {
        eprintln!("wrote {}", p.display());
    }
    Ok(exit::OK)
}

/// One page for `cmd` (named `name`), then one for each of its subcommands.
fn write_pages(cmd: &clap::Command, name: &str, dir: &Path, written: &mut Vec<std::path::PathBuf>) -> Result<()> {
    let page = cmd.clone().name(name.to_string());
    let mut bytes = Vec::new();
    clap_mangen::Man::new(page).render(&mut bytes)?;
    let path = dir.join(format!("{name}.1"));
    segc_fsio::write_atomically(&path, &bytes, None).with_context(|| format!("cannot write `{}`", path.display()))?;
    written.push(path);
    // `help` too: the parent's page lists it.
    for sub in cmd.get_subcommands() {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}

/// The whole CLI as one page: name, synopsis, description, global options,
/// then a COMMANDS section with each command's synopsis and options, so the
/// page refers to no page that is not installed.
fn single_page(cmd: &clap::Command, w: &mut Vec<u8>) -> Result<()> {
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    w.extend_from_slice(b".SH COMMANDS\n");
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("segc {}", sub.get_name());
        let page = clap_mangen::Man::new(sub.clone().name(name.clone()).bin_name(name.clone()));
        let mut part = Vec::new();
        page.render_synopsis_section(&mut part)?;
        page.render_description_section(&mut part)?;
        page.render_options_section(&mut part)?;
        w.extend_from_slice(format!(".SS \"{name}\"\n").as_bytes());
        // The command's own sections become paragraphs of its subsection.
        for line in String::from_utf8_lossy(&part).lines() {
            match line.strip_prefix(".SH ") {
                Some("SYNOPSIS") | Some("DESCRIPTION") => w.extend_from_slice(b".PP\n"),
                Some(title) => w.extend_from_slice(format!(".PP\n\\fI{}:\\fR\n", title.trim_matches('"').to_lowercase()).as_bytes()),
                None => {
                    w.extend_from_slice(line.as_bytes());
                    w.push(b'\n');
                }
            }
        }
    }
    man.render_version_section(w)?;
    Ok(())
}

/// The language server's https feed reader.
fn lsp_fetch(url: &str) -> Result<Vec<u8>, String> {
    crate::feeds::fetch_url(url, crate::feeds::size_limit(segc_compiler::ir::feed::DEFAULT_MAX_PREFIXES), crate::feeds::TIMEOUT)
}
