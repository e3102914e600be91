//! The `segc` command line: argument parsing (clap), file IO, rendering and exit
//! codes around the pure compiler.

pub mod agent;
#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "azure")]
pub mod azure;
pub mod cloud;
pub mod commands;
pub mod fsload;
pub mod graph;
pub mod render;
pub mod report;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Exit codes, as the SPEC fixes them.
pub mod exit {
    /// Clean.
    pub const OK: u8 = 0;
    /// The policy has errors (or warnings under `--deny-warnings`), a test failed,
    /// or drift was found.
    pub const FINDINGS: u8 = 1;
    /// Usage, IO or environment error.
    pub const USAGE: u8 = 2;
}

#[derive(Parser, Debug)]
#[command(name = "segc", version, about = "Compile network-segmentation policy into enforcement, PCI-DSS checked")]
#[command(propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
    Sarif,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Html,
    Md,
    Pdf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Svg,
}

#[derive(Subcommand, Debug)]
pub enum AuditAction {
    /// Check the hash chain and the head; exit 1 naming the first bad event.
    Verify,
    /// List events.
    Show {
        /// Only events of this kind (`build`, `deploy.apply`, ...).
        #[arg(long)]
        kind: Option<String>,
        /// Only events on or after this date (YYYY-MM-DD, UTC).
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        /// Only events before this date (YYYY-MM-DD, UTC).
        #[arg(long, value_name = "DATE")]
        until: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Export events for a SIEM, to stdout or to a syslog server over TCP.
    Export {
        #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
        format: ExportFormat,
        /// Send to this syslog server (HOST:PORT, TCP, octet-counted frames).
        #[arg(long, value_name = "HOST:PORT")]
        syslog: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Rfc5424,
    Cef,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeployTarget {
    Host,
    Aws,
    Azure,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum XdpModeArg {
    Auto,
    Native,
    Generic,
    Tc,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// The pure reference evaluator.
    Reference,
    /// The eBPF program in the kernel, through BPF_PROG_TEST_RUN.
    Bpf,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Parse, resolve, check and analyse a policy, and run its asserts and tests.
    Check {
        /// A root `.seg` file, or a folder holding `main.seg`.
        #[arg(default_value = "./main.seg")]
        path: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// The date review ages are measured against (P104), `YYYY-MM-DD`; default today.
        #[arg(long, value_name = "DATE")]
        today: Option<String>,
        /// Treat warnings as errors for the exit code.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Check, then write the enforcement artifacts (refuses on any error).
    Build {
        #[arg(default_value = "./main.seg")]
        path: PathBuf,
        /// Output folder.
        #[arg(short = 'o', long = "out", default_value = "out")]
        out: PathBuf,
        /// Comma-separated: bpf, aws, azure, nft, k8s, gcp. Default: bpf and nft,
        /// and each target some zone binds.
        #[arg(long, value_delimiter = ',')]
        target: Vec<String>,
        /// The date review ages are measured against (P104), `YYYY-MM-DD`; default today.
        #[arg(long, value_name = "DATE")]
        today: Option<String>,
    },
    /// Run the `test` blocks, one line per case.
    Test {
        #[arg(default_value = "./main.seg")]
        path: PathBuf,
        /// Name the flows that no test case exercises.
        #[arg(long)]
        coverage: bool,
        /// With `--coverage`, fail when fewer than PCT percent of flows are exercised.
        #[arg(long, value_name = "PCT", requires = "coverage")]
        min_coverage: Option<f64>,
    },
    /// Format policy files canonically (comments kept).
    Fmt {
        /// A `.seg` file, a folder (every `.seg` file in it), or `-` for stdin to stdout.
        #[arg(default_value = "./main.seg")]
        path: PathBuf,
        /// Change nothing; exit 1 if a file is not formatted.
        #[arg(long)]
        check: bool,
    },
    /// The verdict for one packet, or for every packet in a file.
    Explain {
        path: PathBuf,
        /// Source address.
        src: Option<String>,
        /// Destination address.
        dst: Option<String>,
        /// `tcp/PORT`, `udp/PORT`, `icmp/TYPE`, `icmp` (echo request) or `ip/PROTO`.
        proto: Option<String>,
        /// A file of `SRC DST PROTO/PORT` lines, or `-` for stdin.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["src", "dst", "proto"])]
        packets: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Engine::Reference)]
        engine: Engine,
    },
    /// What a policy change newly allows and newly denies (change control, PCI 1.2.2).
    Diff {
        old: PathBuf,
        new: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// The segmentation-test matrix (PCI 11.4.5): probes that must be denied and that must be allowed.
    Probes {
        #[arg(default_value = "./main.seg")]
        path: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Compliance report: diagram, flows with justification and review status, findings, probe matrix.
    Report {
        #[arg(default_value = "./main.seg")]
        path: PathBuf,
        #[arg(long, value_enum, default_value_t = ReportFormat::Md)]
        format: ReportFormat,
        #[arg(long, value_name = "DATE")]
        today: Option<String>,
    },
    /// The zone graph, cde highlighted, edges labelled with what they allow.
    Graph {
        #[arg(default_value = "./main.seg")]
        path: PathBuf,
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Show the change set, then apply it (`host`: attach and pin the eBPF filter).
    Deploy {
        path: PathBuf,
        #[arg(long, value_enum)]
        target: DeployTarget,
        /// Interface to attach to (host); repeatable.
        #[arg(long = "iface", value_name = "NAME")]
        ifaces: Vec<String>,
        /// Named network namespace, as with `ip -n` (host).
        #[arg(long)]
        netns: Option<String>,
        /// Ingress hook (host): auto picks native XDP on NICs and TC on virtual devices.
        #[arg(long, value_enum, default_value_t = XdpModeArg::Auto)]
        xdp_mode: XdpModeArg,
        /// The VPC whose security groups are managed (aws).
        #[arg(long, value_name = "VPC_ID")]
        aws_vpc: Option<String>,
        /// The resource group whose NSGs are managed (azure).
        #[arg(long, value_name = "RG")]
        azure_resource_group: Option<String>,
        /// The location of NSGs segc creates (azure).
        #[arg(long, value_name = "LOC")]
        azure_location: Option<String>,
        /// Show what would change (the default).
        #[arg(long, conflicts_with = "apply")]
        plan: bool,
        /// Apply the change.
        #[arg(long)]
        apply: bool,
        #[arg(long, value_name = "DATE")]
        today: Option<String>,
    },
    /// Live state against compiled state, per rule; exit 1 when they differ.
    Drift {
        path: PathBuf,
        #[arg(long, value_enum)]
        target: DeployTarget,
        #[arg(long)]
        netns: Option<String>,
        /// The VPC whose security groups are compared (aws).
        #[arg(long, value_name = "VPC_ID")]
        aws_vpc: Option<String>,
        /// The resource group whose NSGs are compared (azure).
        #[arg(long, value_name = "RG")]
        azure_resource_group: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Detach and unpin the host filter.
    Undeploy {
        #[arg(long, value_enum)]
        target: DeployTarget,
        #[arg(long)]
        netns: Option<String>,
        /// Only these interfaces; default all.
        #[arg(long = "iface", value_name = "NAME")]
        ifaces: Vec<String>,
    },
    /// The audit log: verify the chain, list events, export for a SIEM.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Host daemon: keeps the policy deployed, reloads it atomically, metrics, audit.
    Agent {
        #[arg(long)]
        policy: PathBuf,
        #[arg(long = "iface", value_name = "NAME", required = true)]
        ifaces: Vec<String>,
        #[arg(long)]
        netns: Option<String>,
        #[arg(long, value_enum, default_value_t = XdpModeArg::Auto)]
        xdp_mode: XdpModeArg,
        /// Loopback address for the Prometheus endpoint (`/metrics`).
        #[arg(long, default_value = "127.0.0.1:9464")]
        metrics: std::net::SocketAddr,
        /// How often to look for policy changes and deny events, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// Record one denied packet in this many (0: none).
        #[arg(long, default_value_t = 100)]
        sample_every: u32,
        /// Exit after this many seconds (for tests); default: until SIGTERM.
        #[arg(long, hide = true)]
        run_for: Option<u64>,
        /// Make a forbidden system call after locking down (tests: must be killed).
        #[arg(long, hide = true)]
        seccomp_selftest: bool,
    },
    /// Language server on stdio.
    Lsp,
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff).
    Man,
}

/// Runs the CLI and returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    match commands::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::USAGE
        }
    }
}
