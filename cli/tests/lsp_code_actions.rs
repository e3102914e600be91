//! Quick fixes: did-you-mean names, a missing `use`, a `justification` skeleton.

#[path = "lsp/client.rs"]
mod client;
#[path = "lsp/fixture.rs"]
mod fixture;

use client::{uri, workspace, Client};
use serde_json::json;

#[test]
fn quick_fixes() {
    let text = fixture::MAIN
        .replace("flow dmz -> vault", "flow dmz -> vualt")
        .replace("flow dmz -> dmz on https", "flow dmz -> vault on tcp/8443\nflow dmz -> dmz on ssh");
    let ws = workspace("fixes", &[("main.seg", &text), ("zones.seg", fixture::ZONES)]);
    let main = ws.join("main.seg");
    let mut c = Client::start(&ws);
    c.open(&main, &text);
    let diags = c.diagnostics_for(&uri(&main));
    assert!(diags.iter().any(|d| d["code"] == "E101"), "{diags:?}");
    let whole = json!({"start": {"line": 0, "character": 0}, "end": {"line": 30, "character": 0}});
    let r =
        c.request("textDocument/codeAction", json!({"textDocument": {"uri": uri(&main)}, "range": whole, "context": {"diagnostics": []}}));
    let titles: Vec<&str> = r["result"].as_array().expect("actions").iter().map(|a| a["title"].as_str().unwrap_or("")).collect();
    assert!(titles.contains(&"replace with `vault`"), "{titles:?}");
    assert!(titles.contains(&"add `use std.services.ssh`"), "{titles:?}");

    // With the names fixed, P103 gets a justification skeleton.
    let fixed = text.replace("vualt", "vault").replace("on ssh", "on https");
    c.change(&main, 2, &fixed);
    let diags = c.diagnostics_for(&uri(&main));
    assert!(diags.iter().any(|d| d["code"] == "P103"), "{diags:?}");
    let r =
        c.request("textDocument/codeAction", json!({"textDocument": {"uri": uri(&main)}, "range": whole, "context": {"diagnostics": []}}));
    let action =
        r["result"].as_array().expect("actions").iter().find(|a| a["title"] == "add a `justification`").cloned().expect("P103 fix");
    let edit = &action["edit"]["changes"][uri(&main)][0];
    assert_eq!(edit["newText"], " {\n  justification = \"\"\n}");
    c.shutdown();
}
