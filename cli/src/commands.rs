//! One function per subcommand. Each returns the exit code; errors returned as
//! `Err` are usage, IO or environment errors (exit 2).

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::CommandFactory;
use segc_compiler::diag::Severity;
use segc_compiler::eval::{Decision, Evaluator, Verdict};
use segc_compiler::ir::{Action, Date, Proto};
use segc_compiler::syntax::{fmt as seg_fmt, parse};
use segc_compiler::{compile, Compilation, Options};

use crate::fsload::{policy_path, FsLoader};
use crate::{exit, render, AuditAction, Cli, Command, DeployTarget, Engine, ExportFormat, Format, GraphFormat, XdpModeArg};

pub fn dispatch(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Check { path, format, today, deny_warnings } => check(&path, format, today.as_deref(), deny_warnings),
        Command::Build { path, out, target, today } => build(&path, &out, &target, today.as_deref()),
        Command::Test { path, coverage, min_coverage } => test(&path, coverage, min_coverage),
        Command::Fmt { path, check } => fmt(&path, check),
        Command::Explain { path, src, dst, proto, packets, engine } => explain(&path, src, dst, proto, packets, engine),
        Command::Diff { old, new, format } => diff(&old, &new, format),
        Command::Probes { path, format } => {
            let Some(c) = load_complete(&path)? else { return Ok(exit::FINDINGS) };
            let probes = segc_compiler::probes::matrix(&c.model);
            let mut out = io::stdout().lock();
            match format {
                Format::Human => {
                    if probes.is_empty() {
                        writeln!(out, "no cde zone: nothing to probe")?;
                    }
                    for p in &probes {
                        writeln!(out, "must-{:<5} {} {} {}  ({} -> {})", p.expect, p.src, p.dst, p.proto, p.from_zone, p.to_zone)?;
                    }
                }
                _ => writeln!(out, "{}", serde_json::to_string_pretty(&probes)?)?,
            }
            Ok(exit::OK)
        }
        Command::Report { path, format, today } => {
            let today = parse_today(today.as_deref())?;
            let c = load(&path, &Options { today: Some(today) })?;
            if !c.model_complete() {
                print_human(&c)?;
                eprintln!("failed: the policy has errors; no report");
                return Ok(exit::FINDINGS);
            }
            let bytes = match format {
                crate::ReportFormat::Md => crate::report::markdown(&c, today).into_bytes(),
                crate::ReportFormat::Html => crate::report::html(&c, today).into_bytes(),
                crate::ReportFormat::Pdf => crate::report::pdf(&c, today),
            };
            io::stdout().lock().write_all(&bytes)?;
            Ok(exit::OK)
        }
        Command::Graph { path, format } => {
            let Some(c) = load_complete(&path)? else { return Ok(exit::FINDINGS) };
            let ev = Evaluator::new(&c.model);
            let g = segc_compiler::graph::ZoneGraph::new(&ev);
            print!(
                "{}",
                match format {
                    GraphFormat::Dot => crate::graph::dot(&c.model, &g),
                    GraphFormat::Svg => crate::graph::svg(&c.model, &g),
                }
            );
            Ok(exit::OK)
        }
        Command::Deploy { path, target: DeployTarget::Aws, aws_vpc, apply, today, .. } => {
            crate::cloud::deploy_aws(&path, aws_vpc.as_deref(), apply, today.as_deref())
        }
        Command::Deploy { path, target: DeployTarget::Azure, azure_resource_group, azure_location, apply, today, .. } => {
            crate::cloud::deploy_azure(&path, azure_resource_group.as_deref(), azure_location.as_deref(), apply, today.as_deref())
        }
        Command::Deploy { path, target, ifaces, netns, xdp_mode, apply, today, .. } => {
            deploy(&path, target, &ifaces, netns.as_deref(), xdp_mode, apply, today.as_deref())
        }
        Command::Drift { path, target: DeployTarget::Aws, aws_vpc, format, .. } => {
            crate::cloud::drift_aws(&path, aws_vpc.as_deref(), format)
        }
        Command::Drift { path, target: DeployTarget::Azure, azure_resource_group, format, .. } => {
            crate::cloud::drift_azure(&path, azure_resource_group.as_deref(), format)
        }
        Command::Drift { path, target, netns, format, .. } => drift(&path, target, netns.as_deref(), format),
        Command::Undeploy { target, netns, ifaces } => undeploy(target, netns.as_deref(), &ifaces),
        Command::Audit { action } => audit(action),
        Command::Agent { policy, ifaces, netns, xdp_mode, metrics, interval_ms, sample_every, run_for, seccomp_selftest } => {
            crate::agent::run(crate::agent::Config {
                policy,
                ifaces,
                netns,
                choice: xdp_choice(xdp_mode),
                metrics,
                interval: std::time::Duration::from_millis(interval_ms.max(50)),
                sample_every,
                run_for: run_for.map(std::time::Duration::from_secs),
                seccomp_selftest,
            })
        }
        Command::Lsp => {
            segc_lsp::run_stdio()?;
            Ok(exit::OK)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "segc", &mut io::stdout());
            Ok(exit::OK)
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut io::stdout())?;
            Ok(exit::OK)
        }
    }
}

/// Today's date in UTC.
pub fn today_utc() -> Date {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Date::from_days((secs / 86_400) as i64)
}

fn parse_today(today: Option<&str>) -> Result<Date> {
    match today {
        None => Ok(today_utc()),
        Some(t) => Date::parse(t).with_context(|| format!("--today `{t}` is not a date (YYYY-MM-DD)")),
    }
}

/// Loads and compiles the policy at `path`; IO problems are usage errors.
pub fn load(path: &Path, opts: &Options) -> Result<Compilation> {
    let p = policy_path(path).map_err(anyhow::Error::msg)?;
    let loader = FsLoader::new(&p.dir).with_context(|| format!("cannot open folder `{}`", p.dir.display()))?;
    Ok(compile(&p.file, &loader, opts)?)
}

pub(crate) fn color_stderr() -> bool {
    std::env::var_os("NO_COLOR").is_none() && io::stderr().is_terminal()
}

fn print_human(c: &Compilation) -> Result<()> {
    let mut err = io::stderr().lock();
    render::human(c.sources(), &c.diagnostics, color_stderr(), &mut err)?;
    Ok(())
}

fn summary(c: &Compilation) -> String {
    let (e, w) = (c.count(Severity::Error), c.count(Severity::Warning));
    let plural = |n: usize, s: &str| format!("{n} {s}{}", if n == 1 { "" } else { "s" });
    format!("{}, {}", plural(e, "error"), plural(w, "warning"))
}

fn check(path: &Path, format: Format, today: Option<&str>, deny_warnings: bool) -> Result<u8> {
    let opts = Options { today: Some(parse_today(today)?) };
    let c = load(path, &opts)?;
    match format {
        Format::Human => {
            print_human(&c)?;
            if c.model_complete() {
                let mut err = io::stderr().lock();
                for e in exposures(&c) {
                    writeln!(err, "note: untrusted `{}` reaches cde `{}`: {}", e.from, e.to, e.path)?;
                }
            }
            let name = c.model.policy.name.as_deref().unwrap_or("policy");
            if c.diagnostics.is_empty() {
                eprintln!("ok: `{name}` checks clean");
            } else {
                eprintln!("{}: `{name}`: {}", if c.has_errors() { "failed" } else { "ok" }, summary(&c));
            }
        }
        Format::Json => {
            let mut doc = render::json(c.sources(), &c.diagnostics, c.model.policy.name.as_deref());
            if c.model_complete() {
                doc["exposure"] = serde_json::to_value(exposures(&c))?;
            }
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Sarif => {
            let doc = render::sarif(c.sources(), &c.diagnostics);
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
    }
    let fail = c.has_errors() || (deny_warnings && c.count(Severity::Warning) > 0);
    Ok(if fail { exit::FINDINGS } else { exit::OK })
}

fn test(path: &Path, coverage: bool, min_coverage: Option<f64>) -> Result<u8> {
    let c = load(path, &Options::default())?;
    // Tests need a complete model; findings of the analyses do not stop them.
    if !c.model_complete() {
        let blocking: Vec<_> = c.diagnostics.iter().filter(|d| d.is_error() && d.code.is_front_end()).cloned().collect();
        render::human(c.sources(), &blocking, color_stderr(), &mut io::stderr().lock())?;
        eprintln!("failed: the policy has errors; no tests were run");
        return Ok(exit::FINDINGS);
    }
    let ev = Evaluator::new(&c.model);
    let results = segc_compiler::verify::run_tests(&ev);
    let mut out = io::stdout().lock();
    let mut exercised = vec![false; c.model.flows.len()];
    for r in &results {
        let status = if r.passed { "ok  " } else { "FAIL" };
        write!(out, "{status} {}: {}", r.test, r.case)?;
        if !r.passed {
            write!(out, " (got {}", r.got.as_str())?;
            let by: Vec<String> = r
                .deciding
                .iter()
                .map(|&(a, id)| format!("{} {}", segc_compiler::verify::action_word(a), c.sources().location(c.model.rule(a, id).span)))
                .collect();
            if by.is_empty() {
                write!(out, ", by default")?;
            } else {
                write!(out, ", by {}", by.join(", "))?;
            }
            write!(out, ")")?;
        }
        writeln!(out)?;
        for &(a, id) in &r.deciding {
            if a == Action::Allow {
                exercised[id.0 as usize] = true;
            }
        }
    }
    let failed = results.iter().filter(|r| !r.passed).count();
    writeln!(out, "{} passed, {} failed", results.len() - failed, failed)?;
    let mut code = if failed > 0 { exit::FINDINGS } else { exit::OK };
    if coverage {
        let total = c.model.flows.len();
        let hit = exercised.iter().filter(|&&e| e).count();
        let pct = if total == 0 { 100.0 } else { 100.0 * hit as f64 / total as f64 };
        writeln!(out, "coverage: {hit} of {total} flows exercised ({pct:.1}%)")?;
        for (i, f) in c.model.flows.iter().enumerate() {
            if !exercised[i] {
                writeln!(
                    out,
                    "  not exercised: flow {} on {} ({})",
                    c.model.pair_text(f.from, f.to),
                    f.services_text(),
                    c.sources().location(f.span)
                )?;
            }
        }
        if let Some(min) = min_coverage {
            if pct + 1e-9 < min {
                writeln!(out, "coverage {pct:.1}% is below the minimum {min}%")?;
                code = exit::FINDINGS;
            }
        }
    }
    Ok(code)
}

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

fn fmt(path: &Path, check: bool) -> Result<u8> {
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
        let bytes = std::fs::read(&file).with_context(|| format!("cannot read `{}`", file.display()))?;
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
            write_atomically(&file, &out)?;
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

fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("seg.segc-fmt.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write `{}`", tmp.display()))?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace `{}`", path.display()))?;
    Ok(())
}

/// One packet from text: `SRC DST PROTO/PORT`.
fn parse_packet(src: &str, dst: &str, proto: &str) -> Result<(std::net::IpAddr, std::net::IpAddr, Proto)> {
    let s = src.parse().with_context(|| format!("`{src}` is not an IP address"))?;
    let d = dst.parse().with_context(|| format!("`{dst}` is not an IP address"))?;
    let p = Proto::parse(proto).map_err(anyhow::Error::msg)?;
    Ok((s, d, p))
}

fn explain(
    path: &Path,
    src: Option<String>,
    dst: Option<String>,
    proto: Option<String>,
    packets: Option<PathBuf>,
    engine: Engine,
) -> Result<u8> {
    let c = load(path, &Options::default())?;
    if c.has_errors() {
        print_human(&c)?;
        eprintln!("failed: the policy has errors; nothing to explain");
        return Ok(exit::FINDINGS);
    }
    let ev = Evaluator::new(&c.model);
    // With the bpf engine, each packet goes through the real XDP program with
    // the compiled tables (BPF_PROG_TEST_RUN); the zones and the deciding item
    // still come from the reference evaluator, and the two must agree.
    let filter = match engine {
        Engine::Reference => None,
        Engine::Bpf => {
            let mut f = segc_loader::Filter::load().context("the bpf engine needs root, or CAP_BPF and CAP_NET_ADMIN")?;
            f.set_options(segc_runtime_bpf::F_NO_CONNTRACK, 0)?;
            f.install(&segc_compiler::lower::bpf::tables(&c.model))?;
            Some(f)
        }
    };
    let judge = |s: std::net::IpAddr, d: std::net::IpAddr, p: Proto| -> Result<Verdict> {
        let v = ev.verdict(s, d, p);
        if let Some(f) = &filter {
            let allow = if s.is_ipv4() == d.is_ipv4() { f.verdict(s, d, p)? } else { false };
            if allow != v.allow {
                bail!("the bpf program and the reference evaluator disagree on {s} -> {d} {p}: this is a bug in segc");
            }
        }
        Ok(v)
    };
    let mut out = io::stdout().lock();
    if let Some(file) = packets {
        let reader: Box<dyn BufRead> = if file == Path::new("-") {
            Box::new(io::BufReader::new(io::stdin()))
        } else {
            Box::new(io::BufReader::new(std::fs::File::open(&file).with_context(|| format!("cannot open `{}`", file.display()))?))
        };
        for (n, line) in reader.lines().enumerate() {
            let line = line.with_context(|| format!("cannot read line {}", n + 1))?;
            let text = line.split('#').next().unwrap_or("").trim();
            if text.is_empty() {
                continue;
            }
            let parts: Vec<&str> = text.split_whitespace().collect();
            let [s, d, p] = parts.as_slice() else {
                bail!("line {}: expected `SRC DST PROTO/PORT`, found `{text}`", n + 1);
            };
            let (s, d, p) = parse_packet(s, d, p).with_context(|| format!("line {}", n + 1))?;
            let v = judge(s, d, p)?;
            writeln!(out, "{}", verdict_line(&c, &v, s, d, p))?;
        }
        return Ok(exit::OK);
    }
    let (Some(s), Some(d), Some(p)) = (src, dst, proto) else {
        bail!("give SRC DST PROTO/PORT, or --packets FILE");
    };
    let (s, d, p) = parse_packet(&s, &d, &p)?;
    let v = judge(s, d, p)?;
    writeln!(out, "{}", verdict_line(&c, &v, s, d, p))?;
    for (label, ip, end) in [("source", s, v.src), ("destination", d, v.dst)] {
        match end {
            Some((z, prefix)) => {
                let zone = c.model.zone(z);
                let at = zone.prefixes.iter().find(|zp| zp.prefix == prefix).map(|zp| zp.span).unwrap_or(zone.span);
                writeln!(
                    out,
                    "  {label:<12} {ip} in zone {} ({}, scope {}), by prefix {prefix} ({})",
                    zone.name,
                    zone.kind.as_str(),
                    zone.scope.as_str(),
                    c.sources().location(at)
                )?;
            }
            None => writeln!(out, "  {label:<12} {ip} is in no zone")?,
        }
    }
    writeln!(out, "  {:<12} {}", "decided by", decision_text(&c, &v))?;
    Ok(exit::OK)
}

fn decision_text(c: &Compilation, v: &Verdict) -> String {
    let m = &c.model;
    match v.decision {
        Decision::Deny(id) | Decision::Flow(id) => {
            let a = if matches!(v.decision, Decision::Deny(_)) { Action::Deny } else { Action::Allow };
            let r = m.rule(a, id);
            format!(
                "{} {} on {} ({})",
                segc_compiler::verify::action_word(a),
                m.pair_text(r.from, r.to),
                r.services_text(),
                c.sources().location(r.span)
            )
        }
        Decision::Default => "default deny: no flow between the zones matches".to_string(),
        Decision::NoZone { src, dst } => match (src, dst) {
            (true, true) => "default deny: neither address is in a zone".to_string(),
            (true, false) => "default deny: the source is in no zone".to_string(),
            _ => "default deny: the destination is in no zone".to_string(),
        },
        Decision::FamilyMismatch => "deny: source and destination are of different address families".to_string(),
    }
}

/// `allow 10.0.1.5 -> 10.0.9.7 tcp/5432 zones dmz -> card_vault by flow main.seg:42`
fn verdict_line(c: &Compilation, v: &Verdict, s: std::net::IpAddr, d: std::net::IpAddr, p: Proto) -> String {
    let zone = |z: Option<(segc_compiler::ir::ZoneId, _)>| z.map_or("-".to_string(), |(z, _)| c.model.zone(z).name.clone());
    let by = match v.decision {
        Decision::Deny(id) => format!("deny {}", c.sources().location(c.model.rule(Action::Deny, id).span)),
        Decision::Flow(id) => format!("flow {}", c.sources().location(c.model.rule(Action::Allow, id).span)),
        Decision::Default => "default".to_string(),
        Decision::NoZone { .. } => "no-zone".to_string(),
        Decision::FamilyMismatch => "family-mismatch".to_string(),
    };
    format!("{} {s} -> {d} {p} zones {} -> {} by {by}", if v.allow { "allow" } else { "deny" }, zone(v.src), zone(v.dst))
}

/// Compiles a policy that must have no error at all (what is built or
/// deployed); prints them and returns `None` otherwise.
pub(crate) fn load_error_free(path: &Path, today: Option<&str>, verb: &str) -> Result<Option<Compilation>> {
    let c = load(path, &Options { today: Some(parse_today(today)?) })?;
    if c.has_errors() {
        print_human(&c)?;
        eprintln!("failed: the policy has errors ({}); nothing was {verb}", summary(&c));
        return Ok(None);
    }
    Ok(Some(c))
}

/// Compiles a policy whose model must be complete (no front-end error); prints
/// the errors and returns `None` otherwise.
fn load_complete(path: &Path) -> Result<Option<Compilation>> {
    let c = load(path, &Options::default())?;
    if !c.model_complete() {
        let errors: Vec<_> = c.diagnostics.iter().filter(|d| d.is_error() && d.code.is_front_end()).cloned().collect();
        render::human(c.sources(), &errors, color_stderr(), &mut io::stderr().lock())?;
        eprintln!("failed: `{}` has errors", path.display());
        return Ok(None);
    }
    if c.has_errors() {
        eprintln!("note: `{}` has findings ({}); run `segc check` for them", path.display(), summary(&c));
    }
    Ok(Some(c))
}

fn diff(old: &Path, new: &Path, format: Format) -> Result<u8> {
    let (Some(a), Some(b)) = (load_complete(old)?, load_complete(new)?) else { return Ok(exit::FINDINGS) };
    let d = segc_compiler::diff::diff(&a.model, &b.model);
    let mut out = io::stdout().lock();
    match format {
        Format::Json | Format::Sarif => {
            writeln!(out, "{}", serde_json::to_string_pretty(&d)?)?;
        }
        Format::Human => {
            if d.is_empty() {
                writeln!(out, "no change: the two policies allow exactly the same traffic")?;
            }
            for (title, list) in [("newly allowed", &d.newly_allowed), ("newly denied", &d.newly_denied)] {
                if list.is_empty() {
                    continue;
                }
                writeln!(out, "{title}:")?;
                for ch in list {
                    writeln!(
                        out,
                        "  {}{} -> {}: {}  (e.g. {})",
                        if ch.cde { "[cde] " } else { "" },
                        ch.from.label(),
                        ch.to.label(),
                        ch.services,
                        ch.sample
                    )?;
                }
            }
            if !d.moved.is_empty() {
                writeln!(out, "addresses that changed zone:")?;
                for m in &d.moved {
                    let except = if m.except.is_empty() { String::new() } else { format!(" except {}", m.except.join(", ")) };
                    writeln!(
                        out,
                        "  {}{except}: {} => {}",
                        m.prefix,
                        m.old.as_deref().unwrap_or("(none)"),
                        m.new.as_deref().unwrap_or("(none)")
                    )?;
                }
            }
        }
    }
    Ok(exit::OK)
}

/// A path from an untrusted zone into a cde zone, for reports.
#[derive(serde::Serialize)]
struct ExposureView {
    from: String,
    to: String,
    /// `internet -> dmz (tcp/443, main.seg:25) -> ...`
    path: String,
    hops: Vec<HopView>,
}

#[derive(serde::Serialize)]
struct HopView {
    from: String,
    to: String,
    services: String,
    flows: Vec<String>,
}

/// The shortest path from every untrusted zone into every cde zone it reaches.
fn exposures(c: &Compilation) -> Vec<ExposureView> {
    let ev = Evaluator::new(&c.model);
    let g = segc_compiler::graph::ZoneGraph::new(&ev);
    let m = &c.model;
    g.exposures(m)
        .into_iter()
        .map(|e| {
            let hops: Vec<HopView> = e
                .hops
                .iter()
                .map(|(a, b, set)| HopView {
                    from: m.zone(*a).name.clone(),
                    to: m.zone(*b).name.clone(),
                    services: set.to_string(),
                    flows: ev
                        .pair(*a, *b)
                        .map(|p| p.flows.as_slice())
                        .unwrap_or(&[])
                        .iter()
                        .map(|&id| m.rule(Action::Allow, id))
                        .filter(|r| !r.set.intersect(set).is_empty())
                        .map(|r| c.sources().location(r.span))
                        .collect(),
                })
                .collect();
            let mut path = m.zone(e.from).name.clone();
            for h in &hops {
                path.push_str(&format!(" -> {} ({}, {})", h.to, h.services, h.flows.join(", ")));
            }
            ExposureView { from: m.zone(e.from).name.clone(), to: m.zone(e.to).name.clone(), path, hops }
        })
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader
/// sees the old file or the new one, never half of one.
fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    }
    let tmp = path.with_extension(format!("segc-tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write `{}`", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace `{}`", path.display()))?;
    Ok(())
}

fn build(path: &Path, out: &Path, targets: &[String], today: Option<&str>) -> Result<u8> {
    use segc_compiler::lower::{self, Target};
    let mut chosen = std::collections::BTreeSet::new();
    for t in targets {
        let t = Target::parse(t.trim()).with_context(|| format!("unknown target `{t}` (bpf, aws, azure, nft, k8s, gcp)"))?;
        chosen.insert(t);
    }
    let Some(c) = load_error_free(path, today, "built")? else { return Ok(exit::FINDINGS) };
    if chosen.is_empty() {
        chosen = lower::default_targets(&c.model);
    }
    let artifacts = match lower::lower(&c.model, &chosen) {
        Ok(a) => a,
        Err(diags) => {
            render::human(c.sources(), &diags, color_stderr(), &mut io::stderr().lock())?;
            eprintln!("failed: the policy cannot be expressed exactly for every target; nothing was built");
            return Ok(exit::FINDINGS);
        }
    };
    // The source hash covers every file of the tree, standard library included.
    let mut src = Vec::new();
    for (_, f) in c.sources().files() {
        src.extend_from_slice(f.name.as_bytes());
        src.push(0);
        src.extend_from_slice(f.text.as_bytes());
        src.push(0);
    }
    let manifest = serde_json::json!({
        "policy": c.model.policy.name,
        "source_sha256": sha256_hex(&src),
        "segc_version": env!("CARGO_PKG_VERSION"),
        "targets": chosen.iter().map(|t| t.name()).collect::<Vec<_>>(),
        "artifacts": artifacts.iter().map(|a| (a.path.clone(), serde_json::Value::from(sha256_hex(&a.bytes)))).collect::<serde_json::Map<_, _>>(),
    });
    for a in &artifacts {
        write_file_atomically(&out.join(&a.path), &a.bytes)?;
    }
    write_file_atomically(&out.join("manifest.json"), format!("{}\n", serde_json::to_string_pretty(&manifest)?).as_bytes())?;
    record("build", serde_json::json!({"out": out.display().to_string(), "manifest": manifest}), false)?;
    for a in &artifacts {
        eprintln!("wrote {}", out.join(&a.path).display());
    }
    eprintln!("wrote {}", out.join("manifest.json").display());
    Ok(exit::OK)
}

fn deploy(
    path: &Path,
    target: DeployTarget,
    ifaces: &[String],
    netns: Option<&str>,
    mode: XdpModeArg,
    apply: bool,
    today: Option<&str>,
) -> Result<u8> {
    use segc_loader::attach;
    if target != DeployTarget::Host {
        bail!("deploy --target {target:?} is not implemented yet", target = format!("{target:?}").to_lowercase());
    }
    if ifaces.is_empty() {
        bail!("deploy --target host needs at least one --iface");
    }
    let Some(c) = load_error_free(path, today, "deployed")? else { return Ok(exit::FINDINGS) };
    let tables = segc_compiler::lower::bpf::tables(&c.model);
    let over = segc_compiler::lower::bpf::check_capacity(&c.model, &tables);
    if !over.is_empty() {
        render::human(c.sources(), &over, color_stderr(), &mut io::stderr().lock())?;
        eprintln!("failed: the policy does not fit the eBPF maps; nothing was deployed");
        return Ok(exit::FINDINGS);
    }
    if let Some(ns) = netns {
        attach::enter_netns(ns)?;
    }
    let choice = xdp_choice(mode);
    let name = c.model.policy.name.as_deref().unwrap_or("policy");
    let mut out = io::stdout().lock();
    if !apply {
        writeln!(out, "plan for `{name}` on {}:", netns.map_or("the host".to_string(), |n| format!("network namespace `{n}`")))?;
        let lines = attach::plan(&tables, netns, ifaces, choice)?;
        for line in &lines {
            writeln!(out, "  {line}")?;
        }
        record(
            "deploy.plan",
            serde_json::json!({"policy": name, "target": "host", "netns": netns, "ifaces": ifaces, "plan": lines}),
            false,
        )?;
        writeln!(out, "run again with --apply to apply it")?;
        return Ok(exit::OK);
    }
    let attempt = match std::env::var_os("SEGC_DISABLE_BPF") {
        Some(_) => Err(segc_loader::Error::Other("eBPF disabled by SEGC_DISABLE_BPF".into())),
        None => attach::deploy(&tables, netns, ifaces, choice),
    };
    let r = match attempt {
        Ok(r) => r,
        Err(e @ (segc_loader::Error::Load(_) | segc_loader::Error::Other(_))) if bpf_unavailable(&e) => {
            eprintln!("WARNING: eBPF is unavailable here ({e}).");
            eprintln!("WARNING: falling back to nftables: table `inet segc` filters every interface of this network namespace.");
            let ruleset = segc_compiler::lower::nft::render(&c.model);
            nft_apply(&ruleset)?;
            record(
                "deploy.apply",
                serde_json::json!({"policy": name, "target": "host", "engine": "nft", "netns": netns, "ruleset_sha256": segc_compiler::sha256::hex(ruleset.as_bytes()), "reason": e.to_string()}),
                true,
            )?;
            writeln!(out, "deployed `{name}` with nftables (fallback): table inet segc loaded")?;
            return Ok(exit::OK);
        }
        Err(e) => return Err(e.into()),
    };
    writeln!(
        out,
        "{} `{name}`: generation {}, {} entries, prepared in {:.1} ms, flipped in {:.3} ms",
        if r.fresh { "deployed" } else { "swapped" },
        r.swap.generation,
        r.swap.entries,
        r.swap.prepare.as_secs_f64() * 1e3,
        r.swap.flip.as_secs_f64() * 1e3
    )?;
    let bundle = segc_compiler::lower::bpf::bundle(&tables);
    record(
        if r.fresh { "deploy.apply" } else { "swap" },
        serde_json::json!({
            "policy": name, "target": "host", "engine": "bpf", "netns": netns, "ifaces": ifaces,
            "epoch": r.swap.generation, "entries": r.swap.entries,
            "bundle_sha256": segc_compiler::sha256::hex(&bundle),
            "attached": r.attached.iter().map(|(i, m)| serde_json::json!({"iface": i, "ingress": m})).collect::<Vec<_>>(),
        }),
        true,
    )?;
    for (i, mode) in &r.attached {
        writeln!(out, "attached to `{i}` ({mode} on ingress, TC on egress), pinned at {}", attach::pin_dir(netns).display())?;
    }
    Ok(exit::OK)
}

fn undeploy(target: DeployTarget, netns: Option<&str>, ifaces: &[String]) -> Result<u8> {
    use segc_loader::attach;
    if target != DeployTarget::Host {
        bail!("undeploy supports --target host only");
    }
    if let Some(ns) = netns {
        attach::enter_netns(ns)?;
    }
    let done = attach::undeploy(netns, ifaces)?;
    if ifaces.is_empty() && nft_remove()? {
        println!("removed the nftables fallback (table inet segc)");
    }
    if done.is_empty() {
        println!("no eBPF filter attached");
    } else {
        println!("detached from {}", done.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", "));
    }
    Ok(exit::OK)
}

/// Whether a loader error means eBPF cannot be used here at all (rather than a
/// problem with this deployment), so that nftables should take over.
fn bpf_unavailable(e: &segc_loader::Error) -> bool {
    match e {
        segc_loader::Error::Load(_) => true,
        segc_loader::Error::Other(m) => m.contains("SEGC_DISABLE_BPF"),
        _ => false,
    }
}

/// Loads a ruleset with `nft -f -` (one atomic transaction).
fn nft_apply(ruleset: &str) -> Result<()> {
    let mut child = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("cannot run `nft` (install nftables)")?;
    child.stdin.take().context("nft stdin")?.write_all(ruleset.as_bytes())?;
    let st = child.wait()?;
    if !st.success() {
        bail!("nft -f failed ({st}); nothing was changed");
    }
    Ok(())
}

/// Removes the nftables fallback table if it is there.
fn nft_remove() -> Result<bool> {
    let listed = std::process::Command::new("nft")
        .args(["list", "table", "inet", "segc"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if !listed.is_ok_and(|s| s.success()) {
        return Ok(false);
    }
    let st = std::process::Command::new("nft").args(["delete", "table", "inet", "segc"]).status()?;
    if !st.success() {
        bail!("cannot delete the nftables table inet segc");
    }
    Ok(true)
}

/// Appends an audit event. When the log cannot be written, a change to
/// enforcement (`required`) fails loudly; a build only warns.
/// Drift findings as JSON, for the output and the audit event alike:
/// `[{"kind": "missing"|"extra"|"changed", "entry": ...}]`.
pub(crate) fn findings(diffs: &[(String, String)]) -> serde_json::Value {
    diffs.iter().map(|(w, d)| serde_json::json!({"kind": w, "entry": d})).collect()
}

pub(crate) fn record(kind: &str, data: serde_json::Value, required: bool) -> Result<()> {
    let dir = segc_audit::default_dir();
    let result = segc_audit::Log::open(&dir).and_then(|log| log.append(kind, data));
    match result {
        Ok(_) => Ok(()),
        Err(e) if required => Err(anyhow::anyhow!("the change was applied but could not be recorded in the audit log: {e}")),
        Err(e) => {
            eprintln!("warning: not recorded in the audit log ({}): {e}", dir.display());
            Ok(())
        }
    }
}

fn audit(action: AuditAction) -> Result<u8> {
    let dir = segc_audit::default_dir();
    let log = segc_audit::Log::open(&dir)?;
    match action {
        AuditAction::Verify => match log.verify() {
            Ok(n) => {
                println!("ok: {n} events in {}, chain and head intact", dir.display());
                Ok(exit::OK)
            }
            Err(p) => {
                let loc = if p.line > 0 { format!("{} line {}", p.file, p.line) } else { p.file.clone() };
                eprintln!("error: audit log {}: event {} ({loc}): {:?}: {}", dir.display(), p.seq, p.kind, p.message);
                Ok(exit::FINDINGS)
            }
        },
        AuditAction::Show { kind, since, until, format } => {
            let day = |d: &Option<String>| -> Result<Option<u64>> {
                d.as_deref()
                    .map(|t| Date::parse(t).map(|d| d.0 as u64 * 86_400).with_context(|| format!("`{t}` is not a date (YYYY-MM-DD)")))
                    .transpose()
            };
            let (from, to) = (day(&since)?, day(&until)?);
            let mut out = io::stdout().lock();
            for e in log.events()? {
                if kind.as_deref().is_some_and(|k| k != e.kind) || from.is_some_and(|f| e.ts < f) || to.is_some_and(|t| e.ts >= t) {
                    continue;
                }
                match format {
                    Format::Human => writeln!(out, "{:>6} {} {:<12} {} {}", e.seq, segc_audit::rfc3339(e.ts), e.kind, e.actor, e.data)?,
                    _ => writeln!(out, "{}", serde_json::to_string(&e)?)?,
                }
            }
            Ok(exit::OK)
        }
        AuditAction::Export { format, syslog } => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "-".into());
            let lines: Vec<String> = log
                .events()?
                .iter()
                .map(|e| match format {
                    ExportFormat::Rfc5424 => segc_audit::rfc5424(e, &host),
                    ExportFormat::Cef => segc_audit::cef(e),
                    ExportFormat::Json => serde_json::to_string(e).unwrap_or_default(),
                })
                .collect();
            match syslog {
                None => {
                    let mut out = io::stdout().lock();
                    for l in &lines {
                        writeln!(out, "{l}")?;
                    }
                }
                Some(addr) => {
                    let mut s = std::net::TcpStream::connect(&addr).with_context(|| format!("cannot connect to syslog at {addr}"))?;
                    for l in &lines {
                        // RFC 6587 octet counting.
                        write!(s, "{} {l}", l.len())?;
                    }
                    s.flush()?;
                    eprintln!("sent {} events to {addr}", lines.len());
                }
            }
            Ok(exit::OK)
        }
    }
}

fn xdp_choice(mode: XdpModeArg) -> segc_loader::attach::XdpChoice {
    use segc_loader::attach::XdpChoice;
    match mode {
        XdpModeArg::Auto => XdpChoice::Auto,
        XdpModeArg::Native => XdpChoice::Native,
        XdpModeArg::Generic => XdpChoice::Generic,
        XdpModeArg::Tc => XdpChoice::Tc,
    }
}

fn class_name(c: u8) -> &'static str {
    match c {
        segc_compiler::lower::bpf::CLASS_TCP => "tcp",
        segc_compiler::lower::bpf::CLASS_UDP => "udp",
        segc_compiler::lower::bpf::CLASS_ICMP => "icmp",
        _ => "other",
    }
}

fn drift(path: &Path, target: DeployTarget, netns: Option<&str>, format: Format) -> Result<u8> {
    use segc_loader::attach;
    if target != DeployTarget::Host {
        bail!("drift --target {} is not implemented yet", format!("{target:?}").to_lowercase());
    }
    let Some(c) = load_error_free(path, None, "compared")? else { return Ok(exit::FINDINGS) };
    if let Some(ns) = netns {
        attach::enter_netns(ns)?;
    }
    let dir = attach::pin_dir(netns);
    if !dir.exists() {
        bail!("nothing is deployed at {} (run `segc deploy ... --apply` first)", dir.display());
    }
    let compiled = segc_loader::Entries::compiled(&segc_compiler::lower::bpf::tables(&c.model));
    let (epoch, live) = segc_loader::Entries::live(&dir)?;
    let m = &c.model;
    let zone = |id: u32| id.checked_sub(1).and_then(|i| m.zones.get(i as usize)).map_or_else(|| format!("#{id}"), |z| z.name.clone());
    let mut diffs: Vec<(String, String)> = Vec::new();
    for (what, a, b) in [("missing", &compiled, &live), ("extra", &live, &compiled)] {
        for (fam, addr, len, z) in a.zones.difference(&b.zones) {
            let family = if *fam == 4 { segc_compiler::ir::Family::V4 } else { segc_compiler::ir::Family::V6 };
            let bits =
                if *fam == 4 { u128::from(u32::from_be_bytes([addr[0], addr[1], addr[2], addr[3]])) } else { u128::from_be_bytes(*addr) };
            let p = segc_compiler::ir::Prefix { family, addr: bits, len: *len };
            diffs.push((what.into(), format!("zone prefix {p} of `{}`", zone(*z))));
        }
        for (s, d, cl, port) in a.exact.difference(&b.exact) {
            diffs.push((what.into(), format!("rule {} -> {} {}/{port}", zone(*s), zone(*d), class_name(*cl))));
        }
        for (s, d, cl, port, bits) in a.ranges.difference(&b.ranges) {
            let hi = u32::from(*port) + (1u32 << (16 - u32::from(*bits))) - 1;
            diffs.push((what.into(), format!("rule {} -> {} {}/{port}-{hi}", zone(*s), zone(*d), class_name(*cl))));
        }
    }
    let name = m.policy.name.as_deref().unwrap_or("policy");
    record(
        "drift",
        serde_json::json!({"policy": name, "target": "host", "netns": netns, "epoch": epoch, "differences": diffs.len(), "findings": findings(&diffs)}),
        false,
    )?;
    let mut out = io::stdout().lock();
    match format {
        Format::Human => {
            if diffs.is_empty() {
                writeln!(out, "no drift: the live policy (epoch {epoch}) matches `{name}`")?;
            }
            for (what, d) in &diffs {
                writeln!(out, "{what:<8} {d}")?;
            }
        }
        _ => {
            writeln!(out, "{}", serde_json::to_string_pretty(&serde_json::json!({"epoch": epoch, "drift": findings(&diffs)}))?)?;
        }
    }
    Ok(if diffs.is_empty() { exit::OK } else { exit::FINDINGS })
}
