//! The command line, as types: clap parses and validates every argument
//! (dates, targets, formats) before a command runs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use segc_compiler::ir::Date;
use segc_compiler::lower::Target;

mod audit;
mod cloud;
mod fleet;
pub use audit::*;
pub use cloud::*;
pub use fleet::*;

/// `--today DATE`: `YYYY-MM-DD`.
pub(crate) fn date_arg(s: &str) -> Result<Date, String> {
    Date::parse(s).ok_or_else(|| format!("`{s}` is not a date (YYYY-MM-DD)"))
}

/// A `--target` of `build`.
fn target_arg(s: &str) -> Result<Target, String> {
    let names: Vec<&str> = Target::ALL.iter().map(|t| t.name()).collect();
    Target::parse(s.trim()).ok_or_else(|| format!("unknown target `{s}` ({})", names.join(", ")))
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

/// A compliance framework for `report --template`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Template {
    /// PCI DSS v4.0: 1.2-1.4, 10.5.1, 11.4.5.
    Pci,
    /// SOC 2: CC6.1, CC6.6, CC6.7, CC7.2.
    Soc2,
    /// GDPR: Art. 25 and 32.
    Gdpr,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeployTarget {
    Host,
    Aws,
    Azure,
    Gcp,
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

/// Where a host deployment goes (`deploy`/`drift --target host`).
#[derive(Args, Debug, Clone)]
pub struct HostArgs {
    /// Interface to attach to (host); repeatable.
    #[arg(long = "iface", value_name = "NAME")]
    pub ifaces: Vec<String>,
    /// Named network namespace, as with `ip -n` (host).
    #[arg(long)]
    pub netns: Option<String>,
    /// Ingress hook (host): auto picks native XDP on NICs and TC on virtual devices (L3 links: always TC).
    #[arg(long, value_enum, default_value_t = XdpModeArg::Auto)]
    pub xdp_mode: XdpModeArg,
    #[command(flatten)]
    pub link: LinkArgs,
}

/// What the host filter does besides the policy.
#[derive(Args, Debug, Clone, Default)]
pub struct LinkArgs {
    /// Let a non-IP EtherType through (hex `0x88cc` or decimal); repeatable, at most 8.
    /// ARP always passes; every other non-IP frame (PPPoE, MPLS, ...) is dropped.
    #[arg(long = "pass-ethertype", value_name = "TYPE", value_parser = ethertype_arg)]
    pub pass_ethertypes: Vec<u16>,
    /// A connection-tracking timeout in seconds, `NAME=SECONDS` (tcp_syn, tcp_established,
    /// tcp_close, udp, udp_replied, icmp, other); repeatable; default Linux's.
    #[arg(long = "ct-timeout", value_name = "NAME=SECONDS", value_parser = timeout_arg)]
    pub timeouts: Vec<(usize, u32)>,
}

impl LinkArgs {
    pub fn options(&self) -> segc_loader::attach::LinkOptions {
        let mut timeouts = [0u32; segc_runtime_bpf::TO_MAX];
        for &(i, secs) in &self.timeouts {
            timeouts[i] = secs;
        }
        segc_loader::attach::LinkOptions { pass_ethertypes: self.pass_ethertypes.clone(), timeouts }
    }
}

fn ethertype_arg(s: &str) -> Result<u16, String> {
    let t = s.trim();
    let v = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16),
        None => t.parse(),
    };
    match v {
        Ok(v) if v >= 0x0600 => Ok(v),
        _ => Err(format!("`{s}` is not an EtherType (0x0600-0xffff, such as 0x88cc)")),
    }
}

/// The names of `--ct-timeout`, in `segc_runtime_bpf::TO_*` order.
pub const TIMEOUT_NAMES: [&str; 7] = ["tcp_syn", "tcp_established", "tcp_close", "udp", "udp_replied", "icmp", "other"];

fn timeout_arg(s: &str) -> Result<(usize, u32), String> {
    let (name, secs) = s.split_once('=').ok_or_else(|| format!("`{s}`: expected NAME=SECONDS"))?;
    let i = TIMEOUT_NAMES
        .iter()
        .position(|n| *n == name.trim())
        .ok_or_else(|| format!("unknown timeout `{name}` ({})", TIMEOUT_NAMES.join(", ")))?;
    let secs: u32 = secs.trim().parse().map_err(|_| format!("`{secs}` is not a number of seconds"))?;
    if secs == 0 {
        return Err("a timeout must be at least 1 second".into());
    }
    Ok((i, secs))
}

/// When `diff` fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// The change newly allows traffic to or from a cde zone.
    Cde,
    /// The change newly allows anything.
    Any,
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
        #[arg(long, value_name = "DATE", value_parser = date_arg)]
        today: Option<Date>,
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
        #[arg(long, value_delimiter = ',', value_parser = target_arg)]
        target: Vec<Target>,
        /// The date review ages are measured against (P104), `YYYY-MM-DD`; default today.
        #[arg(long, value_name = "DATE", value_parser = date_arg)]
        today: Option<Date>,
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
        /// `tcp/PORT`, `udp/PORT`, `icmp/TYPE`, `icmp` (echo request), `ip/PROTO`, or a
        /// service name such as `ssh` (one verdict per port it names).
        service: Option<String>,
        /// A file of `SRC DST PROTO/PORT` lines, or `-` for stdin.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["src", "dst", "service"])]
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
        /// Exit 1 when the change newly allows traffic touching a cde zone (`cde`), or any traffic (`any`).
        #[arg(long, value_enum, value_name = "WHAT")]
        fail_on: Option<FailOn>,
    },
    /// The segmentation-test matrix (PCI 11.4.5): probes that must be denied and that must be allowed.
    Probes {
        #[arg(default_value = "./main.seg")]
        path: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Send the probes whose source is `--from` from this host, compare what answers with what the policy expects, and record the run in the audit log.
        #[arg(long, requires = "from")]
        run: bool,
        /// The zone this host is in (with `--run`).
        #[arg(long, value_name = "ZONE", requires = "run")]
        from: Option<String>,
        /// Probe from inside this network namespace (with `--run`).
        #[arg(long, value_name = "NS", requires = "run")]
        netns: Option<String>,
        /// How long to wait for an answer, per probe.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
        timeout_ms: u64,
        /// At most this many probes a second.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
        rate: u32,
    },
    /// Compliance report: diagram, flows with justification and review status, findings, probe matrix.
    Report {
        #[arg(default_value = "./main.seg")]
        path: PathBuf,
        #[arg(long, value_enum, default_value_t = ReportFormat::Md)]
        format: ReportFormat,
        #[arg(long, value_name = "DATE", value_parser = date_arg)]
        today: Option<Date>,
        /// Arrange the facts by a framework's controls, each with what segc shows and what a person must add.
        #[arg(long, value_enum)]
        template: Option<Template>,
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
        #[command(flatten)]
        host: HostArgs,
        #[command(flatten)]
        cloud: CloudArgs,
        /// Show what would change (the default).
        #[arg(long, conflicts_with = "apply")]
        plan: bool,
        /// Apply the change.
        #[arg(long)]
        apply: bool,
        #[arg(long, value_name = "DATE", value_parser = date_arg)]
        today: Option<Date>,
    },
    /// Live state against compiled state, per rule; exit 1 when they differ.
    Drift {
        path: PathBuf,
        #[arg(long, value_enum)]
        target: DeployTarget,
        #[command(flatten)]
        host: HostArgs,
        #[command(flatten)]
        cloud: CloudArgs,
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
    /// A fleet on etcd: publish a policy revision, roll back, see every agent.
    Fleet {
        #[command(subcommand)]
        action: FleetAction,
    },
    /// One of several fleet controllers: one leads (etcd election), reconciles the clouds, marks silent agents.
    Controller {
        #[command(flatten)]
        etcd: EtcdArgs,
        /// This controller's id (default: host name and process id).
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        cloud: CloudArgs,
        /// Reconcile the clouds the policy binds: report drift, or apply.
        #[arg(long, value_enum)]
        reconcile: Option<ReconcileArg>,
        /// Seconds between reconciles.
        #[arg(long, default_value_t = 30)]
        interval_s: u64,
        /// An agent is silent once its heartbeat is this many seconds old.
        #[arg(long, default_value_t = 10)]
        silent_after_s: u64,
        /// The election lease's TTL in seconds: a dead leader is replaced within about this.
        #[arg(long, default_value_t = 2)]
        lease_ttl: i64,
        /// Loopback address for the Prometheus endpoint (`/metrics`).
        #[arg(long)]
        metrics: Option<std::net::SocketAddr>,
        /// Exit after this many seconds (for tests); default: until SIGTERM.
        #[arg(long, hide = true)]
        run_for: Option<u64>,
        /// Read every blocked https feed again this often (milliseconds)
        /// instead of each feed's `refresh`, and publish a revision when it changed.
        #[arg(long)]
        feed_refresh_ms: Option<u64>,
    },
    /// Host daemon: keeps the policy deployed, reloads it atomically, metrics, audit.
    Agent {
        /// The policy to enforce (a root `.seg` file or folder); or take it from a fleet.
        #[arg(long, required_unless_present = "fleet_name", conflicts_with = "fleet_name")]
        policy: Option<PathBuf>,
        /// Take the policy from this fleet on etcd (with --etcd).
        #[arg(long = "fleet", id = "fleet_name", value_name = "NAME")]
        fleet: Option<String>,
        #[arg(long = "etcd", env = "SEGC_ETCD", value_name = "URL,URL", value_delimiter = ',')]
        etcd: Vec<String>,
        #[arg(long, value_name = "FILE")]
        etcd_cacert: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        etcd_cert: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        etcd_key: Option<PathBuf>,
        /// This host's id in the fleet (default: the host name).
        #[arg(long)]
        host_id: Option<String>,
        #[arg(long = "iface", value_name = "NAME", required = true)]
        ifaces: Vec<String>,
        #[arg(long)]
        netns: Option<String>,
        #[arg(long, value_enum, default_value_t = XdpModeArg::Auto)]
        xdp_mode: XdpModeArg,
        #[command(flatten)]
        link: LinkArgs,
        /// Loopback address for the Prometheus endpoint (`/metrics`).
        #[arg(long, default_value = "127.0.0.1:9464")]
        metrics: std::net::SocketAddr,
        /// How often to look for policy changes and deny events, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// Sample one denied packet in this many (0: none).
        #[arg(long, default_value_t = 100)]
        sample_every: u32,
        /// Seconds deny samples are aggregated per zone pair before one audit event is written.
        #[arg(long, default_value_t = 5)]
        sample_window_s: u64,
        /// Exit after this many seconds (for tests); default: until SIGTERM.
        #[arg(long, hide = true)]
        run_for: Option<u64>,
        /// Make a forbidden system call after locking down (tests: must be killed).
        #[arg(long, hide = true)]
        seccomp_selftest: bool,
        /// Rotate audit segments at this size (tests: rotation under the seccomp filter).
        #[arg(long, hide = true, default_value_t = segc_audit::MAX_SEGMENT_BYTES)]
        audit_segment_bytes: u64,
        /// Read every blocked feed again this often (milliseconds) instead of
        /// each feed's `refresh` (drills and tests).
        #[arg(long)]
        feed_refresh_ms: Option<u64>,
    },
    /// Language server on stdio.
    Lsp,
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), or write one page per command into a folder.
    Man {
        /// Write `segc.1` and `segc-COMMAND.1` for every command into this folder.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

impl From<XdpModeArg> for segc_loader::attach::XdpChoice {
    fn from(mode: XdpModeArg) -> Self {
        use segc_loader::attach::XdpChoice;
        match mode {
            XdpModeArg::Auto => XdpChoice::Auto,
            XdpModeArg::Native => XdpChoice::Native,
            XdpModeArg::Generic => XdpChoice::Generic,
            XdpModeArg::Tc => XdpChoice::Tc,
        }
    }
}
