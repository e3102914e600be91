//! `cargo bench -p segc --bench lsp`: edit-to-diagnostics latency of `segc lsp`
//! on a generated 2000-flow file, over many edits: the time from sending
//! `didChange` to receiving that file's `publishDiagnostics`.

#[path = "../tests/lsp/client.rs"]
mod client;

use std::time::{Duration, Instant};

use client::{uri, workspace, Client};

fn policy(flows: usize, edit: usize) -> String {
    let zones = 200;
    let mut s = String::from("policy \"lsp-bench\" {}\n");
    for i in 0..zones {
        s.push_str(&format!("zone z{i} {{\n  cidrs = [10.{}.{}.0/24]\n  scope = connected\n}}\n", i / 256, i % 256));
    }
    for f in 0..flows {
        let port = if f == 0 { 1000 + edit } else { 2000 + f };
        s.push_str(&format!("flow z{} -> z{} on tcp/{port}\n", f % zones, (f * 7 + 3) % zones));
    }
    s
}

fn main() {
    let edits = if std::env::args().any(|a| a == "--bench") { 60 } else { 5 };
    let ws = workspace("bench", &[("main.seg", &policy(2000, 0))]);
    let main = ws.join("main.seg");
    let mut c = Client::start(&ws);
    c.open(&main, &policy(2000, 0));
    let _ = c.diagnostics_for(&uri(&main));
    let mut times: Vec<Duration> = Vec::new();
    for e in 1..=edits {
        let text = policy(2000, e);
        let t = Instant::now();
        c.change(&main, e as i32 + 1, &text);
        let _ = c.diagnostics_for(&uri(&main));
        times.push(t.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "lsp edit-to-diagnostics, 2000 flows, {edits} edits: median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        ms(times[times.len() / 2]),
        ms(times[times.len() * 9 / 10]),
        ms(times[times.len() - 1])
    );
    c.shutdown();
}
