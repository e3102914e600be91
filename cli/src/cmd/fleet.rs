//! `segc fleet publish|status|rollback` and `segc controller` (SPEC §6); the
//! work is in `crate::fleet`, behind the `fleet` cargo feature.

use anyhow::Result;

#[cfg(feature = "fleet")]
use crate::EtcdArgs;
use crate::FleetAction;
#[cfg(feature = "fleet")]
use crate::{CloudArgs, ReconcileArg};

#[cfg(feature = "fleet")]
fn etcd(a: EtcdArgs) -> crate::fleet::Etcd {
    crate::fleet::Etcd::from(a)
}

#[cfg(feature = "fleet")]
pub fn fleet(action: FleetAction) -> Result<u8> {
    match action {
        FleetAction::Publish { path, keep, etcd: e } => crate::fleet::publish(&path, keep, &etcd(e)),
        FleetAction::Status { format, etcd: e } => crate::fleet::status(&etcd(e), format),
        FleetAction::Rollback { revision, keep, etcd: e } => crate::fleet::rollback(revision, keep, &etcd(e)),
    }
}

/// The controller's options, as the command line gives them.
#[cfg(feature = "fleet")]
pub struct ControllerArgs {
    pub etcd: EtcdArgs,
    pub id: Option<String>,
    pub cloud: CloudArgs,
    pub reconcile: Option<ReconcileArg>,
    pub interval_s: u64,
    pub silent_after_s: u64,
    pub lease_ttl: i64,
    pub metrics: Option<std::net::SocketAddr>,
    pub run_for: Option<u64>,
    pub feed_refresh_ms: Option<u64>,
}

#[cfg(feature = "fleet")]
pub fn controller(a: ControllerArgs) -> Result<u8> {
    use crate::fleet::controller::{Config, Reconcile};
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    crate::fleet::controller::run(Config {
        etcd: etcd(a.etcd),
        id: a.id.unwrap_or_else(|| format!("{}-{}", host.trim(), std::process::id())),
        cloud: a.cloud,
        reconcile: a.reconcile.map(|r| match r {
            ReconcileArg::Drift => Reconcile::Drift,
            ReconcileArg::Apply => Reconcile::Apply,
        }),
        interval: std::time::Duration::from_secs(a.interval_s.max(1)),
        silent_after: std::time::Duration::from_secs(a.silent_after_s.max(1)),
        lease_ttl: a.lease_ttl.max(1),
        metrics: a.metrics,
        run_for: a.run_for.map(std::time::Duration::from_secs),
        feed_refresh: a.feed_refresh_ms.map(|ms| std::time::Duration::from_millis(ms.max(100))),
    })
}

#[cfg(not(feature = "fleet"))]
pub fn fleet(_: FleetAction) -> Result<u8> {
    anyhow::bail!("this segc was built without the `fleet` feature: rebuild with `--features fleet` to use a fleet on etcd")
}
