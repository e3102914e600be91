//! The segc compiler: pure functions from policy text to diagnostics, a checked
//! policy model and the reference evaluator. No IO, no terminals, no syscalls:
//! the CLI, the LSP and the loader wrap it.

pub mod diag;
pub mod syntax;
