//! The audit log against someone who can write its folder but does not hold
//! the key: each attack of the security review, which passed `verify` before
//! events and anchors carried MACs and the key left the folder.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use segc_audit::{event_hash, Checkpoint, Event, KeySource, Kind, Log, ProblemKind};
use serde_json::json;

fn fresh(tag: &str) -> (PathBuf, Log) {
    let d = std::env::temp_dir().join(format!("segc-audit-attack-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::remove_file(d.with_extension("key"));
    let log = Log::open_with(&d, KeySource::File(d.with_extension("key"))).expect("open");
    for i in 0..5 {
        log.append(Kind::Build, json!({"n": i})).expect("append");
    }
    (d, log)
}

fn segment(d: &Path) -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(d.join("segments")).expect("segments").flatten().map(|e| e.path()).collect();
    v.sort();
    v.pop().expect("a segment")
}

fn events(d: &Path) -> Vec<Event> {
    std::fs::read_to_string(segment(d)).expect("read").lines().map(|l| serde_json::from_str(l).expect("event")).collect()
}

fn write_events(d: &Path, ev: &[Event]) {
    let text: String = ev.iter().map(|e| format!("{}\n", serde_json::to_string(e).expect("json"))).collect();
    std::fs::write(segment(d), text).expect("write");
}

/// An event the attacker computes: correctly hashed and chained, no key.
fn forge(prev: &Event, mac: &str) -> Event {
    let (seq, ts, data) = (prev.seq + 1, prev.ts + 1, json!({"forged": true}));
    let hash = event_hash(seq, ts, "deploy.apply", "root (uid 0)", &data, &prev.hash);
    Event { seq, ts, kind: "deploy.apply".into(), actor: "root (uid 0)".into(), data, prev: prev.hash.clone(), hash, mac: mac.into() }
}

#[test]
fn history_rewritten_behind_a_forged_anchor_fails() {
    let (d, log) = fresh("anchor");
    let ev = events(&d);
    let newest = ev.last().expect("events").clone();
    write_events(&d, std::slice::from_ref(&newest));
    // The anchor continues the chain to the kept event, as retention would write it.
    let prev = &ev[ev.len() - 2];
    std::fs::write(d.join("ANCHOR"), json!({"seq": prev.seq, "hash": prev.hash}).to_string()).expect("anchor");
    let p = log.verify().expect_err("an anchor without the key's MAC");
    assert_eq!(p.kind, ProblemKind::Modified, "{p:?}");
    assert!(p.message.contains("ANCHOR"), "{p:?}");
    // A MAC borrowed from an event does not pass for an anchor's.
    std::fs::write(d.join("ANCHOR"), json!({"seq": prev.seq, "hash": prev.hash, "mac": prev.mac}).to_string()).expect("anchor");
    assert_eq!(log.verify().expect_err("an event's MAC is no anchor's").kind, ProblemKind::Modified);
}

#[test]
fn an_event_appended_without_the_key_fails_even_after_the_next_append() {
    let (d, log) = fresh("append");
    let ev = events(&d);
    let newest = ev.last().expect("events").clone();
    // With no MAC, and with the newest event's MAC copied.
    for mac in ["", newest.mac.as_str()] {
        let mut forged = ev.clone();
        forged.push(forge(&newest, mac));
        write_events(&d, &forged);
        let p = log.verify().expect_err("a forged event");
        assert_eq!((p.kind, p.seq), (ProblemKind::Modified, newest.seq + 1), "{p:?}");
    }
    // The next legitimate append chains onto the forgery and signs HEAD over
    // it: the forgery still fails, by its own missing MAC.
    log.append(Kind::Swap, json!({})).expect("append");
    let p = log.verify().expect_err("the forgery stays a forgery");
    assert_eq!((p.kind, p.seq), (ProblemKind::Modified, newest.seq + 1), "{p:?}");
}

#[test]
fn a_key_planted_in_the_folder_signs_nothing() {
    let (d, log) = fresh("planted");
    let mut ev = events(&d);
    ev.truncate(3);
    write_events(&d, &ev);
    // The attacker's own key in the folder, and HEAD signed with it the way
    // the first format did.
    std::fs::write(d.join("KEY"), "11".repeat(32)).expect("key");
    let head = json!({"seq": 3, "hash": ev[2].hash, "mac": legacy_mac(&[0x11; 32], &format!("3:{}", ev[2].hash))});
    std::fs::write(d.join("HEAD"), head.to_string()).expect("head");
    let reopened = Log::open_with(&d, KeySource::File(d.with_extension("key"))).expect("open");
    assert!(!reopened.is_legacy(), "a folder whose events carry MACs is never taken for the first format");
    for l in [&log, &reopened] {
        assert_eq!(l.verify().expect_err("planted").kind, ProblemKind::Modified);
    }
    std::fs::remove_file(d.join("KEY")).expect("rm");
    assert_eq!(reopened.verify().expect_err("HEAD signed with another key").kind, ProblemKind::Modified);
}

fn legacy_mac(key: &[u8], msg: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    m.update(msg.as_bytes());
    m.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_deleted_or_cut_back_log_is_caught_by_a_checkpoint() {
    let (d, log) = fresh("checkpoint");
    let cp = log.checkpoint().expect("checkpoint");
    assert_eq!(cp.seq, 5);
    let line = cp.to_line();
    assert_eq!(Checkpoint::newest_in(&format!("<109>1 x y segc - checkpoint - {line}\n")), Some(cp.clone()));
    assert_eq!(log.verify_checkpoint(&cp), Ok(5));
    let old_head = std::fs::read(d.join("HEAD")).expect("head");
    for i in 0..3 {
        log.append(Kind::Swap, json!({"i": i})).expect("append");
    }
    let later = log.checkpoint().expect("checkpoint");
    // Cut back to event 6 and put back the older, authentic HEAD: verify
    // alone cannot tell; the later checkpoint can.
    let mut ev = events(&d);
    ev.truncate(5);
    write_events(&d, &ev);
    std::fs::write(d.join("HEAD"), &old_head).expect("old head");
    assert_eq!(log.verify(), Ok(5), "without a checkpoint, a replayed HEAD hides the cut");
    assert_eq!(log.verify_checkpoint(&cp), Ok(5));
    assert_eq!(log.verify_checkpoint(&later).expect_err("cut back").kind, ProblemKind::Truncated);
    // Deleted whole: verify says so, and the checkpoint names what was lost.
    std::fs::remove_dir_all(&d).expect("rm");
    std::fs::create_dir_all(d.join("segments")).expect("mkdir");
    assert_eq!(log.verify().expect_err("empty").kind, ProblemKind::Empty);
    assert_eq!(log.verify_checkpoint(&cp).expect_err("deleted").kind, ProblemKind::Truncated);
    // A checkpoint is itself authenticated.
    let mut forged = later.clone();
    forged.seq = 2;
    assert_eq!(log.verify_checkpoint(&forged).expect_err("forged checkpoint").kind, ProblemKind::Modified);
}

#[test]
fn key_files_are_checked_and_never_kept_in_the_folder() {
    let base = std::env::temp_dir().join(format!("segc-audit-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("dir");
    let log_dir = base.join("audit");
    let key = base.join("audit.key");
    let open = |k: &Path| Log::open_with(&log_dir, KeySource::File(k.to_path_buf()));
    // Created on first use, 0400, outside the folder; nothing key-like inside.
    let log = open(&key).expect("creates the key");
    log.append(Kind::Build, json!({})).expect("append");
    assert_eq!(std::fs::metadata(&key).expect("key").permissions().mode() & 0o777, 0o400);
    assert!(!log_dir.join("KEY").exists());
    // Readable by others, or empty: refused with a message that says why.
    for (mode, body, why) in
        [(0o644, "aa".repeat(32), "mode 0644"), (0o640, "aa".repeat(32), "mode 0640"), (0o600, String::new(), "too short")]
    {
        let k = base.join(format!("k-{mode:o}-{}", body.len()));
        std::fs::write(&k, &body).expect("write");
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let e = open(&k).err().expect("refused").to_string();
        assert!(e.contains(why), "{e}");
    }
    // Inside the folder it protects: refused.
    let inside = log_dir.join("my.key");
    std::fs::write(&inside, "aa".repeat(32)).expect("write");
    std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert!(open(&inside).err().expect("refused").to_string().contains("inside the log folder"));
    // Owned by someone else (root can hand it over): refused.
    // SAFETY: geteuid has no failure mode.
    if unsafe { libc::geteuid() } == 0 {
        let other = base.join("other.key");
        std::fs::write(&other, "aa".repeat(32)).expect("write");
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::os::unix::fs::chown(&other, Some(65534), None).expect("chown");
        assert!(open(&other).err().expect("refused").to_string().contains("owned by uid 65534"));
    }
    // Many first openers at once agree on one key: every event verifies.
    let shared = base.join("race.key");
    let dir2 = base.join("race");
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (shared, dir2) = (shared.clone(), dir2.clone());
            std::thread::spawn(move || {
                let log = Log::open_with(&dir2, KeySource::File(shared)).expect("open");
                log.append(Kind::Build, json!({"i": i})).expect("append");
            })
        })
        .collect();
    for t in threads {
        t.join().expect("opener");
    }
    assert_eq!(Log::open_with(&dir2, KeySource::File(shared)).expect("open").verify(), Ok(8));
}

#[test]
fn the_kernel_keyring_holds_a_key() {
    let d = std::env::temp_dir().join(format!("segc-audit-keyring-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let name = format!("segc-test-{}", std::process::id());
    let log = match Log::open_with(&d, KeySource::Keyring(name.clone())) {
        Ok(l) => l,
        Err(e) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "the keyring must work in CI: {e}");
            eprintln!("SKIPPED the_kernel_keyring_holds_a_key: {e}");
            return;
        }
    };
    log.append(Kind::Build, json!({})).expect("append");
    // Another opener reads the same key from the keyring.
    let again = Log::open_with(&d, KeySource::Keyring(name)).expect("open");
    assert_eq!(again.verify(), Ok(1));
    // A file key is not that key.
    let other = Log::open_with(&d, KeySource::File(d.with_extension("key"))).expect("open");
    assert_eq!(other.verify().expect_err("another key").kind, ProblemKind::Modified);
}

/// A log as the first segc wrote it: no MACs on events, `KEY` in the folder,
/// `HEAD` signed with it.
fn first_format_log(d: &Path, n: u64) -> Vec<Event> {
    let _ = std::fs::remove_dir_all(d);
    std::fs::create_dir_all(d.join("segments")).expect("mkdir");
    let key = "22".repeat(32);
    let mut prev = "0".repeat(64);
    let mut ev = Vec::new();
    let t0 = segc_audit::now() - 60;
    for seq in 1..=n {
        let data = json!({"old": seq});
        let hash = event_hash(seq, t0 + seq, "build", "root (uid 0)", &data, &prev);
        ev.push(Event {
            seq,
            ts: t0 + seq,
            kind: "build".into(),
            actor: "root (uid 0)".into(),
            data,
            prev,
            hash: hash.clone(),
            mac: String::new(),
        });
        prev = hash;
    }
    let text: String = ev.iter().map(|e| format!("{}\n", serde_json::to_string(e).expect("json"))).collect();
    std::fs::write(d.join("segments").join(format!("{:020}.jsonl", 1)), text).expect("segment");
    std::fs::write(d.join("KEY"), &key).expect("key");
    let head = json!({"seq": n, "hash": prev, "mac": legacy_mac(key.as_bytes(), &format!("{n}:{prev}"))});
    std::fs::write(d.join("HEAD"), head.to_string()).expect("head");
    ev
}

#[test]
fn a_first_format_log_verifies_migrates_once_and_cannot_be_downgraded() {
    let d = std::env::temp_dir().join(format!("segc-audit-legacy-{}", std::process::id()));
    let _ = std::fs::remove_file(d.with_extension("key"));
    first_format_log(&d, 4);
    let mut log = Log::open_with(&d, KeySource::File(d.with_extension("key"))).expect("open");
    assert!(log.is_legacy());
    assert_eq!(log.verify(), Ok(4), "existing logs keep verifying");
    assert!(log.append(Kind::Build, json!({})).is_err(), "nothing is appended before the operator migrates");
    assert_eq!(log.migrate().expect("migrate"), 4);
    assert!(!d.join("KEY").exists(), "the key leaves the folder");
    log.append(Kind::Build, json!({"new": true})).expect("append");
    assert_eq!(log.verify(), Ok(6), "4 old events, the migration, one new");
    let cp = log.checkpoint().expect("checkpoint");
    // Downgrade: strip every MAC, plant a key, sign HEAD the old way.
    let mut ev = events(&d);
    for e in &mut ev {
        e.mac.clear();
    }
    write_events(&d, &ev);
    let key = "33".repeat(32);
    std::fs::write(d.join("KEY"), &key).expect("key");
    let last = ev.last().expect("events");
    let head = json!({"seq": last.seq, "hash": last.hash, "mac": legacy_mac(key.as_bytes(), &format!("{}:{}", last.seq, last.hash))});
    std::fs::write(d.join("HEAD"), head.to_string()).expect("head");
    let mut downgraded = Log::open_with(&d, KeySource::File(d.with_extension("key"))).expect("open");
    assert!(downgraded.is_legacy());
    assert_eq!(downgraded.verify_checkpoint(&cp).expect_err("no checkpoint of a first-format log").kind, ProblemKind::Modified);
    let e = downgraded.migrate().expect_err("migrated before").to_string();
    assert!(e.contains("downgraded"), "{e}");
}
