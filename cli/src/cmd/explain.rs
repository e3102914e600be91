//! `segc explain`: the verdict for one packet (or one per port of a named
//! service), or for every packet of a file, with the zones and the deciding
//! item; from the reference evaluator or, with `--engine bpf`, from the real
//! eBPF program (the two must agree).

use std::io::{self, BufRead, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use segc_compiler::ir::eval::{Decision, Evaluator, Verdict};
use segc_compiler::ir::{Action, Proto};
use segc_compiler::{Compilation, Options};

use crate::policy::{load, print_human};
use crate::{exit, Engine};

/// Judges packets with the reference evaluator, and with the eBPF program too
/// when the bpf engine was asked for.
struct Judge<'c> {
    ev: Evaluator<'c>,
    filter: Option<segc_loader::Filter>,
}

impl<'c> Judge<'c> {
    fn new(c: &'c Compilation, engine: Engine) -> Result<Judge<'c>> {
        // With the bpf engine, each packet goes through the real XDP program with
        // the compiled tables (BPF_PROG_TEST_RUN); the zones and the deciding item
        // still come from the reference evaluator, and the two must agree.
        let filter = match engine {
            Engine::Reference => None,
            Engine::Bpf => {
                let mut f = segc_loader::Filter::load_for_test_runs().context("the bpf engine needs root, or CAP_BPF and CAP_NET_ADMIN")?;
                f.set_options(segc_runtime_bpf::F_NO_CONNTRACK, 0)?;
                f.install(&segc_compiler::lower::bpf::tables(&c.model))?;
                Some(f)
            }
        };
        Ok(Judge { ev: Evaluator::new(&c.model), filter })
    }

    fn judge(&self, s: IpAddr, d: IpAddr, p: Proto) -> Result<Verdict> {
        let v = self.ev.verdict(s, d, p);
        if let Some(f) = &self.filter {
            let allow = if s.is_ipv4() == d.is_ipv4() { f.verdict(s, d, p)? } else { false };
            if allow != v.allow {
                bail!("the bpf program and the reference evaluator disagree on {s} -> {d} {p}: this is a bug in segc");
            }
        }
        Ok(v)
    }
}

pub fn explain(
    path: &Path,
    src: Option<String>,
    dst: Option<String>,
    service: Option<String>,
    packets: Option<PathBuf>,
    engine: Engine,
) -> Result<u8> {
    let c = load(path, &Options::default())?;
    if c.has_errors() {
        print_human(&c)?;
        eprintln!("failed: the policy has errors; nothing to explain");
        return Ok(exit::FINDINGS);
    }
    let judge = Judge::new(&c, engine)?;
    if let Some(file) = packets {
        return explain_file(&c, &judge, &file);
    }
    let (Some(s), Some(d), Some(svc)) = (src, dst, service) else {
        bail!("give SRC DST SERVICE, or --packets FILE");
    };
    let (s, d) = (addr(&s)?, addr(&d)?);
    let mut out = io::stdout().lock();
    let mut lines = Vec::new();
    for p in service_probes(&c, &svc)? {
        lines.extend(judge_ports(&judge, s, d, &p)?);
    }
    for (v, label) in &lines {
        writeln!(out, "{}", verdict_line(&c, v, s, d, label))?;
    }
    let last = lines.last().map(|(v, _)| *v);
    let Some(v) = last else { bail!("`{svc}` names no port") };
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
    if lines.len() == 1 {
        writeln!(out, "  {:<12} {}", "decided by", decision_text(&c, &v))?;
    }
    Ok(exit::OK)
}

/// Every line of FILE (or stdin): a verdict line per good line; every bad line
/// reported on stderr with its number; exit 2 when any line was bad.
fn explain_file(c: &Compilation, judge: &Judge<'_>, file: &Path) -> Result<u8> {
    let reader: Box<dyn BufRead> = if file == Path::new("-") {
        Box::new(io::BufReader::new(io::stdin()))
    } else {
        Box::new(io::BufReader::new(std::fs::File::open(file).with_context(|| format!("cannot open `{}`", file.display()))?))
    };
    let mut out = io::stdout().lock();
    let mut bad = 0usize;
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("cannot read line {}", n + 1))?;
        let text = line.split('#').next().unwrap_or("").trim();
        if text.is_empty() {
            continue;
        }
        match packet_line(text) {
            Ok((s, d, p)) => {
                let v = judge.judge(s, d, p)?;
                writeln!(out, "{}", verdict_line(c, &v, s, d, &p.to_string()))?;
            }
            Err(e) => {
                bad += 1;
                eprintln!("error: line {} of {}: {e:#}", n + 1, file.display());
            }
        }
    }
    if bad > 0 {
        eprintln!("failed: {bad} line{} could not be read as `SRC DST PROTO/PORT`", if bad == 1 { "" } else { "s" });
        return Ok(exit::USAGE);
    }
    Ok(exit::OK)
}

fn addr(text: &str) -> Result<IpAddr> {
    text.parse().with_context(|| format!("`{text}` is not an IP address"))
}

/// `SRC DST PROTO/PORT`.
fn packet_line(text: &str) -> Result<(IpAddr, IpAddr, Proto)> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [s, d, p] = parts.as_slice() else {
        bail!("expected `SRC DST PROTO/PORT`, found `{text}`");
    };
    Ok((addr(s)?, addr(d)?, Proto::parse(p).map_err(anyhow::Error::msg)?))
}

/// The packets a SERVICE argument stands for: a literal (`tcp/443`) is one;
/// a named service is every port it names, a run of ports per protocol range.
struct Ports {
    proto: &'static str,
    lo: u16,
    hi: u16,
    make: fn(u16) -> Proto,
}

fn service_probes(c: &Compilation, text: &str) -> Result<Vec<Ports>> {
    if let Ok(p) = Proto::parse(text) {
        let (proto, port, make): (&'static str, u16, fn(u16) -> Proto) = match p {
            Proto::Tcp(n) => ("tcp", n, Proto::Tcp),
            Proto::Udp(n) => ("udp", n, Proto::Udp),
            Proto::Icmp(t) => ("icmp", u16::from(t), |t| Proto::Icmp(t as u8)),
            Proto::Other(n) => ("ip", u16::from(n), |n| Proto::Other(n as u8)),
        };
        return Ok(vec![Ports { proto, lo: port, hi: port, make }]);
    }
    let Some(set) = c.service_set(text) else {
        bail!("`{text}` is neither a packet (`tcp/443`, `udp/53`, `icmp/8`, `ip/47`) nor a service this policy or the standard library defines");
    };
    let mut out = Vec::new();
    let icmp: fn(u16) -> Proto = |t| Proto::Icmp(t as u8);
    for (proto, ranges, make) in
        [("tcp", &set.tcp, Proto::Tcp as fn(u16) -> Proto), ("udp", &set.udp, Proto::Udp), ("icmp", &set.icmp, icmp)]
    {
        out.extend(ranges.ranges().iter().map(|&(lo, hi)| Ports { proto, lo, hi, make }));
    }
    if set.other {
        // Every protocol but TCP, UDP and ICMP shares one verdict: GRE stands for them.
        out.push(Ports { proto: "ip", lo: 47, hi: 47, make: |n| Proto::Other(n as u8) });
    }
    Ok(out)
}

/// Verdicts for every port of `p`: one line per port, except that runs of
/// ports with the same verdict and deciding item are one line (`tcp/1024-65535`).
fn judge_ports(judge: &Judge<'_>, s: IpAddr, d: IpAddr, p: &Ports) -> Result<Vec<(Verdict, String)>> {
    let mut out: Vec<(Verdict, u16, u16)> = Vec::new();
    for port in p.lo..=p.hi {
        let v = judge.judge(s, d, (p.make)(port))?;
        match out.last_mut() {
            Some((last, _, hi)) if p.hi - p.lo >= 64 && last.allow == v.allow && last.decision == v.decision => *hi = port,
            _ => out.push((v, port, port)),
        }
    }
    Ok(out
        .into_iter()
        .map(|(v, lo, hi)| (v, if lo == hi { format!("{}/{lo}", p.proto) } else { format!("{}/{lo}-{hi}", p.proto) }))
        .collect())
}

fn decision_text(c: &Compilation, v: &Verdict) -> String {
    let m = &c.model;
    match v.decision {
        Decision::Deny(id) | Decision::Flow(id) => {
            let a = if matches!(v.decision, Decision::Deny(_)) { Action::Deny } else { Action::Allow };
            let r = m.rule(a, id);
            format!(
                "{} {} on {}{} ({})",
                segc_compiler::analysis::verify::action_word(a),
                m.pair_text(r.from, r.to),
                r.services_text(),
                r.via_text(),
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
        Decision::Feed { feed, line, prefix, dst } => {
            let f = m.feed(feed);
            let block = f.block_span.map(|b| format!("; block {}", c.sources().location(b))).unwrap_or_default();
            format!(
                "deny: the {} is in feed `{}` ({}:{line}: {prefix}{block})",
                if dst { "destination" } else { "source" },
                f.name,
                f.location
            )
        }
    }
}

/// `allow 10.0.1.5 -> 10.0.9.7 tcp/5432 zones dmz -> card_vault by flow main.seg:42`
fn verdict_line(c: &Compilation, v: &Verdict, s: IpAddr, d: IpAddr, p: &str) -> String {
    let zone = |z: Option<(segc_compiler::ir::ZoneId, _)>| z.map_or("-".to_string(), |(z, _)| c.model.zone(z).name.clone());
    let by = match v.decision {
        Decision::Deny(id) => {
            let r = c.model.rule(Action::Deny, id);
            format!("deny {}{}", c.sources().location(r.span), r.via_text())
        }
        Decision::Flow(id) => {
            let r = c.model.rule(Action::Allow, id);
            format!("flow {}{}", c.sources().location(r.span), r.via_text())
        }
        Decision::Default => "default".to_string(),
        Decision::NoZone { .. } => "no-zone".to_string(),
        Decision::FamilyMismatch => "family-mismatch".to_string(),
        Decision::Feed { feed, line, .. } => {
            let f = c.model.feed(feed);
            format!("feed {} {}:{line}", f.name, f.location)
        }
    };
    format!("{} {s} -> {d} {p} zones {} -> {} by {by}", if v.allow { "allow" } else { "deny" }, zone(v.src), zone(v.dst))
}
