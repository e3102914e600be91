//! `segc deploy|undeploy|drift --target host`: the eBPF filter on this host's
//! interfaces (or in a named network namespace), nftables where eBPF cannot
//! be used.

use std::io::{self, Write};
use std::path::Path;

use anyhow::{bail, Result};
use segc_audit::Kind;
use segc_compiler::ir::{Date, Family, Prefix};
use segc_compiler::lower::bpf;
use segc_loader::attach;

use crate::journal::{findings_json, record, Finding, FindingKind};
use crate::policy::{load_error_free, print_diagnostics};
use crate::{exit, DeployTarget, Format, HostArgs};

pub fn deploy(path: &Path, host: &HostArgs, apply: bool, today: Option<Date>) -> Result<u8> {
    let (ifaces, netns) = (&host.ifaces, host.netns.as_deref());
    if ifaces.is_empty() {
        bail!("deploy --target host needs at least one --iface");
    }
    let Some(c) = load_error_free(path, today, "deployed")? else { return Ok(exit::FINDINGS) };
    let tables = bpf::tables(&c.model);
    let over = bpf::check_capacity(&c.model, &tables);
    if !over.is_empty() {
        print_diagnostics(&c, &over)?;
        eprintln!("failed: the policy does not fit the eBPF maps; nothing was deployed");
        return Ok(exit::FINDINGS);
    }
    if let Some(ns) = netns {
        attach::enter_netns(ns)?;
    }
    let choice = host.xdp_mode.into();
    let name = c.model.policy.name.as_deref().unwrap_or("policy");
    let mut out = io::stdout().lock();
    if !apply {
        writeln!(out, "plan for `{name}` on {}:", netns.map_or("the host".to_string(), |n| format!("network namespace `{n}`")))?;
        let lines = attach::plan(&tables, netns, ifaces, choice)?;
        for line in &lines {
            writeln!(out, "  {line}")?;
        }
        record(
            Kind::DeployPlan,
            serde_json::json!({"policy": name, "target": "host", "netns": netns, "ifaces": ifaces, "plan": lines}),
            false,
        )?;
        writeln!(out, "run again with --apply to apply it")?;
        return Ok(exit::OK);
    }
    crate::journal::ensure_writable()?;
    let attempt = match std::env::var_os("SEGC_DISABLE_BPF") {
        Some(_) => Err(segc_loader::Error::Disabled("SEGC_DISABLE_BPF")),
        None => attach::deploy(&tables, netns, ifaces, choice, &host.link.options()),
    };
    let r = match attempt {
        Ok(r) => r,
        Err(e) if e.means_unavailable() => {
            eprintln!("WARNING: eBPF is unavailable here ({e}).");
            eprintln!("WARNING: falling back to nftables: table `inet segc` filters every interface of this network namespace.");
            let ruleset = segc_compiler::lower::nft::render(&c.model);
            segc_loader::nft::apply(&ruleset)?;
            record(
                Kind::DeployApply,
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
    record(
        if r.fresh { Kind::DeployApply } else { Kind::Swap },
        serde_json::json!({
            "policy": name, "target": "host", "engine": "bpf", "netns": netns, "ifaces": ifaces,
            "epoch": r.swap.generation, "entries": r.swap.entries,
            "bundle_sha256": segc_compiler::sha256::hex(&bpf::bundle(&tables)),
            "attached": r.attached.iter().map(|(i, m)| serde_json::json!({"iface": i, "hooks": m})).collect::<Vec<_>>(),
            "kernel": r.features.text(),
        }),
        true,
    )?;
    for (i, how) in &r.attached {
        writeln!(out, "attached to `{i}` ({how}), pinned at {}", attach::pin_dir(netns).display())?;
    }
    Ok(exit::OK)
}

pub fn undeploy(target: DeployTarget, netns: Option<&str>, ifaces: &[String]) -> Result<u8> {
    if target != DeployTarget::Host {
        bail!("undeploy supports --target host only");
    }
    if let Some(ns) = netns {
        attach::enter_netns(ns)?;
    }
    let done = attach::undeploy(netns, ifaces)?;
    if ifaces.is_empty() && segc_loader::nft::remove()? {
        println!("removed the nftables fallback (table inet segc)");
    }
    if done.is_empty() {
        println!("no eBPF filter attached");
    } else {
        println!("detached from {}", done.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", "));
        record(Kind::Undeploy, serde_json::json!({"target": "host", "netns": netns, "ifaces": done}), false)?;
    }
    Ok(exit::OK)
}

fn class_name(c: u8) -> &'static str {
    match c {
        bpf::CLASS_TCP => "tcp",
        bpf::CLASS_UDP => "udp",
        bpf::CLASS_ICMP => "icmp",
        _ => "other",
    }
}

pub fn drift(path: &Path, host: &HostArgs, format: Format) -> Result<u8> {
    let netns = host.netns.as_deref();
    let Some(c) = load_error_free(path, None, "compared")? else { return Ok(exit::FINDINGS) };
    if let Some(ns) = netns {
        attach::enter_netns(ns)?;
    }
    let dir = attach::pin_dir(netns);
    if !dir.exists() {
        bail!("nothing is deployed at {} (run `segc deploy ... --apply` first)", dir.display());
    }
    // Attachment, as the kernel has it: an interface created again, or a
    // filter taken off, is drift.
    let st = attach::state(netns);
    let mut diffs: Vec<Finding> = st
        .ifaces
        .iter()
        .filter_map(|s| s.problem.as_ref().map(|p| Finding::new(FindingKind::NotAttached, format!("`{}`: {p}", s.iface))))
        .collect();
    let compiled = segc_loader::Entries::compiled(&bpf::tables(&c.model));
    let (epoch, live) = segc_loader::Entries::live(&dir)?;
    let m = &c.model;
    let zone = |id: u32| id.checked_sub(1).and_then(|i| m.zones.get(i as usize)).map_or_else(|| format!("#{id}"), |z| z.name.clone());
    for (what, a, b) in [(FindingKind::Missing, &compiled, &live), (FindingKind::Extra, &live, &compiled)] {
        for (fam, addr, len, z) in a.zones.difference(&b.zones) {
            let family = if *fam == 4 { Family::V4 } else { Family::V6 };
            let bits =
                if *fam == 4 { u128::from(u32::from_be_bytes([addr[0], addr[1], addr[2], addr[3]])) } else { u128::from_be_bytes(*addr) };
            let p = Prefix { family, addr: bits, len: *len };
            diffs.push(Finding::new(what, format!("zone prefix {p} of `{}`", zone(*z))));
        }
        for (s, d, cl, port) in a.exact.difference(&b.exact) {
            diffs.push(Finding::new(what, format!("rule {} -> {} {}/{port}", zone(*s), zone(*d), class_name(*cl))));
        }
        for (s, d, cl, port, bits) in a.ranges.difference(&b.ranges) {
            let hi = u32::from(*port) + (1u32 << (16 - u32::from(*bits))) - 1;
            diffs.push(Finding::new(what, format!("rule {} -> {} {}/{port}-{hi}", zone(*s), zone(*d), class_name(*cl))));
        }
    }
    let name = m.policy.name.as_deref().unwrap_or("policy");
    let hooks: Vec<serde_json::Value> = st
        .ifaces
        .iter()
        .map(|s| serde_json::json!({"iface": s.iface, "ingress": s.attached.ingress, "egress": s.attached.egress, "l3": s.attached.l3, "attached": s.problem.is_none()}))
        .collect();
    record(
        Kind::Drift,
        serde_json::json!({"policy": name, "target": "host", "netns": netns, "epoch": epoch, "ifaces": hooks, "differences": diffs.len(), "findings": findings_json(&diffs)}),
        false,
    )?;
    let mut out = io::stdout().lock();
    match format {
        Format::Human => {
            if diffs.is_empty() {
                writeln!(out, "no drift: the live policy (epoch {epoch}) matches `{name}`")?;
            }
            for f in &diffs {
                writeln!(out, "{:<8} {}", f.kind.as_str(), f.entry)?;
            }
            for s in &st.ifaces {
                let how = format!("{} on ingress, {} on egress", s.attached.ingress.text(), s.attached.egress.text());
                writeln!(out, "  `{}`: {how}{}", s.iface, if s.problem.is_some() { " (not attached)" } else { "" })?;
            }
        }
        _ => {
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({"epoch": epoch, "ifaces": hooks, "drift": findings_json(&diffs)}))?
            )?;
        }
    }
    Ok(if diffs.is_empty() { exit::OK } else { exit::FINDINGS })
}
