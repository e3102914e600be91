//! Hover: zones (prefixes, scope, owner, flows), services, and flows with
//! their justification and review status.

#[path = "lsp/client.rs"]
mod client;
#[path = "lsp/fixture.rs"]
mod fixture;

use client::{uri, workspace, Client};
use serde_json::json;

fn hover(c: &mut Client, file: &std::path::Path, text: &str, needle: &str, shift: usize) -> String {
    let r = c.request("textDocument/hover", json!({"textDocument": {"uri": uri(file)}, "position": Client::pos(text, needle, shift)}));
    r["result"]["contents"]["value"].as_str().unwrap_or_default().to_string()
}

#[test]
fn hover_zone_service_and_flow() {
    let ws = workspace("hover", &[("main.seg", fixture::MAIN), ("zones.seg", fixture::ZONES)]);
    let main = ws.join("main.seg");
    let mut c = Client::start(&ws);
    c.open(&main, fixture::MAIN);
    let _ = c.diagnostics_for(&uri(&main));

    let z = hover(&mut c, &main, fixture::MAIN, "vault on", 0);
    assert!(z.contains("**zone `vault`**: scope `cde`, kind `wired`"), "{z}");
    assert!(z.contains("`10.0.9.0/24`") && z.contains("flows in (1): `dmz` on postgres"), "{z}");

    let s = hover(&mut c, &main, fixture::MAIN, "https\n", 1);
    assert!(s.contains("**service `https`**: tcp/443"), "{s}");

    insta::assert_snapshot!("zone", z);
    insta::assert_snapshot!("service", s);
    let f = hover(&mut c, &main, fixture::MAIN, "justification", 0);
    assert!(f.contains("**flow `dmz -> vault`**") && f.contains("justification: orders"), "{f}");
    assert!(f.contains("reviewed 2026-10-01"), "{f}");
    c.shutdown();
}
