//! The leader's reconcile of the clouds the fleet's policy binds, with the
//! same clients as `segc deploy|drift`: findings are audit events and
//! metrics; with `--reconcile apply` the change is applied, each step only
//! while this controller still leads.

use anyhow::Result;
use segc_audit::Kind;
use serde_json::json;

use super::controller::Config;
#[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
use crate::journal::findings_json;
use crate::journal::record;

/// Drift findings per target (after the apply, with `apply`).
#[cfg_attr(
    not(all(feature = "aws", feature = "azure", feature = "gcp")),
    allow(unused_mut, unused_variables, reason = "a cloud feature left out")
)]
pub async fn clouds(cfg: &Config, c: &segc_compiler::Compilation, apply: bool, may_act: &dyn Fn() -> bool) -> Result<Vec<(String, usize)>> {
    let mut out = Vec::new();
    let policy = c.model.policy.name.clone().unwrap_or_else(|| "policy".into());
    let hooks = crate::cloud::Hooks { progress: &|_: &str| {}, may_act };
    #[cfg(feature = "aws")]
    if let Some(vpc) = &cfg.cloud.aws_vpc {
        if c.model.zones.iter().any(|z| z.bindings.aws_security_group.is_some()) {
            let sg = segc_compiler::lower::aws::lower(&c.model)
                .map_err(|d| anyhow::anyhow!("the policy cannot be expressed as security groups: {}", d[0].message))?;
            let client = crate::cloud::aws::client().await;
            if apply && may_act() {
                let r = crate::cloud::aws::apply(&client, vpc, &sg, &policy, &hooks).await;
                applied(cfg, "aws", r)?;
            }
            let f = crate::cloud::aws::drift(&client, vpc, &sg).await?;
            record(
                Kind::Drift,
                json!({"fleet": cfg.etcd.fleet, "controller": cfg.id, "target": "aws", "vpc": vpc, "differences": f.len(), "findings": findings_json(&f)}),
                false,
            )?;
            out.push(("aws".to_string(), f.len()));
        }
    }
    #[cfg(feature = "azure")]
    if let Some(rg) = &cfg.cloud.azure_resource_group {
        if c.model.zones.iter().any(|z| z.bindings.azure_nsg.is_some()) {
            let nsgs = segc_compiler::lower::azure::lower(&c.model)
                .map_err(|d| anyhow::anyhow!("the policy cannot be expressed as NSGs: {}", d[0].message))?;
            let arm = crate::cloud::azure::Arm::from_env(rg, cfg.cloud.azure_location.as_deref().unwrap_or("eastus"))?;
            if apply && may_act() {
                let r = arm.apply(&nsgs, &policy, &hooks).await;
                applied(cfg, "azure", r)?;
            }
            let f = arm.drift(&nsgs, Some(&policy)).await?;
            record(
                Kind::Drift,
                json!({"fleet": cfg.etcd.fleet, "controller": cfg.id, "target": "azure", "resource_group": rg, "differences": f.len(), "findings": findings_json(&f)}),
                false,
            )?;
            out.push(("azure".to_string(), f.len()));
        }
    }
    #[cfg(feature = "gcp")]
    if let Some(project) = &cfg.cloud.gcp_project {
        if c.model.zones.iter().any(|z| z.bindings.gcp_tag.is_some()) {
            let rules = segc_compiler::lower::gcp::lower(&c.model)
                .map_err(|d| anyhow::anyhow!("the policy cannot be expressed as GCP firewall rules: {}", d[0].message))?;
            let gcp = crate::cloud::gcp::Gcp::connect(project, &cfg.cloud.gcp_network).await?;
            if apply && may_act() {
                let r = gcp.apply(&rules, &policy, &hooks).await;
                applied(cfg, "gcp", r)?;
            }
            let f = gcp.drift(&rules, &policy).await?;
            record(
                Kind::Drift,
                json!({"fleet": cfg.etcd.fleet, "controller": cfg.id, "target": "gcp", "project": project, "network": cfg.cloud.gcp_network, "differences": f.len(), "findings": findings_json(&f)}),
                false,
            )?;
            out.push(("gcp".to_string(), f.len()));
        }
    }
    let _ = (&hooks, &policy, apply);
    Ok(out)
}

/// Records an apply the leader made (or how it stopped).
#[allow(dead_code, reason = "used only when a cloud feature is built")]
fn applied(cfg: &Config, target: &str, r: Result<Vec<String>, (Vec<String>, anyhow::Error)>) -> Result<()> {
    match r {
        Ok(done) => {
            record(Kind::DeployApply, json!({"fleet": cfg.etcd.fleet, "controller": cfg.id, "target": target, "applied": done}), true)
        }
        Err((done, e)) => {
            eprintln!("segc controller {}: {target} apply stopped: {e:#}", cfg.id);
            record(
                Kind::DeployFailed,
                json!({"fleet": cfg.etcd.fleet, "controller": cfg.id, "target": target, "applied": done, "error": format!("{e:#}")}),
                false,
            )
        }
    }
}
