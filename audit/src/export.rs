//! Events for a SIEM: RFC 5424 syslog, ArcSight CEF, RFC 3339 times.

use crate::{Event, Kind};

/// RFC 3339 UTC for a timestamp.
pub fn rfc3339(ts: u64) -> String {
    let days = (ts / 86_400) as i64;
    let secs = ts % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, (secs / 60) % 60, secs % 60)
}

/// An event as an RFC 5424 syslog message.
pub fn rfc5424(e: &Event, host: &str) -> String {
    let sev = if Kind::parse(&e.kind).is_some_and(Kind::is_warning) { 4 } else { 5 };
    let pri = 13 * 8 + sev; // facility 13: log audit
    let data = serde_json::to_string(&e.data).unwrap_or_default();
    format!(
        "<{pri}>1 {} {host} segc - {} [segc@32473 seq=\"{}\" hash=\"{}\" actor=\"{}\"] {data}",
        rfc3339(e.ts),
        e.kind,
        e.seq,
        e.hash,
        e.actor.replace(['"', '\\', ']'], "_")
    )
}

/// An event as ArcSight CEF.
pub fn cef(e: &Event) -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace('=', "\\=").replace('\n', " ");
    let sev = if Kind::parse(&e.kind).is_some_and(Kind::is_warning) { 6 } else { 3 };
    format!(
        "CEF:0|segc|segc|{}|{}|{}|{sev}|rt={} suser={} cs1Label=hash cs1={} cn1Label=seq cn1={} msg={}",
        env!("CARGO_PKG_VERSION"),
        e.kind,
        e.kind,
        e.ts * 1000,
        esc(&e.actor),
        e.hash,
        e.seq,
        esc(&serde_json::to_string(&e.data).unwrap_or_default())
    )
}

/// A checkpoint as an RFC 5424 message (msgid `checkpoint`; the message is
/// the checkpoint's JSON line, which `audit verify --checkpoint` finds).
pub fn rfc5424_checkpoint(cp: &crate::Checkpoint, host: &str) -> String {
    format!("<109>1 {} {host} segc - checkpoint [segc@32473 seq=\"{}\" hash=\"{}\"] {}", rfc3339(cp.ts), cp.seq, cp.hash, cp.to_line())
}

/// A checkpoint as CEF (the JSON line in `msg`, unescaped so it stays findable).
pub fn cef_checkpoint(cp: &crate::Checkpoint) -> String {
    format!(
        "CEF:0|segc|segc|{}|checkpoint|checkpoint|3|rt={} cn1Label=seq cn1={} msg={}",
        env!("CARGO_PKG_VERSION"),
        cp.ts * 1000,
        cp.seq,
        cp.to_line()
    )
}
