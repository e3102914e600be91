//! Diagnostics over LSP: the same findings as `segc check`, with code and a
//! link to the code's page, updated as the user types, and re-checked in the
//! importing file when an imported file changes.

#[path = "lsp/client.rs"]
mod client;
#[path = "lsp/fixture.rs"]
mod fixture;

use client::{uri, workspace, Client};

#[test]
fn diagnostics_follow_edits_and_imports() {
    let ws = workspace("diag", &[("main.seg", fixture::MAIN), ("zones.seg", fixture::ZONES)]);
    let (main, zones) = (ws.join("main.seg"), ws.join("zones.seg"));
    let mut c = Client::start(&ws);
    c.open(&main, fixture::MAIN);
    assert!(c.diagnostics_for(&uri(&main)).is_empty(), "the fixture is clean");

    // A typo: E101 with a suggestion, the code, and the page's link.
    let broken = fixture::MAIN.replace("flow dmz -> vault", "flow dmz -> vualt");
    c.change(&main, 2, &broken);
    let d = c.diagnostics_for(&uri(&main));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["code"], "E101");
    assert_eq!(d[0]["severity"], 1);
    assert!(d[0]["message"].as_str().unwrap_or("").contains("did you mean `vault`?"));
    assert!(d[0]["codeDescription"]["href"].as_str().unwrap_or("").ends_with("/E101.md"));
    assert_eq!(d[0]["range"]["start"]["line"], 6);

    // Back to clean.
    c.change(&main, 3, fixture::MAIN);
    assert!(c.diagnostics_for(&uri(&main)).is_empty());

    // Editing the imported file re-checks the importer: with the dmz marked
    // out of scope, its flow into the vault is P106, reported in main.seg.
    c.open(&zones, fixture::ZONES);
    let out_of_scope = fixture::ZONES.replace("scope = connected", "scope = out_of_scope");
    c.change(&zones, 2, &out_of_scope);
    // Opening zones.seg published main.seg once more (still clean); the change
    // publishes it again, with the finding.
    let mut found = Vec::new();
    for _ in 0..4 {
        found = c.diagnostics_for(&uri(&main));
        if !found.is_empty() {
            break;
        }
    }
    assert!(found.iter().any(|d| d["code"] == "P106"), "{found:?}");
    c.shutdown();
}

#[test]
fn a_panic_in_one_request_does_not_kill_the_server() {
    let ws = workspace("panic", &[("main.seg", fixture::MAIN), ("zones.seg", fixture::ZONES)]);
    let mut c = Client::start(&ws);
    let r = c.request("segc/panic", serde_json::json!({}));
    assert_eq!(r["error"]["code"], -32603, "{r}");
    // Still serving.
    c.open(&ws.join("main.seg"), fixture::MAIN);
    assert!(c.diagnostics_for(&uri(&ws.join("main.seg"))).is_empty());
    c.shutdown();
}

/// A feed's bad line shows in the editor as in `segc check` (E205 naming the
/// line), and W505 where a blocked feed overlaps the policy's own zone.
#[test]
fn feed_problems_show_in_the_editor() {
    let main = "zone corp {\n  cidrs = [10.1.0.0/16]\n  scope = connected\n}\nzone net {\n  cidrs = [0.0.0.0/0]\n  scope = untrusted\n}\nfeed bad {\n  source = \"bad.netset\"\n}\nblock bad\nflow corp -> net on tcp/443\n";
    let ws = workspace("feeds", &[("main.seg", main), ("bad.netset", "192.0.2.0/24\n10.0.0.0/8\nnot-a-prefix\n")]);
    let path = ws.join("main.seg");
    let mut c = Client::start(&ws);
    c.open(&path, main);
    let d = c.diagnostics_for(&uri(&path));
    assert!(d.iter().any(|d| d["code"] == "E205" && d["message"].as_str().unwrap_or("").contains("bad.netset:3")), "{d:?}");
    std::fs::write(ws.join("bad.netset"), "192.0.2.0/24\n10.0.0.0/8\n").expect("fix the feed");
    c.change(&path, 2, main);
    let d = c.diagnostics_for(&uri(&path));
    assert!(d.iter().any(|d| d["code"] == "W505"), "{d:?}");
    assert!(!d.iter().any(|d| d["code"] == "E205"), "{d:?}");
    c.shutdown();
}
