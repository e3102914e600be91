//! What the AWS tests share: a moto EC2 server on loopback, the strict EC2
//! gateway in front of it (tests/helpers/ec2_gateway.py), independent reads
//! with boto3 (tests/helpers/ec2.py), and running segc against them.
#![allow(dead_code, reason = "each test binary uses its own part")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::common;

pub struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the test can run: root, python3 and moto[server] with boto3;
/// prints why not, and fails instead in CI.
pub fn ready(test: &str) -> bool {
    if !common::require(test, &["python3"]) {
        return false;
    }
    let have_moto = Command::new("python3").args(["-c", "import moto, boto3, flask"]).status().is_ok_and(|s| s.success());
    if !have_moto {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "moto[server] must be installed in CI");
        eprintln!("SKIPPED {test}: it needs `pip install moto[server]`");
    }
    have_moto
}

pub fn start_moto() -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let child = Command::new("python3")
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto starts");
    let end = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "moto did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto { child, url: format!("http://127.0.0.1:{port}") }
}

pub fn env(cmd: &mut Command, moto: &Moto, audit: &Path) {
    cmd.env("AWS_ENDPOINT_URL", &moto.url)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .env("SEGC_AUDIT_DIR", audit);
}

pub fn ec2(moto: &Moto, audit: &Path, args: &[&str]) -> String {
    let mut c = Command::new("python3");
    c.arg(common::repo().join("tests/helpers/ec2.py")).args(args);
    env(&mut c, moto, audit);
    let o = c.output().expect("ec2.py");
    assert!(o.status.success(), "ec2.py {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

pub fn segc(moto: &Moto, audit: &Path, args: &[&str], policy: &Path) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_segc"));
    c.args(args).arg(policy);
    env(&mut c, moto, audit);
    c.output().expect("segc")
}

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

pub fn policy(dir: &Path, second_tier: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(
        dir.join("main.seg"),
        format!(
            r#"policy "aws-test" {{}}
use std.zones.internet
zone web {{
  cidrs = [10.0.1.0/24]
  scope = connected
  aws.security_group = "web"
}}
zone db {{
  cidrs = [10.0.2.0/24]
  scope = connected
  aws.security_group = "db"
}}
zone cache {{
  cidrs = [10.0.3.0/24]
  scope = connected
  aws.security_group = "cache"
}}
flow internet -> web on tcp/443
flow web -> {second_tier} on tcp/5432
"#
        ),
    )
    .expect("policy");
    dir.to_path_buf()
}

pub fn has(rules: &Value, proto: &str, from: i64, to: i64, peer: &str) -> bool {
    rules.as_array().is_some_and(|a| a.iter().any(|r| r[0] == proto && r[1] == from && r[2] == to && r[3] == peer))
}

/// tests/helpers/ec2_gateway.py in front of moto: it injects EC2 errors into writes.
pub fn start_gateway(moto: &Moto) -> Moto {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new("python3")
        .arg(common::repo().join("tests/helpers/ec2_gateway.py"))
        .arg(&moto.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("gateway starts");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("listening line");
    let port = line.trim().strip_prefix("listening ").expect("listening PORT").to_string();
    Moto { child, url: format!("http://127.0.0.1:{port}") }
}

/// POSTs a fault to the gateway (or reads it with `None`); returns its state.
pub fn fault(gateway: &Moto, set: Option<&str>) -> Value {
    control(gateway, "/_fault", set)
}

/// POSTs to (or with `None` reads) one of the gateway's control paths.
pub fn control(gateway: &Moto, path: &str, set: Option<&str>) -> Value {
    let script = "import sys, urllib.request\nd = sys.argv[2].encode() if len(sys.argv) > 2 else None\nprint(urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=d, method='POST' if d else 'GET')).read().decode())";
    let mut c = Command::new("python3");
    c.args(["-c", script, &format!("{}{path}", gateway.url)]);
    if let Some(s) = set {
        c.arg(s);
    }
    let o = c.output().expect("fault");
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("fault state: {e}: {}", String::from_utf8_lossy(&o.stderr)))
}
