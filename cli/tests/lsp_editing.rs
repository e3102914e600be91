//! Formatting (the same as `segc fmt`), rename across files, document
//! symbols and quick fixes.

#[path = "lsp/client.rs"]
mod client;
#[path = "lsp/fixture.rs"]
mod fixture;

use client::{uri, workspace, Client};
use serde_json::json;

#[test]
fn formatting_matches_segc_fmt() {
    let messy = "zone dmz{cidrs=[10.0.1.0/24] scope=connected}\nflow dmz->dmz on tcp/443 # web\n";
    let ws = workspace("fmt", &[("main.seg", messy)]);
    let main = ws.join("main.seg");
    let mut c = Client::start(&ws);
    c.open(&main, messy);
    let r = c.request("textDocument/formatting", json!({"textDocument": {"uri": uri(&main)}, "options": {"tabSize": 2, "insertSpaces": true}}));
    let edits = r["result"].as_array().expect("edits");
    assert_eq!(edits.len(), 1);
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_segc")).args(["fmt", "-"]).stdin(std::fs::File::open(&main).expect("file")).output().expect("fmt");
    assert_eq!(edits[0]["newText"].as_str(), Some(String::from_utf8_lossy(&cli.stdout).as_ref()));
    c.shutdown();
}

#[test]
fn rename_across_files_and_refusals() {
    let ws = workspace("rename", &[("main.seg", fixture::MAIN), ("zones.seg", fixture::ZONES)]);
    let main = ws.join("main.seg");
    let mut c = Client::start(&ws);
    c.open(&main, fixture::MAIN);
    let _ = c.diagnostics_for(&uri(&main));
    let pos = Client::pos(fixture::MAIN, "dmz -> vault", 0);
    let r = c.request("textDocument/rename", json!({"textDocument": {"uri": uri(&main)}, "position": pos, "newName": "edge"}));
    let changes = &r["result"]["changes"];
    assert_eq!(changes[uri(&main)].as_array().map(Vec::len), Some(3), "{r}");
    assert_eq!(changes[uri(&ws.join("zones.seg"))].as_array().map(Vec::len), Some(1), "{r}");
    assert!(changes[uri(&main)].as_array().into_iter().flatten().all(|e| e["newText"] == "edge"));
    // Clashing, invalid and standard-library names are refused.
    let clash = c.request("textDocument/rename", json!({"textDocument": {"uri": uri(&main)}, "position": pos, "newName": "vault"}));
    assert!(clash["error"]["message"].as_str().unwrap_or("").contains("already defined"), "{clash}");
    let bad = c.request("textDocument/rename", json!({"textDocument": {"uri": uri(&main)}, "position": pos, "newName": "flow"}));
    assert!(bad.get("error").is_some(), "{bad}");
    let std_pos = Client::pos(fixture::MAIN, "postgres {", 1);
    let std = c.request("textDocument/rename", json!({"textDocument": {"uri": uri(&main)}, "position": std_pos, "newName": "pg"}));
    assert!(std["error"]["message"].as_str().unwrap_or("").contains("standard library"), "{std}");
    c.shutdown();
}

#[test]
fn document_symbols() {
    let ws = workspace("symbols", &[("main.seg", fixture::MAIN), ("zones.seg", fixture::ZONES)]);
    let main = ws.join("main.seg");
    let mut c = Client::start(&ws);
    c.open(&main, fixture::MAIN);
    let r = c.request("textDocument/documentSymbol", json!({"textDocument": {"uri": uri(&main)}}));
    let names: Vec<&str> = r["result"].as_array().expect("symbols").iter().map(|s| s["name"].as_str().unwrap_or("")).collect();
    assert_eq!(names, ["lsp", "dmz -> vault", "dmz -> dmz"]);
    c.shutdown();
}

#[test]
fn quick_fixes() {
    let text = fixture::MAIN.replace("flow dmz -> vault", "flow dmz -> vualt").replace("flow dmz -> dmz on https", "flow dmz -> vault on tcp/8443\nflow dmz -> dmz on ssh");
    let ws = workspace("fixes", &[("main.seg", &text), ("zones.seg", fixture::ZONES)]);
    let main = ws.join("main.seg");
    let mut c = Client::start(&ws);
    c.open(&main, &text);
    let diags = c.diagnostics_for(&uri(&main));
    assert!(diags.iter().any(|d| d["code"] == "E101"), "{diags:?}");
    let whole = json!({"start": {"line": 0, "character": 0}, "end": {"line": 30, "character": 0}});
    let r = c.request("textDocument/codeAction", json!({"textDocument": {"uri": uri(&main)}, "range": whole, "context": {"diagnostics": []}}));
    let titles: Vec<&str> = r["result"].as_array().expect("actions").iter().map(|a| a["title"].as_str().unwrap_or("")).collect();
    assert!(titles.contains(&"replace with `vault`"), "{titles:?}");
    assert!(titles.contains(&"add `use std.services.ssh`"), "{titles:?}");

    // With the names fixed, P103 gets a justification skeleton.
    let fixed = text.replace("vualt", "vault").replace("on ssh", "on https");
    c.change(&main, 2, &fixed);
    let diags = c.diagnostics_for(&uri(&main));
    assert!(diags.iter().any(|d| d["code"] == "P103"), "{diags:?}");
    let r = c.request("textDocument/codeAction", json!({"textDocument": {"uri": uri(&main)}, "range": whole, "context": {"diagnostics": []}}));
    let action = r["result"].as_array().expect("actions").iter().find(|a| a["title"] == "add a `justification`").cloned().expect("P103 fix");
    let edit = &action["edit"]["changes"][uri(&main)][0];
    assert_eq!(edit["newText"], " {\n  justification = \"\"\n}");
    c.shutdown();
}
