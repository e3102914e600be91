//! The fleet's arguments (SPEC §6): how to reach etcd, `segc fleet …`, and
//! what the controllers' leader does with the clouds.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::Format;

/// How to reach etcd, as etcdctl takes it (SPEC §6).
#[derive(Args, Debug, Clone, Default)]
pub struct EtcdArgs {
    /// etcd endpoints, comma-separated (`http://127.0.0.1:2379`, or `https://` with TLS).
    #[arg(long = "etcd", env = "SEGC_ETCD", value_name = "URL,URL", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// CA certificate (PEM) that signed the etcd members' certificates.
    #[arg(long, value_name = "FILE")]
    pub etcd_cacert: Option<PathBuf>,
    /// Client certificate (PEM) for etcd.
    #[arg(long, value_name = "FILE")]
    pub etcd_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, value_name = "FILE")]
    pub etcd_key: Option<PathBuf>,
    /// The fleet: keys live under `/segc/<fleet>/`.
    #[arg(long, default_value = "default")]
    pub fleet: String,
}

#[derive(Subcommand, Debug)]
pub enum FleetAction {
    /// Check and build (refused on any error), then publish as the fleet's new revision.
    Publish {
        path: PathBuf,
        /// Revisions kept for rollback; older ones are deleted.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
        keep: u64,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// The leader, the current revision and hash, and every agent.
    Status {
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// Publish an earlier revision again.
    Rollback {
        revision: u64,
        /// Revisions kept for rollback; older ones are deleted.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
        keep: u64,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
}

/// What the fleet's leader does with the clouds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReconcileArg {
    /// Report drift (audit events, metrics).
    Drift,
    /// Apply the fleet's policy.
    Apply,
}
