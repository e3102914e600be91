//! Formatting over LSP: the same edit as `segc fmt`.

#[path = "lsp/client.rs"]
mod client;

use client::{uri, workspace, Client};
use serde_json::json;

#[test]
fn formatting_matches_segc_fmt() {
    let messy = "zone dmz{cidrs=[10.0.1.0/24] scope=connected}\nflow dmz->dmz on tcp/443 # web\n";
    let ws = workspace("fmt", &[("main.seg", messy)]);
    let main = ws.join("main.seg");
    let mut c = Client::start(&ws);
    c.open(&main, messy);
    let r =
        c.request("textDocument/formatting", json!({"textDocument": {"uri": uri(&main)}, "options": {"tabSize": 2, "insertSpaces": true}}));
    let edits = r["result"].as_array().expect("edits");
    assert_eq!(edits.len(), 1);
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_segc"))
        .args(["fmt", "-"])
        .stdin(std::fs::File::open(&main).expect("file"))
        .output()
        .expect("fmt");
    assert_eq!(edits[0]["newText"].as_str(), Some(String::from_utf8_lossy(&cli.stdout).as_ref()));
    c.shutdown();
}
