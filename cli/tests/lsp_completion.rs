//! Completion of keywords, zone and service names, attributes and enum values.

#[path = "lsp/client.rs"]
mod client;
#[path = "lsp/fixture.rs"]
mod fixture;

use client::{uri, workspace, Client};
use serde_json::json;

fn labels(c: &mut Client, file: &std::path::Path, text: &str, needle: &str) -> Vec<String> {
    let pos = Client::pos(text, needle, needle.len());
    let r = c.request("textDocument/completion", json!({"textDocument": {"uri": uri(file)}, "position": pos}));
    r["result"].as_array().map(|a| a.iter().map(|i| i["label"].as_str().unwrap_or("").to_string()).collect()).unwrap_or_default()
}

#[test]
fn completion_fits_the_context() {
    let text = format!("{}zone lab {{\n  scope = \n  \n}}\nflow dmz -> \nflow lab -> dmz on \n", fixture::MAIN);
    let ws = workspace("complete", &[("main.seg", &text), ("zones.seg", fixture::ZONES)]);
    let main = ws.join("main.seg");
    let mut c = Client::start(&ws);
    c.open(&main, &text);
    let _ = c.diagnostics_for(&uri(&main));
    assert_eq!(labels(&mut c, &main, &text, "  scope = "), ["cde", "connected", "out_of_scope", "untrusted"]);
    let zones = labels(&mut c, &main, &text, "flow dmz -> ");
    assert!(zones.contains(&"vault".to_string()) && zones.contains(&"dmz".to_string()), "{zones:?}");
    let services = labels(&mut c, &main, &text, "flow lab -> dmz on ");
    assert!(services.contains(&"https".to_string()) && services.contains(&"postgres".to_string()), "{services:?}");
    assert!(!services.contains(&"vault".to_string()));
    let attrs = labels(&mut c, &main, &text, "  scope = \n  ");
    assert!(attrs.contains(&"cidrs".to_string()) && attrs.contains(&"aws.security_group".to_string()), "{attrs:?}");
    insta::assert_snapshot!(attrs.join("\n"));
    let kw = labels(&mut c, &main, &text, "\n}\n");
    assert!(kw.contains(&"zone".to_string()) && kw.contains(&"flow".to_string()), "{kw:?}");
    c.shutdown();
}
