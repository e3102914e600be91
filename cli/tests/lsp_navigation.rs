//! Go to definition and find references, across imports and into the
//! standard library.

#[path = "lsp/client.rs"]
mod client;
#[path = "lsp/fixture.rs"]
mod fixture;

use client::{uri, workspace, Client};
use serde_json::json;

#[test]
fn definition_and_references_cross_files() {
    let ws = workspace("nav", &[("main.seg", fixture::MAIN), ("zones.seg", fixture::ZONES)]);
    let main = ws.join("main.seg");
    let mut c = Client::start(&ws);
    c.open(&main, fixture::MAIN);
    let _ = c.diagnostics_for(&uri(&main));

    // `vault` in main.seg is defined in zones.seg.
    let pos = Client::pos(fixture::MAIN, "vault on", 1);
    let r = c.request("textDocument/definition", json!({"textDocument": {"uri": uri(&main)}, "position": pos}));
    assert_eq!(r["result"]["uri"], uri(&ws.join("zones.seg")), "{r}");
    assert_eq!(r["result"]["range"]["start"], json!({"line": 5, "character": 5}));

    // `postgres` goes into the standard library, written out to a real file.
    let pos = Client::pos(fixture::MAIN, "postgres {", 2);
    let r = c.request("textDocument/definition", json!({"textDocument": {"uri": uri(&main)}, "position": pos}));
    let target = r["result"]["uri"].as_str().expect("a location").to_string();
    assert!(target.ends_with("/services.seg"), "{target}");
    let text = std::fs::read_to_string(target.trim_start_matches("file://")).expect("the stdlib file exists");
    let line = r["result"]["range"]["start"]["line"].as_u64().expect("line") as usize;
    assert!(text.lines().nth(line).unwrap_or("").starts_with("service postgres"), "{text}");

    // References of `dmz`: its definition and three uses.
    let pos = Client::pos(fixture::MAIN, "dmz -> dmz", 8);
    let r = c.request(
        "textDocument/references",
        json!({"textDocument": {"uri": uri(&main)}, "position": pos, "context": {"includeDeclaration": true}}),
    );
    let locs = r["result"].as_array().expect("locations");
    assert_eq!(locs.len(), 4, "{r}");
    assert_eq!(locs.iter().filter(|l| l["uri"] == uri(&ws.join("zones.seg"))).count(), 1);
    c.shutdown();
}
