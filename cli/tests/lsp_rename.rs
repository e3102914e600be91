//! Rename of zones and services across files, and what is refused.

#[path = "lsp/client.rs"]
mod client;
#[path = "lsp/fixture.rs"]
mod fixture;

use client::{uri, workspace, Client};
use serde_json::json;

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
