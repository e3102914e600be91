//! The nftables fallback, for hosts where eBPF cannot be used: the compiled
//! ruleset (table `inet segc`) loaded with `nft -f`, one atomic transaction.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::Error;

/// Loads a ruleset with `nft -f -`: all of it or, on any error, nothing.
pub fn apply(ruleset: &str) -> Result<(), Error> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Nft(format!("cannot run `nft` (install nftables): {e}")))?;
    child
        .stdin
        .take()
        .ok_or_else(|| Error::Nft("no stdin for nft".into()))?
        .write_all(ruleset.as_bytes())
        .map_err(|e| Error::Nft(e.to_string()))?;
    let st = child.wait().map_err(|e| Error::Nft(e.to_string()))?;
    if !st.success() {
        return Err(Error::Nft(format!("nft -f failed ({st}); nothing was changed")));
    }
    Ok(())
}

/// Whether the fallback table is loaded.
pub fn loaded() -> bool {
    Command::new("nft")
        .args(["list", "table", "inet", "segc"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Removes the fallback table if it is there; returns whether it was.
pub fn remove() -> Result<bool, Error> {
    if !loaded() {
        return Ok(false);
    }
    let st = Command::new("nft").args(["delete", "table", "inet", "segc"]).status().map_err(|e| Error::Nft(e.to_string()))?;
    if !st.success() {
        return Err(Error::Nft("cannot delete the nftables table inet segc".into()));
    }
    Ok(true)
}
