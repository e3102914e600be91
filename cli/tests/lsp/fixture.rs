//! The policy the LSP tests edit.
#![allow(dead_code, reason = "each test binary uses part of it")]

pub const MAIN: &str = r#"policy "lsp" {
  review_interval = 180d
}
use std.services.{https, postgres}
import "zones.seg"

flow dmz -> vault on postgres {
  justification = "orders"
  reviewed = 2026-10-01
}
flow dmz -> dmz on https
"#;

pub const ZONES: &str = r#"zone dmz {
  cidrs = [10.0.1.0/24]
  scope = connected
  owner = "web"
}
zone vault {
  cidrs = [10.0.9.0/24]
  scope = cde
}
"#;
