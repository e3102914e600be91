//! `segc audit` end to end: builds and deploys are recorded, `verify` finds
//! tampering with exit 1, `show` filters, `export` speaks RFC 5424 and CEF, and
//! a real rsyslog on loopback receives the events over TCP.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn segc(args: &[&str], audit: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_segc"))
        .args(args)
        .env("SEGC_AUDIT_DIR", audit)
        .env("SEGC_AUDIT_KEY_FILE", audit.with_extension("key"))
        .output()
        .expect("segc runs")
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("segc-audit-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("dir");
    d
}

#[test]
fn builds_are_recorded_verified_shown_and_exported() {
    let d = tmp("cli");
    let audit = d.join("audit");
    let example = common::repo().join("examples/retail-pos");
    for _ in 0..2 {
        let o = Command::new(env!("CARGO_BIN_EXE_segc"))
            .args(["build", "-o"])
            .arg(d.join("out"))
            .arg(&example)
            .env("SEGC_AUDIT_DIR", &audit)
            .env("SEGC_AUDIT_KEY_FILE", audit.with_extension("key"))
            .output()
            .expect("build");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let o = segc(&["audit", "verify"], &audit);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("ok: 2 events"));
    assert!(!audit.join("KEY").exists(), "the key is not kept in the log folder");

    let o = segc(&["audit", "show", "--kind", "build", "--format", "json"], &audit);
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["kind"], "build");
    assert_eq!(lines[0]["data"]["manifest"]["policy"], "retail-pos");
    assert_eq!(lines[1]["prev"], lines[0]["hash"]);
    let o = segc(&["audit", "show", "--kind", "deploy.apply"], &audit);
    assert!(o.stdout.is_empty());
    let o = segc(&["audit", "show", "--until", "2000-01-01"], &audit);
    assert!(o.stdout.is_empty());

    let o = segc(&["audit", "export", "--format", "cef"], &audit);
    let cef = String::from_utf8_lossy(&o.stdout);
    assert!(cef.lines().all(|l| l.starts_with("CEF:0|segc|segc|")), "{cef}");
    let o = segc(&["audit", "export", "--format", "rfc5424"], &audit);
    let syslog = String::from_utf8_lossy(&o.stdout).into_owned();
    let lines: Vec<&str> = syslog.lines().collect();
    assert_eq!(lines.len(), 3, "two events and a checkpoint: {syslog}");
    assert!(lines[..2].iter().all(|l| l.starts_with("<109>1 ") && l.contains(" segc - build [segc@32473 seq=\"")), "{syslog}");
    assert!(lines[2].contains(" segc - checkpoint [segc@32473 seq=\"2\"") && lines[2].contains("{\"segc_checkpoint\":1"), "{syslog}");
    // The export, kept by the SIEM, proves the log still holds event 2.
    let export = d.join("siem.log");
    std::fs::write(&export, &syslog).expect("write");
    let o = segc(&["audit", "verify", "--checkpoint", export.to_str().expect("utf-8")], &audit);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));

    // Tamper with the first event: verify names it and exits 1.
    let seg = std::fs::read_dir(audit.join("segments")).expect("segments").flatten().next().expect("a segment").path();
    let text = std::fs::read_to_string(&seg).expect("read");
    std::fs::write(&seg, text.replacen("retail-pos", "retail-p0s", 1)).expect("write");
    let o = segc(&["audit", "verify"], &audit);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("event 1") && err.contains("Modified"), "{err}");

    // Deleted whole: plain verify says nothing is proven (exit 1); the
    // checkpoint names what was lost.
    std::fs::remove_dir_all(&audit).expect("rm");
    let o = segc(&["audit", "verify"], &audit);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::create_dir_all(audit.join("segments")).expect("mkdir");
    let o = segc(&["audit", "verify", "--checkpoint", export.to_str().expect("utf-8")], &audit);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Truncated"), "{}", String::from_utf8_lossy(&o.stderr));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_key_others_can_read_is_refused_with_exit_2() {
    use std::os::unix::fs::PermissionsExt;
    let d = tmp("badkey");
    let key = d.join("audit.key");
    std::fs::write(&key, "ab".repeat(32)).expect("key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::create_dir_all(d.join("audit/segments")).expect("an (empty) log folder");
    for args in [&["audit", "checkpoint"][..], &["build", "-o", d.join("out").to_str().expect("utf-8"), "tests/inputs/cli/stores.seg"][..]]
    {
        let o = Command::new(env!("CARGO_BIN_EXE_segc"))
            .args(args)
            .current_dir(common::repo())
            .env("SEGC_AUDIT_DIR", d.join("audit"))
            .env("SEGC_AUDIT_KEY_FILE", &key)
            .output()
            .expect("segc runs");
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("mode 0644") && err.contains(key.to_str().expect("utf-8")), "{err}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_real_rsyslog_receives_the_events() {
    if !common::require("a_real_rsyslog_receives_the_events", &["rsyslogd"]) {
        return;
    }
    let d = tmp("rsyslog");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let conf = format!(
        "global(workDirectory=\"{dir}\")\nmodule(load=\"imtcp\")\ninput(type=\"imtcp\" port=\"{port}\" address=\"127.0.0.1\")\n*.* action(type=\"omfile\" file=\"{dir}/received.log\" template=\"RSYSLOG_SyslogProtocol23Format\")\n",
        dir = d.display()
    );
    std::fs::write(d.join("rsyslog.conf"), conf).expect("conf");
    let mut rsyslog = Command::new("rsyslogd")
        .args(["-n", "-f"])
        .arg(d.join("rsyslog.conf"))
        .arg("-i")
        .arg(d.join("rsyslog.pid"))
        .spawn()
        .expect("rsyslogd starts");
    let audit = d.join("audit");
    let o = Command::new(env!("CARGO_BIN_EXE_segc"))
        .args(["build", "-o"])
        .arg(d.join("out"))
        .arg(common::repo().join("examples/online-shop"))
        .env("SEGC_AUDIT_DIR", &audit)
        .env("SEGC_AUDIT_KEY_FILE", audit.with_extension("key"))
        .output()
        .expect("build");
    assert!(o.status.success());
    let mut sent = false;
    for _ in 0..50 {
        let o = segc(&["audit", "export", "--format", "rfc5424", "--syslog", &format!("127.0.0.1:{port}")], &audit);
        if o.status.success() {
            sent = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(sent, "rsyslog never accepted the connection");
    let mut got = String::new();
    for _ in 0..50 {
        got = std::fs::read_to_string(d.join("received.log")).unwrap_or_default();
        if got.contains("segc@32473") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = rsyslog.kill();
    let _ = rsyslog.wait();
    assert!(got.contains(" segc - build [segc@32473 seq=\"1\""), "{got}");
    let _ = std::fs::remove_dir_all(&d);
}
