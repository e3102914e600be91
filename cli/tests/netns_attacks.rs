//! The review's attacks on a deployed filter, on real traffic in network
//! namespaces: a connection back along a reversed tuple, an echo request back
//! with the same identifier, a live connection a swap removes, an L3 (TUN)
//! link, an interface deleted and created again (deploy, drift and the agent),
//! another TCX program on the hook, and two installers at once.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const ALLOW_8080: &str = "policy \"attacks\" {}\nzone client {\n  cidrs = [10.99.0.1/32, fd99::1/128]\n  scope = connected\n}\n\
zone server {\n  cidrs = [10.99.0.2/32, fd99::2/128]\n  scope = connected\n}\nflow client -> server on tcp/8080, tcp/8081, icmp/8, icmp/128\n";
const WITHOUT_8080: &str = "policy \"attacks\" {}\nzone client {\n  cidrs = [10.99.0.1/32, fd99::1/128]\n  scope = connected\n}\n\
zone server {\n  cidrs = [10.99.0.2/32, fd99::2/128]\n  scope = connected\n}\nflow client -> server on tcp/8081, icmp/8, icmp/128\n";

fn policy_dir(tag: &str, text: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("segc-attacks-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("dir");
    std::fs::write(d.join("main.seg"), text).expect("policy");
    d
}

fn segc(args: &[&str], audit: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_segc"))
        .args(args)
        .env("SEGC_AUDIT_DIR", audit.join("audit"))
        .env("SEGC_AUDIT_KEY_FILE", audit.join("audit.key"))
        .output()
        .expect("segc runs")
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn deploy(ns: &str, iface: &str, dir: &Path) -> String {
    ok(&segc(&["deploy", dir.to_str().expect("utf-8"), "--target", "host", "--netns", ns, "--iface", iface, "--apply"], dir))
}

fn script() -> String {
    repo().join("tests/helpers/probe.py").to_string_lossy().into_owned()
}

fn run_in(ns: &str, args: &[&str]) -> bool {
    Command::new("ip").args(["netns", "exec", ns, "python3", &script()]).args(args).status().expect("probe").success()
}

fn undeploy(ns: &str) {
    let _ = Command::new(env!("CARGO_BIN_EXE_segc")).args(["undeploy", "--target", "host", "--netns", ns]).output();
}

#[test]
fn a_reversed_tuple_or_an_echo_back_does_not_pass() {
    if !require("a_reversed_tuple_or_an_echo_back_does_not_pass", &["ip", "python3"]) {
        return;
    }
    let dir = policy_dir("reverse", ALLOW_8080);
    let net = NetnsPair::new("rev");
    // Before segc: the attack works.
    let srv = net.serve(&net.b, &[8080], &[]);
    assert!(run_in(&net.a, &["connect", "tcp", "10.99.0.2", "8080", "2222"]));
    drop(srv);
    let back = net.serve(&net.a, &[2222], &[]);
    assert!(run_in(&net.b, &["connect", "tcp", "10.99.0.1", "2222", "8080"]), "without segc the way back is open");
    drop(back);
    deploy(&net.b, "vb", &dir);
    // The allowed connection, client:2222 -> server:8080.
    let srv = net.serve(&net.b, &[8080], &[]);
    assert!(run_in(&net.a, &["connect", "tcp", "10.99.0.2", "8080", "2222"]), "the allowed connection");
    drop(srv);
    // The server opens a connection along the reversed tuple: a new connection, denied.
    let back = net.serve(&net.a, &[2222], &[]);
    assert!(!run_in(&net.b, &["connect", "tcp", "10.99.0.1", "2222", "8080"]), "server:8080 -> client:2222 is not a reply");
    drop(back);
    // Echo: the client's ping is answered; the server's ping, same identifier, is not.
    for (c, s) in [("10.99.0.1", "10.99.0.2"), ("fd99::1", "fd99::2")] {
        assert!(run_in(&net.a, &["ping", s, "77"]), "client pings server ({s})");
        assert!(!run_in(&net.b, &["ping", c, "77"]), "server pings client with the same identifier ({c})");
    }
    undeploy(&net.b);
    let _ = std::fs::remove_dir_all(&dir);
}

/// One kept TCP connection, driven line by line.
struct Held(std::process::Child, BufReader<std::process::ChildStdout>);

impl Held {
    fn open(net: &NetnsPair, host: &str, port: u16) -> Held {
        let mut c = net
            .exec(&net.a, &["python3", &script(), "hold", host, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("hold");
        let out = BufReader::new(c.stdout.take().expect("stdout"));
        let mut h = Held(c, out);
        assert_eq!(h.line(), "up");
        h
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.1.read_line(&mut l).expect("line");
        l.trim().to_string()
    }

    fn again(&mut self) -> bool {
        writeln!(self.0.stdin.as_mut().expect("stdin")).expect("write");
        self.line() == "ok"
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_swap_stops_the_connections_it_removes() {
    if !require("a_swap_stops_the_connections_it_removes", &["ip", "python3"]) {
        return;
    }
    let dir = policy_dir("swap", ALLOW_8080);
    let net = NetnsPair::new("swapkill");
    let _srv = net.serve(&net.b, &[8080, 8081], &[]);
    deploy(&net.b, "vb", &dir);
    let mut removed = Held::open(&net, "10.99.0.2", 8080);
    let mut kept = Held::open(&net, "10.99.0.2", 8081);
    assert!(removed.again() && kept.again(), "both flow before the swap");
    std::fs::write(dir.join("main.seg"), WITHOUT_8080).expect("narrower policy");
    assert!(deploy(&net.b, "vb", &dir).starts_with("swapped"));
    assert!(!removed.again(), "a live connection on a removed flow stops at the swap");
    assert!(!removed.again(), "and stays stopped");
    assert!(kept.again(), "a connection the new policy allows goes on");
    undeploy(&net.b);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_l3_tun_link_is_enforced() {
    if !require("an_l3_tun_link_is_enforced", &["ip", "python3"]) {
        return;
    }
    let pid = std::process::id();
    let (x, y) = (format!("segc-tun-x-{pid}"), format!("segc-tun-y-{pid}"));
    for ns in [&x, &y] {
        sh(&["ip", "netns", "add", ns]);
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    let _cleanup = NetnsCleanup(vec![x.clone(), y.clone()]);
    let sock = std::env::temp_dir().join(format!("segc-tun-{pid}.sock"));
    let _ = std::fs::remove_file(&sock);
    let relay = repo().join("tests/helpers/tun_relay.py");
    let start = |ns: &str, mode: &str, dev: &str| {
        let mut c = Command::new("ip")
            .args(["netns", "exec", ns, "python3", relay.to_str().expect("utf-8"), mode, sock.to_str().expect("utf-8"), dev])
            .stdout(Stdio::piped())
            .spawn()
            .expect("relay");
        let mut line = String::new();
        BufReader::new(c.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("ready");
        assert_eq!(line.trim(), "ready");
        Server2(c)
    };
    let _rx = start(&x, "listen", "tunx");
    let _ry = start(&y, "connect", "tuny");
    for (ns, dev, me, peer) in [(&x, "tunx", "10.97.0.1", "10.97.0.2"), (&y, "tuny", "10.97.0.2", "10.97.0.1")] {
        sh(&["ip", "-n", ns, "addr", "add", me, "peer", peer, "dev", dev]);
        sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
    }
    let _srv = Server2(
        Command::new("ip")
            .args(["netns", "exec", &y, "python3", &script(), "serve", "443,22", ""])
            .stdout(Stdio::piped())
            .spawn()
            .expect("server"),
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(run_in(&x, &["connect", "tcp", "10.97.0.2", "22"]), "before segc, tcp/22 crosses the TUN link");
    let dir = policy_dir(
        "tun",
        "zone x {\n  cidrs = [10.97.0.1/32]\n  scope = connected\n}\nzone y {\n  cidrs = [10.97.0.2/32]\n  scope = connected\n}\nflow x -> y on tcp/443\n",
    );
    let plan = ok(&segc(&["deploy", dir.to_str().expect("utf-8"), "--target", "host", "--netns", &y, "--iface", "tuny"], &dir));
    assert!(plan.contains("(L3 link)"), "the plan names the link type: {plan}");
    let out = deploy(&y, "tuny", &dir);
    assert!(out.contains("L3 link"), "{out}");
    assert!(run_in(&x, &["connect", "tcp", "10.97.0.2", "443"]), "tcp/443 is allowed over the TUN link");
    assert!(!run_in(&x, &["connect", "tcp", "10.97.0.2", "22"]), "tcp/22 is not");
    undeploy(&y);
    assert!(run_in(&x, &["connect", "tcp", "10.97.0.2", "22"]), "after undeploy it passes again");
    let _ = std::fs::remove_dir_all(&dir);
}

struct Server2(std::process::Child);

impl Drop for Server2 {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct NetnsCleanup(Vec<String>);

impl Drop for NetnsCleanup {
    fn drop(&mut self) {
        for ns in &self.0 {
            common::del_netns(ns);
        }
    }
}

/// Deletes and creates again the veth pair of `net`, with its addresses.
fn recreate(net: &NetnsPair) {
    sh(&["ip", "-n", &net.b, "link", "del", "vb"]);
    sh(&["ip", "link", "add", "va", "netns", &net.a, "type", "veth", "peer", "name", "vb", "netns", &net.b]);
    for (ns, dev, v4, v6) in [(&net.a, "va", "10.99.0.1/24", "fd99::1/64"), (&net.b, "vb", "10.99.0.2/24", "fd99::2/64")] {
        sh(&["ip", "-n", ns, "addr", "add", v4, "dev", dev]);
        sh(&["ip", "-n", ns, "addr", "add", v6, "dev", dev, "nodad"]);
        sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
    }
}

#[test]
fn a_recreated_interface_is_drift_and_gets_the_filter_again() {
    if !require("a_recreated_interface_is_drift_and_gets_the_filter_again", &["ip", "python3"]) {
        return;
    }
    let dir = policy_dir("recreate", ALLOW_8080);
    let net = NetnsPair::new("recreate");
    let _srv = net.serve(&net.b, &[8080, 8085], &[]);
    deploy(&net.b, "vb", &dir);
    assert!(!net.probe(&net.a, "tcp", "10.99.0.2", 8085));
    recreate(&net);
    assert!(net.probe(&net.a, "tcp", "10.99.0.2", 8085), "the new interface has no filter");
    let d = segc(&["drift", dir.to_str().expect("utf-8"), "--target", "host", "--netns", &net.b], &dir);
    assert_eq!(d.status.code(), Some(1), "drift sees it: {}", String::from_utf8_lossy(&d.stdout));
    assert!(String::from_utf8_lossy(&d.stdout).contains("not attached"), "{}", String::from_utf8_lossy(&d.stdout));
    let out = deploy(&net.b, "vb", &dir);
    assert!(out.contains("attached to `vb`"), "deploy attaches again: {out}");
    assert!(!net.probe(&net.a, "tcp", "10.99.0.2", 8085), "enforced again");
    let d = segc(&["drift", dir.to_str().expect("utf-8"), "--target", "host", "--netns", &net.b], &dir);
    assert_eq!(d.status.code(), Some(0), "{}", String::from_utf8_lossy(&d.stdout));

    // The agent notices on its own, within 2 s, and records it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_segc"))
        .args(["agent", "--iface", "vb", "--netns", &net.b, "--interval-ms", "200", "--run-for", "60", "--metrics"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--policy")
        .arg(&dir)
        .env("SEGC_AUDIT_DIR", dir.join("audit"))
        .env("SEGC_AUDIT_KEY_FILE", dir.join("audit.key"))
        .stderr(Stdio::null())
        .spawn()
        .expect("agent");
    let up = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < up, "the agent started");
        std::thread::sleep(Duration::from_millis(100));
    }
    recreate(&net);
    let gone = Instant::now();
    let deadline = gone + Duration::from_secs(2);
    let mut back = false;
    while Instant::now() < deadline {
        if !net.probe(&net.a, "tcp", "10.99.0.2", 8085) {
            back = true;
            break;
        }
    }
    assert!(back, "the agent attached again within 2 s of the new interface");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let _ = agent.wait();
    let log = String::from_utf8_lossy(&segc(&["audit", "show", "--kind", "agent.reattach"], &dir).stdout).into_owned();
    assert!(log.contains("vb"), "the re-attachment is an audit event: {log}");
    undeploy(&net.b);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A TCX program that drops everything, loaded and linked by hand (raw bpf
/// syscalls in namespace `ns`), pinned at `pin`; last among the programs.
fn drop_all_tcx(ns: &str, iface: &str, pin: &Path) {
    let (ns, iface, pin) = (ns.to_string(), iface.to_string(), pin.to_path_buf());
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns");
        // SAFETY: moves only this short-lived thread into the namespace.
        assert_eq!(unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) }, 0);
        // r0 = TC_ACT_SHOT (2); exit
        let insns: [u64; 2] = [0x0000_0002_0000_00b7, 0x0000_0000_0000_0095];
        let license = c"GPL";
        #[repr(C)]
        struct Load {
            prog_type: u32,
            insn_cnt: u32,
            insns: u64,
            license: u64,
            log_level: u32,
            log_size: u32,
            log_buf: u64,
            kern_version: u32,
            prog_flags: u32,
            prog_name: [u8; 16],
            prog_ifindex: u32,
            expected_attach_type: u32,
        }
        let mut load = Load {
            prog_type: 3, // BPF_PROG_TYPE_SCHED_CLS
            insn_cnt: 2,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 0,
            log_size: 0,
            log_buf: 0,
            kern_version: 0,
            prog_flags: 0,
            prog_name: *b"test_drop_all\0\0\0",
            prog_ifindex: 0,
            expected_attach_type: 46, // BPF_TCX_INGRESS
        };
        // SAFETY: BPF_PROG_LOAD (5) with the attr above, alive for the call.
        let prog = unsafe { libc::syscall(libc::SYS_bpf, 5, &mut load as *mut Load, std::mem::size_of::<Load>() as u32) };
        assert!(prog >= 0, "load: {}", std::io::Error::last_os_error());
        let ifindex = unsafe { libc::if_nametoindex(std::ffi::CString::new(iface).expect("name").as_ptr()) };
        #[repr(C)]
        struct Link {
            prog_fd: u32,
            target_ifindex: u32,
            attach_type: u32,
            flags: u32,
            relative: u64,
            expected_revision: u64,
        }
        let mut link = Link { prog_fd: prog as u32, target_ifindex: ifindex, attach_type: 46, flags: 0, relative: 0, expected_revision: 0 };
        // SAFETY: BPF_LINK_CREATE (28).
        let fd = unsafe { libc::syscall(libc::SYS_bpf, 28, &mut link as *mut Link, std::mem::size_of::<Link>() as u32) };
        assert!(fd >= 0, "link: {}", std::io::Error::last_os_error());
        let path = std::ffi::CString::new(pin.to_str().expect("utf-8")).expect("path");
        #[repr(C)]
        struct Pin {
            pathname: u64,
            bpf_fd: u32,
            file_flags: u32,
        }
        let mut p = Pin { pathname: path.as_ptr() as u64, bpf_fd: fd as u32, file_flags: 0 };
        // SAFETY: BPF_OBJ_PIN (6).
        assert_eq!(unsafe { libc::syscall(libc::SYS_bpf, 6, &mut p as *mut Pin, std::mem::size_of::<Pin>() as u32) }, 0);
        // Only the pin keeps the link now: removing it detaches the program.
        // SAFETY: closing descriptors this thread opened.
        unsafe {
            libc::close(fd as i32);
            libc::close(prog as i32);
        }
    })
    .join()
    .expect("drop-all program");
}

#[test]
fn segc_runs_first_and_hands_passed_packets_on() {
    if !require("segc_runs_first_and_hands_passed_packets_on", &["ip", "python3"]) {
        return;
    }
    let dir = policy_dir("order", ALLOW_8080);
    let net = NetnsPair::new("order");
    let _srv = net.serve(&net.b, &[8080], &[]);
    let pin = PathBuf::from(format!("/sys/fs/bpf/segc-test-drop-all-{}", std::process::id()));
    if Command::new("sh").args(["-c", "test -d /sys/fs/bpf"]).status().is_ok_and(|s| s.success()) {
        drop_all_tcx(&net.b, "vb", &pin);
    }
    assert!(!net.probe(&net.a, "tcp", "10.99.0.2", 8080), "the other program drops everything");
    let out = deploy(&net.b, "vb", &dir);
    if !out.contains("TCX") {
        eprintln!("SKIPPED segc_runs_first_and_hands_passed_packets_on: no TCX on this kernel ({out})");
        let _ = std::fs::remove_file(&pin);
        return;
    }
    let d = segc(&["drift", dir.to_str().expect("utf-8"), "--target", "host", "--netns", &net.b], &dir);
    assert_eq!(d.status.code(), Some(0), "segc is first: {}", String::from_utf8_lossy(&d.stdout));
    assert!(!net.probe(&net.a, "tcp", "10.99.0.2", 8080), "segc passes the packet on, and the program after it drops it");
    std::fs::remove_file(&pin).expect("detach the other program");
    assert!(net.probe(&net.a, "tcp", "10.99.0.2", 8080), "alone, segc lets the allowed flow through");
    undeploy(&net.b);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_installers_never_write_at_once() {
    if !require("two_installers_never_write_at_once", &["ip"]) {
        return;
    }
    let dir = policy_dir("lock", ALLOW_8080);
    let net = NetnsPair::new("lock");
    std::fs::create_dir_all("/run/segc").expect("/run/segc");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(format!("/run/segc/netns-{}.lock", net.b))
        .expect("lock file");
    // SAFETY: flock on a descriptor we own: another installer holds the scope.
    assert_eq!(unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) }, 0);
    let mut child = Command::new(env!("CARGO_BIN_EXE_segc"))
        .args(["deploy", dir.to_str().expect("utf-8"), "--target", "host", "--netns", &net.b, "--iface", "vb", "--apply"])
        .env("SEGC_AUDIT_DIR", dir.join("audit"))
        .env("SEGC_AUDIT_KEY_FILE", dir.join("audit.key"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("deploy");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(child.try_wait().expect("wait").is_none(), "the second installer waits for the first");
    drop(lock);
    let st = child.wait().expect("deploy");
    assert!(st.success(), "then it deploys");
    undeploy(&net.b);
    let _ = std::fs::remove_dir_all(&dir);
}
