//! Document symbols: the policy, zones, services, flows and tests of a file.

#[path = "lsp/client.rs"]
mod client;
#[path = "lsp/fixture.rs"]
mod fixture;

use client::{uri, workspace, Client};
use serde_json::json;

#[test]
fn document_symbols() {
    let ws = workspace("symbols", &[("main.seg", fixture::MAIN), ("zones.seg", fixture::ZONES)]);
    let main = ws.join("main.seg");
    let mut c = Client::start(&ws);
    c.open(&main, fixture::MAIN);
    let r = c.request("textDocument/documentSymbol", json!({"textDocument": {"uri": uri(&main)}}));
    let names: Vec<&str> = r["result"].as_array().expect("symbols").iter().map(|s| s["name"].as_str().unwrap_or("")).collect();
    assert_eq!(names, ["lsp", "dmz -> vault", "dmz -> dmz"]);
    insta::assert_json_snapshot!(r["result"]);
    c.shutdown();
}
