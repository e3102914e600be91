//! The audit log against every kind of tampering, crashes and concurrency.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use segc_audit::{KeySource, Kind, Log, ProblemKind};
use serde_json::json;

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("segc-audit-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::remove_file(d.with_extension("key"));
    d
}

/// The key lives beside the log's folder, never in it.
fn key_of(d: &Path) -> KeySource {
    KeySource::File(d.with_extension("key"))
}

fn open(d: &Path) -> Log {
    Log::open_with(d, key_of(d)).expect("open")
}

fn segment(d: &Path) -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(d.join("segments")).expect("segments").flatten().map(|e| e.path()).collect();
    v.sort();
    v.pop().expect("a segment")
}

fn with_lines(d: &Path, f: impl FnOnce(&mut Vec<String>)) {
    let p = segment(d);
    let mut lines: Vec<String> = std::fs::read_to_string(&p).expect("read").lines().map(String::from).collect();
    f(&mut lines);
    std::fs::write(&p, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).expect("write");
}

fn log_with(tag: &str, n: u64) -> (PathBuf, Log) {
    let d = dir(tag);
    let log = open(&d);
    for i in 0..n {
        log.append(Kind::Build, json!({"n": i})).expect("append");
    }
    (d, log)
}

#[test]
fn an_untouched_log_verifies() {
    let (_d, log) = log_with("ok", 5);
    assert_eq!(log.verify(), Ok(5));
    let e = log.events().expect("events");
    assert_eq!(e.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(e[1].prev, e[0].hash);
}

#[test]
fn modified_events_are_found() {
    let (d, log) = log_with("mod", 5);
    with_lines(&d, |l| l[2] = l[2].replace("\"n\":2", "\"n\":7"));
    let p = log.verify().expect_err("tampered");
    assert_eq!((p.kind, p.seq, p.line), (ProblemKind::Modified, 3, 3), "{p:?}");
}

#[test]
fn removed_events_are_found() {
    let (d, log) = log_with("rm", 5);
    with_lines(&d, |l| {
        l.remove(1);
    });
    let p = log.verify().expect_err("tampered");
    assert_eq!((p.kind, p.seq), (ProblemKind::Removed, 2), "{p:?}");
}

#[test]
fn reordered_events_are_found() {
    let (d, log) = log_with("reorder", 5);
    with_lines(&d, |l| l.swap(1, 2));
    let p = log.verify().expect_err("tampered");
    assert_eq!((p.kind, p.seq), (ProblemKind::Reordered, 2), "{p:?}");
}

#[test]
fn truncation_is_found_through_the_head() {
    let (d, log) = log_with("trunc", 5);
    with_lines(&d, |l| {
        l.truncate(3);
    });
    let p = log.verify().expect_err("tampered");
    assert_eq!(p.kind, ProblemKind::Truncated, "{p:?}");
    assert!(p.message.contains("HEAD names event 5"), "{p:?}");
}

#[test]
fn a_forged_head_is_found() {
    let (d, log) = log_with("head", 3);
    let head = std::fs::read_to_string(d.join("HEAD")).expect("head");
    std::fs::write(d.join("HEAD"), head.replace("\"seq\":3", "\"seq\":2")).expect("write");
    assert_eq!(log.verify().expect_err("forged").kind, ProblemKind::Modified);
}

#[test]
fn a_torn_last_record_is_repaired_on_the_next_write() {
    let (d, log) = log_with("torn", 3);
    let p = segment(&d);
    let mut text = std::fs::read_to_string(&p).expect("read");
    text.push_str("{\"seq\":4,\"ts\":1,\"kind\":\"bu");
    std::fs::write(&p, text).expect("write");
    let e = log.append(Kind::Build, json!({"after": "crash"})).expect("append repairs");
    assert_eq!(e.seq, 4);
    assert_eq!(log.verify(), Ok(4));
}

#[test]
fn concurrent_writers_never_interleave() {
    let d = dir("conc");
    open(&d);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let d = d.clone();
            std::thread::spawn(move || {
                let log = open(&d);
                for i in 0..50 {
                    log.append(Kind::Swap, json!({"t": t, "i": i})).expect("append");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer");
    }
    assert_eq!(open(&d).verify(), Ok(200));
}

#[test]
fn rotation_compression_and_retention_keep_the_chain() {
    let d = dir("rotate");
    let log = open(&d).with_segment_limit(400);
    let day = 86_400;
    let start = 1_700_000_000 - 400 * day;
    // 400 days of events, a few a day, in small segments.
    for i in 0..400u64 {
        log.append_at(Kind::Build, json!({"day": i}), start + i * day).expect("append");
        log.append_at(Kind::Swap, json!({"day": i}), start + i * day + 60).expect("append");
    }
    let names: Vec<String> =
        std::fs::read_dir(d.join("segments")).expect("dir").flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().any(|n| n.ends_with(".jsonl.zst")), "old segments are compressed");
    assert!(names.iter().any(|n| n.ends_with(".jsonl")), "recent ones are not");
    assert!(d.join("ANCHOR").exists(), "segments past retention are removed");
    let first = log.events().expect("events")[0].clone();
    assert!(first.ts >= start + (400 - 366) * day, "nothing older than a year is kept: {}", first.ts);
    assert!(log.verify().is_ok(), "{:?}", log.verify());
}

/// Run as a child by `kill_9_loses_no_acknowledged_event`: appends forever,
/// printing each sequence number once `append` has returned.
#[test]
fn child_writer() {
    let Some(d) = std::env::var_os("SEGC_AUDIT_CHILD") else { return };
    let log = open(Path::new(&d));
    let mut out = std::io::stdout();
    for i in 0.. {
        let e = log.append(Kind::DenySample, json!({"i": i, "pad": "x".repeat(200)})).expect("append");
        use std::io::Write;
        writeln!(out, "{}", e.seq).expect("print");
        out.flush().expect("flush");
    }
}

#[test]
fn kill_9_loses_no_acknowledged_event() {
    let d = dir("kill");
    open(&d);
    for round in 0..5 {
        let mut child = Command::new(std::env::current_exe().expect("self"))
            .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
            .env("SEGC_AUDIT_CHILD", &d)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("child");
        let mut acked: Vec<u64> = Vec::new();
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        while acked.len() < 30 + round * 20 {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Ok(n) = l.trim().parse() {
                        acked.push(n);
                    }
                }
                _ => break,
            }
        }
        child.kill().expect("kill -9");
        let _ = child.wait();
        for l in lines.map_while(Result::ok) {
            if let Ok(n) = l.trim().parse() {
                acked.push(n);
            }
        }
        let log = open(&d);
        // The next write repairs a torn tail, if the kill tore one.
        log.append(Kind::Build, json!({"round": round})).expect("append after the kill");
        assert!(log.verify().is_ok(), "round {round}: {:?}", log.verify());
        let kept: std::collections::HashSet<u64> = log.events().expect("events").iter().map(|e| e.seq).collect();
        for n in &acked {
            assert!(kept.contains(n), "round {round}: acknowledged event {n} was lost");
        }
    }
}
