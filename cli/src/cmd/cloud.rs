//! `segc deploy|drift --target aws|azure`: compile, plan from live state,
//! apply in a safe order, report and audit. The clients are `crate::cloud::aws`
//! and `crate::cloud::azure`, each behind a cargo feature of the same name (both on by
//! default); a binary built without one says so instead of deploying.

#[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
use std::io::{self, IsTerminal, Write};
use std::path::Path;

#[cfg(not(all(feature = "aws", feature = "azure", feature = "gcp")))]
use anyhow::bail;
use anyhow::Result;
#[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
use {
    crate::exit,
    crate::journal::{findings_json, record, Finding},
    crate::policy::{load_error_free, print_diagnostics},
    anyhow::Context,
    segc_audit::Kind,
    segc_compiler::Compilation,
};

use segc_compiler::ir::Date;

use crate::{CloudArgs, Format};

#[cfg(feature = "aws")]
fn aws_output(path: &Path, today: Option<Date>) -> Result<Option<(Compilation, segc_compiler::lower::aws::Output)>> {
    let Some(c) = load_error_free(path, today, "deployed")? else { return Ok(None) };
    match segc_compiler::lower::aws::lower(&c.model) {
        Ok(o) => Ok(Some((c, o))),
        Err(diags) => {
            print_diagnostics(&c, &diags)?;
            eprintln!("failed: the policy cannot be expressed as security groups; nothing was changed");
            Ok(None)
        }
    }
}

#[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

#[cfg(feature = "aws")]
pub fn deploy_aws(path: &Path, cloud: &CloudArgs, apply: bool, today: Option<Date>) -> Result<u8> {
    let vpc = cloud.aws_vpc.as_deref().context("deploy --target aws needs --aws-vpc VPC_ID")?;
    let Some((c, out)) = aws_output(path, today)? else { return Ok(exit::FINDINGS) };
    let name = c.model.policy.name.clone().unwrap_or_else(|| "policy".into());
    let rt = runtime()?;
    let audit = serde_json::json!({"policy": name, "target": "aws", "vpc": vpc});
    let place = vpc.to_string();
    rt.block_on(async {
        let client = crate::cloud::aws::client().await;
        if !apply {
            let changes: Vec<String> = crate::cloud::aws::plan(&client, vpc, &out).await?.iter().map(|c| c.to_string()).collect();
            let mut a = audit.clone();
            a["changes"] = serde_json::json!(changes);
            return report_plan(&name, &place, &changes, a);
        }
        crate::journal::ensure_writable()?;
        let progress = Progress::start();
        let result = crate::cloud::aws::apply(
            &client,
            vpc,
            &out,
            &name,
            &crate::cloud::Hooks { progress: &|m: &str| progress.tick(m), may_act: &|| true },
        )
        .await;
        progress.finish();
        report_apply(&name, &place, result, audit)
    })
}

#[cfg(feature = "aws")]
pub fn drift_aws(path: &Path, cloud: &CloudArgs, format: Format) -> Result<u8> {
    let vpc = cloud.aws_vpc.as_deref().context("drift --target aws needs --aws-vpc VPC_ID")?;
    let Some((c, out)) = aws_output(path, None)? else { return Ok(exit::FINDINGS) };
    let rt = runtime()?;
    let diffs = rt.block_on(async {
        let client = crate::cloud::aws::client().await;
        crate::cloud::aws::drift(&client, vpc, &out).await
    })?;
    let name = c.model.policy.name.as_deref().unwrap_or("policy");
    record(
        Kind::Drift,
        serde_json::json!({"policy": name, "target": "aws", "vpc": vpc, "differences": diffs.len(), "findings": findings_json(&diffs)}),
        false,
    )?;
    print_drift(&diffs, format, &format!("the security groups in {vpc} match `{name}`"), ("vpc", vpc))
}

#[cfg(feature = "azure")]
fn azure_nsgs(path: &Path, today: Option<Date>) -> Result<Option<(Compilation, Vec<segc_compiler::lower::azure::Nsg>)>> {
    let Some(c) = load_error_free(path, today, "deployed")? else { return Ok(None) };
    match segc_compiler::lower::azure::lower(&c.model) {
        Ok(n) => Ok(Some((c, n))),
        Err(diags) => {
            print_diagnostics(&c, &diags)?;
            eprintln!("failed: the policy cannot be expressed as NSGs; nothing was changed");
            Ok(None)
        }
    }
}

#[cfg(feature = "azure")]
pub fn deploy_azure(path: &Path, cloud: &CloudArgs, apply: bool, today: Option<Date>) -> Result<u8> {
    let rg = cloud.azure_resource_group.as_deref().context("deploy --target azure needs --azure-resource-group RG")?;
    let location = cloud.azure_location.as_deref().unwrap_or("eastus");
    let Some((c, nsgs)) = azure_nsgs(path, today)? else { return Ok(exit::FINDINGS) };
    let name = c.model.policy.name.clone().unwrap_or_else(|| "policy".into());
    let arm = crate::cloud::azure::Arm::from_env(rg, location)?;
    let audit = serde_json::json!({"policy": name, "target": "azure", "resource_group": rg});
    let place = format!("resource group {rg}");
    runtime()?.block_on(async {
        if !apply {
            let changes: Vec<String> = arm.plan(&nsgs, Some(&name)).await?.iter().map(|c| c.to_string()).collect();
            let mut a = audit.clone();
            a["changes"] = serde_json::json!(changes);
            return report_plan(&name, &place, &changes, a);
        }
        crate::journal::ensure_writable()?;
        let progress = Progress::start();
        let result = arm.apply(&nsgs, &name, &crate::cloud::Hooks { progress: &|m: &str| progress.tick(m), may_act: &|| true }).await;
        progress.finish();
        report_apply(&name, &place, result, audit)
    })
}

#[cfg(feature = "azure")]
pub fn drift_azure(path: &Path, cloud: &CloudArgs, format: Format) -> Result<u8> {
    let rg = cloud.azure_resource_group.as_deref().context("drift --target azure needs --azure-resource-group RG")?;
    let location = cloud.azure_location.as_deref().unwrap_or("eastus");
    let Some((c, nsgs)) = azure_nsgs(path, None)? else { return Ok(exit::FINDINGS) };
    let arm = crate::cloud::azure::Arm::from_env(rg, location)?;
    let name = c.model.policy.name.as_deref().unwrap_or("policy");
    let diffs = runtime()?.block_on(arm.drift(&nsgs, Some(name)))?;
    record(
        Kind::Drift,
        serde_json::json!({"policy": name, "target": "azure", "resource_group": rg, "differences": diffs.len(), "findings": findings_json(&diffs)}),
        false,
    )?;
    print_drift(&diffs, format, &format!("the NSGs in {rg} match `{name}`"), ("resource_group", rg))
}

#[cfg(feature = "gcp")]
fn gcp_output(path: &Path, today: Option<Date>) -> Result<Option<(Compilation, segc_compiler::lower::gcp::Output)>> {
    let Some(c) = load_error_free(path, today, "deployed")? else { return Ok(None) };
    match segc_compiler::lower::gcp::lower(&c.model) {
        Ok(o) => Ok(Some((c, o))),
        Err(diags) => {
            print_diagnostics(&c, &diags)?;
            eprintln!("failed: the policy cannot be expressed as GCP firewall rules; nothing was changed");
            Ok(None)
        }
    }
}

#[cfg(feature = "gcp")]
pub fn deploy_gcp(path: &Path, cloud: &CloudArgs, apply: bool, today: Option<Date>) -> Result<u8> {
    let project = cloud.gcp_project.as_deref().context("deploy --target gcp needs --gcp-project PROJECT")?;
    let Some((c, out)) = gcp_output(path, today)? else { return Ok(exit::FINDINGS) };
    let name = c.model.policy.name.clone().unwrap_or_else(|| "policy".into());
    let audit = serde_json::json!({"policy": name, "target": "gcp", "project": project, "network": cloud.gcp_network});
    let place = format!("project {project}, network {}", cloud.gcp_network);
    runtime()?.block_on(async {
        let gcp = crate::cloud::gcp::Gcp::connect(project, &cloud.gcp_network).await?;
        if !apply {
            let changes: Vec<String> = gcp.plan(&out, &name).await?.iter().map(|c| c.to_string()).collect();
            let mut a = audit.clone();
            a["changes"] = serde_json::json!(changes);
            return report_plan(&name, &place, &changes, a);
        }
        crate::journal::ensure_writable()?;
        let progress = Progress::start();
        let result = gcp.apply(&out, &name, &crate::cloud::Hooks { progress: &|m: &str| progress.tick(m), may_act: &|| true }).await;
        progress.finish();
        report_apply(&name, &place, result, audit)
    })
}

#[cfg(feature = "gcp")]
pub fn drift_gcp(path: &Path, cloud: &CloudArgs, format: Format) -> Result<u8> {
    let project = cloud.gcp_project.as_deref().context("drift --target gcp needs --gcp-project PROJECT")?;
    let Some((c, out)) = gcp_output(path, None)? else { return Ok(exit::FINDINGS) };
    let name = c.model.policy.name.as_deref().unwrap_or("policy");
    let diffs = runtime()?.block_on(async {
        let gcp = crate::cloud::gcp::Gcp::connect(project, &cloud.gcp_network).await?;
        gcp.drift(&out, name).await
    })?;
    record(
        Kind::Drift,
        serde_json::json!({"policy": name, "target": "gcp", "project": project, "network": cloud.gcp_network, "differences": diffs.len(), "findings": findings_json(&diffs)}),
        false,
    )?;
    print_drift(&diffs, format, &format!("the firewall rules of {project} match `{name}`"), ("project", project))
}

#[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
/// A spinner counting applied cloud changes; silent when stderr is not a terminal.
struct Progress(Option<indicatif::ProgressBar>);

#[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
impl Progress {
    fn start() -> Self {
        if !io::stderr().is_terminal() {
            return Self(None);
        }
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} applied: {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        b.enable_steady_tick(std::time::Duration::from_millis(120));
        Self(Some(b))
    }

    fn tick(&self, msg: &str) {
        if let Some(b) = &self.0 {
            b.set_message(msg.to_string());
            b.inc(1);
        }
    }

    fn finish(self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

#[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
/// Prints drift findings (`missing`, `extra`, `changed`) and returns the exit code.
fn print_drift(diffs: &[Finding], format: Format, clean: &str, scope: (&str, &str)) -> Result<u8> {
    let mut o = io::stdout().lock();
    match format {
        Format::Human => {
            if diffs.is_empty() {
                writeln!(o, "no drift: {clean}")?;
            }
            for f in diffs {
                writeln!(o, "{:<8} {}", f.kind.as_str(), f.entry)?;
            }
        }
        _ => {
            writeln!(o, "{}", serde_json::to_string_pretty(&serde_json::json!({scope.0: scope.1, "drift": findings_json(diffs)}))?)?;
        }
    }
    Ok(if diffs.is_empty() { exit::OK } else { exit::FINDINGS })
}

/// Prints a plan, records it, and returns 0.
#[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
fn report_plan(name: &str, place: &str, changes: &[String], audit: serde_json::Value) -> Result<u8> {
    let mut out = io::stdout().lock();
    writeln!(out, "plan for `{name}` on {place}: {} changes", changes.len())?;
    for ch in changes {
        writeln!(out, "  {ch}")?;
    }
    record(Kind::DeployPlan, audit, false)?;
    Ok(exit::OK)
}

#[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
/// Reports a cloud apply (what was applied, or what was before the failure),
/// records it, and returns the exit code.
fn report_apply(
    name: &str,
    place: &str,
    result: Result<Vec<String>, (Vec<String>, anyhow::Error)>,
    mut audit: serde_json::Value,
) -> Result<u8> {
    match result {
        Ok(done) => {
            let mut out = io::stdout().lock();
            writeln!(out, "applied `{name}` on {place}: {} changes", done.len())?;
            for d in &done {
                writeln!(out, "  {d}")?;
            }
            audit["applied"] = serde_json::json!(done);
            record(Kind::DeployApply, audit, true)?;
            Ok(exit::OK)
        }
        Err((done, e)) => {
            eprintln!("error: {e:#}");
            eprintln!("applied before the failure ({}): run `segc deploy --apply` again to finish", done.len());
            for d in &done {
                eprintln!("  {d}");
            }
            audit["applied"] = serde_json::json!(done);
            audit["error"] = serde_json::json!(format!("{e:#}"));
            record(Kind::DeployFailed, audit, false)?;
            Ok(exit::USAGE)
        }
    }
}

#[cfg(not(feature = "aws"))]
pub fn deploy_aws(_: &Path, _: &CloudArgs, _: bool, _: Option<Date>) -> Result<u8> {
    bail!("this segc was built without the `aws` feature: rebuild with `--features aws` to deploy to AWS")
}

#[cfg(not(feature = "aws"))]
pub fn drift_aws(_: &Path, _: &CloudArgs, _: Format) -> Result<u8> {
    bail!("this segc was built without the `aws` feature: rebuild with `--features aws` to read AWS")
}

#[cfg(not(feature = "azure"))]
pub fn deploy_azure(_: &Path, _: &CloudArgs, _: bool, _: Option<Date>) -> Result<u8> {
    bail!("this segc was built without the `azure` feature: rebuild with `--features azure` to deploy to Azure")
}

#[cfg(not(feature = "azure"))]
pub fn drift_azure(_: &Path, _: &CloudArgs, _: Format) -> Result<u8> {
    bail!("this segc was built without the `azure` feature: rebuild with `--features azure` to read Azure")
}

#[cfg(not(feature = "gcp"))]
pub fn deploy_gcp(_: &Path, _: &CloudArgs, _: bool, _: Option<Date>) -> Result<u8> {
    bail!("this segc was built without the `gcp` feature: rebuild with `--features gcp` to deploy to GCP")
}

#[cfg(not(feature = "gcp"))]
pub fn drift_gcp(_: &Path, _: &CloudArgs, _: Format) -> Result<u8> {
    bail!("this segc was built without the `gcp` feature: rebuild with `--features gcp` to read GCP")
}
