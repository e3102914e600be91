//! What the Azure tests share: the ARM NSG emulator from ../shared, the ARM
//! gateway in front of it (tests/helpers/arm_gateway.py), independent reads
//! (tests/helpers/arm.py), a small NSG evaluator, and running segc.
#![allow(dead_code, reason = "each test binary uses its own part")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

use super::common;

/// A Python helper serving HTTP (the emulator, the token issuer), killed on drop.
pub struct Emulator {
    pub child: Child,
    pub url: String,
    /// The network namespace it runs in, if not the test's own.
    pub netns: Option<String>,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the test can run: the emulator from ../shared and `tools` (and
/// root, as every test here); prints why not, and fails instead in CI.
pub fn ready(test: &str, tools: &[&str]) -> bool {
    if !emulator_path().exists() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "the Azure emulator is part of ../shared in CI");
        eprintln!("SKIPPED {test}: ../shared/emulators/azure_nsg.py is not here");
        return false;
    }
    common::require(test, tools)
}

pub fn emulator_path() -> PathBuf {
    common::repo().join("../shared/emulators/azure_nsg.py")
}

/// `program`, inside `netns` when given.
pub fn command(netns: Option<&str>, program: &str) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    }
}

pub fn python(netns: Option<&str>) -> Command {
    command(netns, "python3")
}

/// Runs a helper that prints `listening PORT` once it serves on `host`.
pub fn listening(netns: Option<&str>, args: &[&str], host: &str) -> Emulator {
    let mut child = python(netns).args(args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("helper starts");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("listening line");
    let port = line.trim().strip_prefix("listening ").unwrap_or_else(|| panic!("{args:?}: no `listening PORT` line: {line:?}")).to_string();
    let url = if port == "80" { format!("http://{host}") } else { format!("http://{host}:{port}") };
    Emulator { child, url, netns: netns.map(String::from) }
}

pub fn start() -> Emulator {
    listening(None, &[&emulator_path().display().to_string()], "127.0.0.1")
}

pub fn arm(e: &Emulator, args: &[&str]) -> String {
    let o = python(e.netns.as_deref()).arg(common::repo().join("tests/helpers/arm.py")).arg(&e.url).args(args).output().expect("arm.py");
    assert!(o.status.success(), "arm.py {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

pub fn segc(e: &Emulator, audit: &Path, args: &[&str], policy: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_segc"))
        .args(args)
        .arg(policy)
        .env("AZURE_RESOURCE_MANAGER_ENDPOINT", &e.url)
        .env("AZURE_SUBSCRIPTION_ID", "sub1")
        .env("AZURE_ACCESS_TOKEN", "test-token")
        .env("SEGC_AUDIT_DIR", audit)
        .output()
        .expect("segc")
}

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

pub fn policy(dir: &Path, port: u16) -> PathBuf {
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(
        dir.join("main.seg"),
        format!(
            "use std.zones.internet\nzone web {{\n  cidrs = [10.0.1.0/24]\n  scope = connected\n  azure.nsg = \"web-nsg\"\n}}\nzone db {{\n  cidrs = [10.0.2.0/24]\n  scope = connected\n  azure.nsg = \"db-nsg\"\n}}\nflow internet -> web on tcp/443\nflow web -> db on tcp/{port}\n"
        ),
    )
    .expect("policy");
    dir.to_path_buf()
}

pub fn rules(e: &Emulator, nsg: &str) -> Vec<(String, i64, String)> {
    let v: Value = serde_json::from_str(&arm(e, &["get", nsg])).expect("json");
    let mut r: Vec<(String, i64, String)> = v["properties"]["securityRules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or("").to_string(),
                r["properties"]["priority"].as_i64().unwrap_or(0),
                r["properties"]["access"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    r.sort();
    r
}

/// tests/helpers/arm_gateway.py in front of the emulator: it logs every state
/// an NSG passes through and plays subnet associations.
pub fn start_gateway(e: &Emulator) -> Emulator {
    listening(None, &[&common::repo().join("tests/helpers/arm_gateway.py").display().to_string(), &e.url], "127.0.0.1")
}

pub fn gateway_call(g: &Emulator, path: &str, body: Option<&str>) -> Value {
    let script = "import sys, urllib.request\nd = sys.argv[2].encode() if len(sys.argv) > 2 else None\nprint(urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=d, method='POST' if d else 'GET')).read().decode())";
    let mut c = python(None);
    c.args(["-c", script, &format!("{}{path}", g.url)]);
    if let Some(b) = body {
        c.arg(b);
    }
    let o = c.output().expect("gateway call");
    serde_json::from_slice(&o.stdout).unwrap_or_else(|err| panic!("{path}: {err}: {}", String::from_utf8_lossy(&o.stderr)))
}

/// Whether an NSG's rules let a packet through one direction, as Azure
/// decides: the first rule by priority that matches; past the custom rules,
/// the defaults allow the virtual network (10.0.0.0/8 here) and deny the rest.
pub fn nsg_allows(rules: &[Value], inbound: bool, peer: std::net::Ipv4Addr, port: u16) -> bool {
    let dir = if inbound { "Inbound" } else { "Outbound" };
    let in_prefix = |p: &str| -> bool {
        match p {
            "*" | "Internet" if p == "*" || !peer.is_private() => true,
            "VirtualNetwork" => peer.octets()[0] == 10,
            _ => p.split_once('/').is_some_and(|(a, l)| {
                let (a, l): (std::net::Ipv4Addr, u32) = (a.parse().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED), l.parse().unwrap_or(33));
                l <= 32 && (u32::from(peer) ^ u32::from(a)).checked_shr(32 - l).unwrap_or(0) == 0
            }),
        }
    };
    let list = |p: &Value, one: &str, many: &str| -> Vec<String> {
        let mut v: Vec<String> = p[one].as_str().map(String::from).into_iter().collect();
        v.extend(p[many].as_array().into_iter().flatten().filter_map(|x| x.as_str().map(String::from)));
        v
    };
    let mut mine: Vec<&Value> = rules.iter().map(|r| &r["properties"]).filter(|p| p["direction"] == dir).collect();
    mine.sort_by_key(|p| p["priority"].as_u64());
    for p in mine {
        let peers = if inbound {
            list(p, "sourceAddressPrefix", "sourceAddressPrefixes")
        } else {
            list(p, "destinationAddressPrefix", "destinationAddressPrefixes")
        };
        let ports = list(p, "destinationPortRange", "destinationPortRanges");
        let port_ok = ports.iter().any(|r| {
            r == "*" || {
                let (lo, hi) = r.split_once('-').unwrap_or((r, r));
                lo.parse::<u16>().is_ok_and(|lo| lo <= port) && hi.parse::<u16>().is_ok_and(|hi| port <= hi)
            }
        });
        let proto_ok = matches!(p["protocol"].as_str(), Some("*" | "Tcp"));
        if proto_ok && port_ok && peers.iter().any(|x| in_prefix(x)) {
            return p["access"] == "Allow";
        }
    }
    peer.octets()[0] == 10 || (!inbound && !peer.is_private())
}

/// Every probe an NSG state lets through: (inbound, peer, port).
pub fn allowed_probes(rules: &[Value]) -> std::collections::BTreeSet<(bool, std::net::Ipv4Addr, u16)> {
    let peers: [std::net::Ipv4Addr; 4] = [[203, 0, 113, 5].into(), [10, 0, 50, 5].into(), [10, 0, 2, 5].into(), [192, 168, 7, 7].into()];
    let mut out = std::collections::BTreeSet::new();
    for inbound in [true, false] {
        for peer in peers {
            for port in [22, 80, 443, 5432, 8443] {
                if nsg_allows(rules, inbound, peer, port) {
                    out.insert((inbound, peer, port));
                }
            }
        }
    }
    out
}

pub fn web_policy(dir: &Path, flows: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(
        dir.join("main.seg"),
        format!(
            "policy \"azure-order\" {{}}\nuse std.zones.internet\nzone web {{\n  cidrs = [10.0.1.0/24]\n  scope = connected\n  azure.nsg = \"web-nsg\"\n}}\nzone corp {{\n  cidrs = [10.0.50.0/24]\n  scope = connected\n}}\nzone db {{\n  cidrs = [10.0.2.0/24]\n  scope = connected\n}}\n{flows}"
        ),
    )
    .expect("policy");
    dir.to_path_buf()
}

pub fn v_rules(nsg_json: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(nsg_json).expect("json");
    v["properties"]["securityRules"].as_array().cloned().unwrap_or_default()
}
