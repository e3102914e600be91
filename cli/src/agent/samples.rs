//! Denied-packet samples, off the reload path: a thread of its own drains the
//! filter's ring buffer, aggregates per zone pair, and writes at most one
//! audit event per zone pair and window (the count, and a few packets as
//! examples), for at most [`MAX_PAIRS`] pairs a window plus one event that
//! sums up the rest. A flood of denied traffic costs the log a few events a
//! window, whatever its rate (the kernel samples one denied packet in
//! `--sample-every`, and a full ring buffer drops samples, never packets).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use segc_audit::{Kind, Log};
use serde_json::{json, Value};

use super::metrics::Stats;
use super::STOP;

/// Zone pairs written per window; the rest are summed up in one event.
pub const MAX_PAIRS: usize = 16;
/// Example packets kept per pair and window.
pub const EXAMPLES: usize = 3;
/// Samples read per drain: the thread yields between batches.
const BATCH: usize = 4096;

#[derive(Default)]
struct Pair {
    count: u64,
    examples: Vec<Value>,
}

/// Samples of one window, by (source zone id, destination zone id).
#[derive(Default)]
pub struct Window {
    pairs: BTreeMap<(u64, u64), Pair>,
}

impl Window {
    pub fn add(&mut self, sample: Value) {
        let id = |k: &str| sample[k].as_u64().unwrap_or(0);
        let p = self.pairs.entry((id("src_zone"), id("dst_zone"))).or_default();
        p.count += 1;
        if p.examples.len() < EXAMPLES {
            p.examples.push(sample);
        }
    }

    /// The audit events for this window: the busiest pairs first.
    pub fn events(self, window: Duration, zone: &dyn Fn(u64) -> String) -> Vec<Value> {
        let mut pairs: Vec<((u64, u64), Pair)> = self.pairs.into_iter().collect();
        pairs.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(&b.0)));
        let rest: Vec<((u64, u64), Pair)> = if pairs.len() > MAX_PAIRS { pairs.split_off(MAX_PAIRS) } else { Vec::new() };
        let secs = window.as_secs_f64();
        let mut out: Vec<Value> = pairs
            .into_iter()
            .map(|((s, d), p)| {
                json!({"window_s": secs, "src_zone": zone(s), "dst_zone": zone(d), "sampled": p.count, "examples": p.examples})
            })
            .collect();
        if !rest.is_empty() {
            out.push(json!({"window_s": secs, "other_pairs": rest.len(), "sampled": rest.iter().map(|(_, p)| p.count).sum::<u64>()}));
        }
        out
    }
}

/// Drains, aggregates and records until the agent stops.
pub fn run(mut events: segc_loader::Events, log: Arc<Log>, stats: Arc<Mutex<Stats>>, window: Duration) {
    let mut current = Window::default();
    let mut started = Instant::now();
    loop {
        let batch = segc_loader::drain(&mut events, BATCH);
        let n = batch.len();
        for e in batch {
            current.add(e);
        }
        if let Ok(mut s) = stats.lock() {
            s.deny_samples += n as u64;
        }
        let stopping = STOP.load(Ordering::SeqCst);
        if started.elapsed() >= window || stopping {
            let names = stats.lock().map(|s| s.zones.0.clone()).unwrap_or_default();
            let zone = |id: u64| id.checked_sub(1).and_then(|i| names.get(i as usize)).cloned().unwrap_or_else(|| "(none)".into());
            for e in std::mem::take(&mut current).events(started.elapsed(), &zone) {
                if log.append(Kind::DenySample, e).is_err() {
                    if let Ok(mut s) = stats.lock() {
                        s.audit_errors += 1;
                    }
                }
            }
            started = Instant::now();
        }
        if stopping {
            return;
        }
        if n < BATCH {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_a_few_events_a_window() {
        let mut w = Window::default();
        for i in 0..100_000u64 {
            // One noisy pair, and 40 pairs with a little each.
            let (s, d) = if i % 1000 == 0 { (2 + i / 1000 % 40, 1) } else { (1, 2) };
            w.add(json!({"src_zone": s, "dst_zone": d, "dport": i % 65536}));
        }
        let events = w.events(Duration::from_secs(5), &|id| format!("z{id}"));
        assert_eq!(events.len(), MAX_PAIRS + 1, "at most MAX_PAIRS pairs, then one sum");
        assert_eq!(events[0]["src_zone"], "z1");
        assert_eq!(events[0]["sampled"], 99_900);
        assert_eq!(events[0]["examples"].as_array().map(Vec::len), Some(EXAMPLES));
        let total: u64 = events.iter().map(|e| e["sampled"].as_u64().unwrap_or(0)).sum();
        assert_eq!(total, 100_000, "nothing uncounted");
        let bytes: usize = events.iter().map(|e| e.to_string().len()).sum();
        assert!(bytes < 8_000, "a window of a 100k-sample flood is {bytes} bytes of log");
    }
}
