//! The one segc binary.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: a build allocates and frees millions of small strings and
/// vectors on several threads at once, where it is about a third faster
/// overall than glibc's allocator (docs/BENCHMARKS.md). Built without
/// transparent huge pages (`no_thp`): each is zeroed whole on first touch,
/// and on a VM whose balloon has handed free memory back to the host that
/// costs about 2.5 ms a megabyte; a one-shot command touches only fresh
/// memory (a 1000-zone build: 0.38 s with them after a few idle seconds,
/// 0.21 s without, back-to-back runs alike; DECISIONS 62).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Like other Unix tools, end quietly when the reader of our output goes
    // away (`segc report | head`), instead of failing on EPIPE.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = segc::Cli::parse();
    ExitCode::from(segc::run(cli))
}
