//! The one wall clock. Everything that stamps or ages something (audit events,
//! review ages, `--today`'s default, report dates) reads it here.

use segc_compiler::ir::Date;

/// Seconds since the Unix epoch, UTC.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Seconds since the Unix epoch, with the fraction (heartbeats, latencies).
pub fn unix_seconds() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Today's date in UTC.
pub fn today() -> Date {
    Date::from_days((unix_now() / 86_400) as i64)
}
