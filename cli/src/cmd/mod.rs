//! One module per command family; this file only dispatches. Each command
//! returns the exit code; errors returned as `Err` are usage, IO or environment
//! errors (exit 2).

mod audit;
mod build;
mod check;
pub mod cloud;
mod diff;
mod docs;
mod evidence;
mod explain;
pub mod fleet;
mod fmt;
mod host;
mod test;

use anyhow::Result;

use crate::{Cli, Command, DeployTarget};

pub fn dispatch(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Check { path, format, today, deny_warnings } => check::check(&path, format, today, deny_warnings),
        Command::Build { path, out, target, today } => build::build(&path, &out, &target, today),
        Command::Test { path, coverage, min_coverage } => test::test(&path, coverage, min_coverage),
        Command::Fmt { path, check } => fmt::fmt(&path, check),
        Command::Explain { path, src, dst, service, packets, engine } => explain::explain(&path, src, dst, service, packets, engine),
        Command::Diff { old, new, format, fail_on } => diff::diff(&old, &new, format, fail_on),
        Command::Probes { path, format, run, from, netns, timeout_ms, rate } => match (run, from) {
            (true, Some(zone)) => evidence::probe_run(&path, &zone, netns.as_deref(), format, timeout_ms, rate),
            _ => evidence::probes(&path, format),
        },
        Command::Report { path, format, today, template } => evidence::report(&path, format, today, template),
        Command::Graph { path, format } => evidence::graph(&path, format),
        Command::Deploy { path, target, host, cloud, apply, today, .. } => match target {
            DeployTarget::Host => host::deploy(&path, &host, apply, today),
            DeployTarget::Aws => cloud::deploy_aws(&path, &cloud, apply, today),
            DeployTarget::Azure => cloud::deploy_azure(&path, &cloud, apply, today),
            DeployTarget::Gcp => cloud::deploy_gcp(&path, &cloud, apply, today),
        },
        Command::Drift { path, target, host, cloud, format } => match target {
            DeployTarget::Host => host::drift(&path, &host, format),
            DeployTarget::Aws => cloud::drift_aws(&path, &cloud, format),
            DeployTarget::Azure => cloud::drift_azure(&path, &cloud, format),
            DeployTarget::Gcp => cloud::drift_gcp(&path, &cloud, format),
        },
        Command::Undeploy { target, netns, ifaces } => host::undeploy(target, netns.as_deref(), &ifaces),
        Command::Audit { action } => audit::audit(action),
        Command::Fleet { action } => fleet::fleet(action),
        #[cfg(feature = "fleet")]
        Command::Controller { etcd, id, cloud, reconcile, interval_s, silent_after_s, lease_ttl, metrics, run_for, feed_refresh_ms } => {
            fleet::controller(fleet::ControllerArgs {
                etcd,
                id,
                cloud,
                reconcile,
                interval_s,
                silent_after_s,
                lease_ttl,
                metrics,
                run_for,
                feed_refresh_ms,
            })
        }
        #[cfg(not(feature = "fleet"))]
        Command::Controller { .. } => {
            fleet::fleet(crate::FleetAction::Status { format: crate::Format::Human, etcd: crate::EtcdArgs::default() })
        }
        Command::Agent {
            policy,
            fleet,
            etcd,
            etcd_cacert,
            etcd_cert,
            etcd_key,
            host_id,
            ifaces,
            netns,
            xdp_mode,
            link,
            metrics,
            interval_ms,
            sample_every,
            sample_window_s,
            run_for,
            seccomp_selftest,
            audit_segment_bytes,
            feed_refresh_ms,
        } => crate::agent::run(crate::agent::Config {
            source: crate::agent::source(
                policy,
                fleet,
                crate::EtcdArgs { endpoints: etcd, etcd_cacert, etcd_cert, etcd_key, fleet: String::new() },
                host_id,
            )?,
            ifaces,
            netns,
            choice: xdp_mode.into(),
            link: link.options(),
            metrics,
            interval: std::time::Duration::from_millis(interval_ms.max(50)),
            sample_every,
            sample_window: std::time::Duration::from_secs(sample_window_s.max(1)),
            run_for: run_for.map(std::time::Duration::from_secs),
            seccomp_selftest,
            audit_segment_bytes,
            feed_refresh: feed_refresh_ms.map(|ms| std::time::Duration::from_millis(ms.max(100))),
        }),
        Command::Lsp => docs::lsp(),
        Command::Completions { shell } => docs::completions(shell),
        Command::Man { dir } => docs::man(dir.as_deref()),
    }
}
