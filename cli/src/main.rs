//! The one segc binary.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: a build allocates and frees millions of small strings and
/// vectors on several threads at once, where it is about a third faster
/// overall than glibc's allocator (docs/BENCHMARKS.md).
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
