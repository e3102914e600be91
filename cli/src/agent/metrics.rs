//! The agent's Prometheus endpoint: a collector that reads the filter's
//! counters on each scrape, and a small HTTP server on a loopback address.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use segc_loader::attach;
use segc_runtime_bpf as rt;

/// What the agent has done, for the metrics.
#[derive(Debug, Default)]
pub struct Stats {
    pub zones: ZoneNames,
    pub epoch: u64,
    pub swaps: u64,
    pub refused: u64,
    pub last_swap_seconds: f64,
    pub audit_errors: u64,
    pub deny_samples: u64,
    pub reattached: u64,
    /// Entries of the live policy per map: (map, entries, capacity for one policy).
    pub fill: Vec<(&'static str, usize, usize)>,
    /// Each blocked feed, by name.
    pub feeds: std::collections::BTreeMap<String, FeedStat>,
}

/// A blocked feed's state, for the metrics.
#[derive(Debug, Default)]
pub struct FeedStat {
    /// Prefixes of the copy in force.
    pub prefixes: usize,
    /// When that copy was read (Unix seconds), or read again unchanged.
    pub at: f64,
    pub refreshes: u64,
    /// Refusals by reason (`fetch`, `parse`, `max_prefixes`, `shrink`, `swap`).
    pub refusals: std::collections::BTreeMap<&'static str, u64>,
}

impl FeedStat {
    pub fn new(prefixes: usize, at: f64) -> FeedStat {
        FeedStat { prefixes, at, ..FeedStat::default() }
    }
}

#[derive(Debug)]
pub struct Metrics {
    pub stats: Arc<Mutex<Stats>>,
    pub netns: Option<String>,
}

/// Zone names of the live policy, by runtime zone id (index + 1).
#[derive(Debug, Default)]
pub struct ZoneNames(pub Vec<String>);

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, labels: &[(&str, &str)], values: &[u64]) -> Result<(), std::fmt::Error> {
    let c0 = ConstCounter::new(0u64);
    let mut me = enc.encode_descriptor(name, help, None, c0.metric_type())?;
    if labels.is_empty() {
        ConstCounter::new(values[0]).encode(me)?;
        return Ok(());
    }
    for (i, (k, v)) in labels.iter().enumerate() {
        let set = vec![((*k).to_string(), (*v).to_string())];
        ConstCounter::new(values[i]).encode(me.encode_family(&set)?)?;
    }
    Ok(())
}

impl Collector for Metrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.stats.lock().map_err(|_| std::fmt::Error)?;
        // The filter's own per-CPU counters, summed, read on each scrape.
        let c = attach::counters(self.netns.as_deref()).unwrap_or_default();
        let get = |i: u32| c.get(i as usize).copied().unwrap_or((0, 0));
        let classes = [
            ("verdict", "allow"),
            ("verdict", "deny"),
            ("verdict", "established"),
            ("verdict", "not_ip"),
            ("verdict", "malformed"),
            ("verdict", "neighbour_discovery"),
            ("verdict", "ethertype_dropped"),
            ("verdict", "invalid"),
        ];
        let idx = [
            rt::CNT_ALLOW,
            rt::CNT_DENY,
            rt::CNT_ESTABLISHED,
            rt::CNT_NOT_IP,
            rt::CNT_MALFORMED,
            rt::CNT_ND,
            rt::CNT_ETHERTYPE,
            rt::CNT_INVALID,
        ];
        let packets: Vec<u64> = idx.iter().map(|&i| get(i).0).collect();
        let bytes: Vec<u64> = idx.iter().map(|&i| get(i).1).collect();
        counter(&mut enc, "segc_packets", "Packets judged by the filter, by verdict", &classes, &packets)?;
        counter(&mut enc, "segc_bytes", "Bytes judged by the filter, by verdict", &classes, &bytes)?;
        // Per zone pair, for the live epoch.
        let pairs = attach::pair_counters(self.netns.as_deref(), s.epoch as u32).unwrap_or_default();
        let name = |id: u32| id.checked_sub(1).and_then(|i| s.zones.0.get(i as usize)).cloned().unwrap_or_else(|| "(none)".into());
        for (metric, help, pick) in [
            ("segc_zone_pair_packets", "Packets judged by the policy, by zone pair and verdict", 0usize),
            ("segc_zone_pair_bytes", "Bytes judged by the policy, by zone pair and verdict", 1usize),
        ] {
            let c0 = ConstCounter::new(0u64);
            let mut me = enc.encode_descriptor(metric, help, None, c0.metric_type())?;
            for p in &pairs {
                let labels = vec![
                    ("src_zone".to_string(), name(p.src_zone)),
                    ("dst_zone".to_string(), name(p.dst_zone)),
                    ("verdict".to_string(), if p.verdict == 0 { "allow" } else { "deny" }.to_string()),
                ];
                ConstCounter::new(if pick == 0 { p.packets } else { p.bytes }).encode(me.encode_family(&labels)?)?;
            }
        }
        counter(&mut enc, "segc_policy_swaps", "Policies swapped in by the agent", &[], &[s.swaps])?;
        counter(&mut enc, "segc_policy_refused", "Policy changes refused because they had errors", &[], &[s.refused])?;
        counter(&mut enc, "segc_audit_write_errors", "Audit events that could not be written", &[], &[s.audit_errors])?;
        counter(&mut enc, "segc_deny_samples", "Sampled deny events drained into the audit log", &[], &[s.deny_samples])?;
        counter(&mut enc, "segc_reattached", "Interfaces the agent attached again after they lost the filter", &[], &[s.reattached])?;
        encode_feeds(&mut enc, &s, get(rt::CNT_FEED).0)?;
        let g = ConstGauge::new(s.epoch as i64);
        g.encode(enc.encode_descriptor("segc_policy_epoch", "The live policy epoch", None, g.metric_type())?)?;
        let g = ConstGauge::new(s.last_swap_seconds);
        g.encode(enc.encode_descriptor("segc_swap_duration_seconds", "How long the last swap took", None, g.metric_type())?)?;
        let g0 = ConstGauge::new(0.0f64);
        let mut me = enc.encode_descriptor(
            "segc_map_fill_ratio",
            "Entries of the live policy over the capacity of each of its maps",
            None,
            g0.metric_type(),
        )?;
        for &(map, used, cap) in &s.fill {
            let labels = vec![("map".to_string(), map.to_string())];
            ConstGauge::new(used as f64 / cap.max(1) as f64).encode(me.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// The feed metrics: prefixes and age of the copy in force, refreshes,
/// refusals by reason, packets a feed denied.
fn encode_feeds(enc: &mut DescriptorEncoder, s: &Stats, blocked_packets: u64) -> Result<(), std::fmt::Error> {
    counter(enc, "segc_feed_blocked_packets", "Packets denied because an address is in a blocked feed", &[], &[blocked_packets])?;
    let now = segc_fsio::clock::unix_seconds();
    let g0 = ConstGauge::new(0.0f64);
    for (metric, help) in [
        ("segc_feed_prefixes", "Prefixes of each blocked feed's copy in force"),
        ("segc_feed_age_seconds", "Seconds since each blocked feed was last read successfully"),
    ] {
        let mut me = enc.encode_descriptor(metric, help, None, g0.metric_type())?;
        for (name, f) in &s.feeds {
            let v = if metric == "segc_feed_prefixes" { f.prefixes as f64 } else { (now - f.at).max(0.0) };
            ConstGauge::new(v).encode(me.encode_family(&vec![("feed".to_string(), name.clone())])?)?;
        }
    }
    let c0 = ConstCounter::new(0u64);
    let mut me = enc.encode_descriptor("segc_feed_refreshes", "Feed refreshes swapped in", None, c0.metric_type())?;
    for (name, f) in &s.feeds {
        ConstCounter::new(f.refreshes).encode(me.encode_family(&vec![("feed".to_string(), name.clone())])?)?;
    }
    let mut me =
        enc.encode_descriptor("segc_feed_refusals", "Feed reads refused (the last good copy stays), by reason", None, c0.metric_type())?;
    for (name, f) in &s.feeds {
        for (reason, n) in &f.refusals {
            let labels = vec![("feed".to_string(), name.clone()), ("reason".to_string(), (*reason).to_string())];
            ConstCounter::new(*n).encode(me.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// OpenMetrics text, as prometheus-client writes it, in the Prometheus text
/// format 0.0.4 that every scraper and `promtool check metrics` read: counter
/// families are named with their `_total` suffix, and `# EOF` goes.
fn to_prometheus_text(open_metrics: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        open_metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(rewritten.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

pub fn serve(listener: TcpListener, registry: Arc<Registry>) {
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut req = [0u8; 1024];
        let n = s.read(&mut req).unwrap_or(0);
        let path_ok = String::from_utf8_lossy(&req[..n]).starts_with("GET /metrics");
        let mut body = String::new();
        let (status, ctype) = if path_ok && prometheus_client::encoding::text::encode(&mut body, &registry).is_ok() {
            body = to_prometheus_text(&body);
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8")
        } else {
            body = "not found\n".into();
            ("404 Not Found", "text/plain")
        };
        let _ =
            write!(s, "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn openmetrics_becomes_prometheus_text() {
        let om = "# HELP a_packets Packets\n# TYPE a_packets counter\na_packets_total{v=\"x\"} 3\n# HELP g A gauge\n# TYPE g gauge\ng 1\n# EOF\n";
        let text = super::to_prometheus_text(om);
        assert_eq!(text, "# HELP a_packets_total Packets\n# TYPE a_packets_total counter\na_packets_total{v=\"x\"} 3\n# HELP g A gauge\n# TYPE g gauge\ng 1\n");
    }
}
