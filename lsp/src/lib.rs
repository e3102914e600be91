//! `segc lsp`: the language server, on stdio, synchronous, with an explicit
//! event loop (lsp-server). It runs the normal pipeline without lowering and
//! publishes the same diagnostics as `segc check`. A panic while serving one
//! request is caught and answered with an error; the server goes on.

mod convert;
mod features;
mod index;
pub mod state;

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};

use lsp_server::{Connection, ErrorCode, Message, Notification, Request, Response};
use lsp_types as lsp;
use lsp_types::notification::Notification as _;
use lsp_types::request::Request as _;
use segc_compiler::Options;
use serde_json::Value;

use state::{path_of_uri, Doc, State};

fn capabilities() -> lsp::ServerCapabilities {
    lsp::ServerCapabilities {
        text_document_sync: Some(lsp::TextDocumentSyncCapability::Kind(lsp::TextDocumentSyncKind::FULL)),
        hover_provider: Some(lsp::HoverProviderCapability::Simple(true)),
        definition_provider: Some(lsp::OneOf::Left(true)),
        references_provider: Some(lsp::OneOf::Left(true)),
        completion_provider: Some(lsp::CompletionOptions {
            trigger_characters: Some(vec![" ".into(), ".".into(), ">".into(), ",".into()]),
            ..Default::default()
        }),
        document_formatting_provider: Some(lsp::OneOf::Left(true)),
        rename_provider: Some(lsp::OneOf::Left(true)),
        document_symbol_provider: Some(lsp::OneOf::Left(true)),
        code_action_provider: Some(lsp::CodeActionProviderCapability::Simple(true)),
        ..Default::default()
    }
}

/// Serves on stdin and stdout until `exit`.
/// Serves on stdio; `fetch` reads https feeds (the `segc` binary passes its
/// own; without one, a policy with an https feed shows E103 in the editor).
pub fn run_stdio(fetch: Option<state::Fetch>) -> anyhow::Result<()> {
    let (conn, io) = Connection::stdio();
    let params = conn.initialize(serde_json::to_value(capabilities())?)?;
    let init: lsp::InitializeParams = serde_json::from_value(params)?;
    let mut state = State::default();
    state.feeds.fetch = fetch;
    #[expect(deprecated, reason = "root_uri is what most clients still send")]
    let root = init
        .workspace_folders
        .as_ref()
        .and_then(|w| w.first())
        .and_then(|f| path_of_uri(&f.uri))
        .or_else(|| init.root_uri.as_ref().and_then(path_of_uri));
    state.root = root;
    main_loop(&conn, &mut state)?;
    // Everything queued (the shutdown response included) has been answered.
    // The reader thread may still wait on stdin, which an editor need not
    // close: do not join it, so `exit` ends the process.
    drop(conn);
    drop(io);
    Ok(())
}

fn main_loop(conn: &Connection, state: &mut State) -> anyhow::Result<()> {
    for msg in &conn.receiver {
        match msg {
            Message::Request(req) => {
                if conn.handle_shutdown(&req)? {
                    return Ok(());
                }
                let id = req.id.clone();
                let resp = match catch_unwind(AssertUnwindSafe(|| handle_request(state, req))) {
                    Ok(r) => r,
                    Err(_) => {
                        Response::new_err(id, ErrorCode::InternalError as i32, "segc lsp: internal error while handling the request".into())
                    }
                };
                conn.sender.send(Message::Response(resp))?;
            }
            Message::Notification(n) => {
                let changed = catch_unwind(AssertUnwindSafe(|| handle_notification(state, n))).unwrap_or(false);
                if changed {
                    publish(conn, state)?;
                }
            }
            Message::Response(_) => {}
        }
    }
    Ok(())
}

fn handle_notification(state: &mut State, n: Notification) -> bool {
    match n.method.as_str() {
        lsp::notification::DidOpenTextDocument::METHOD => {
            let Ok(p) = serde_json::from_value::<lsp::DidOpenTextDocumentParams>(n.params) else { return false };
            let Some(path) = path_of_uri(&p.text_document.uri) else { return false };
            if state.root.is_none() {
                state.root = path.parent().map(|p| p.to_path_buf());
            }
            state.docs.insert(path, Doc { version: p.text_document.version, text: p.text_document.text });
            true
        }
        lsp::notification::DidChangeTextDocument::METHOD => {
            let Ok(p) = serde_json::from_value::<lsp::DidChangeTextDocumentParams>(n.params) else { return false };
            let Some(path) = path_of_uri(&p.text_document.uri) else { return false };
            let Some(change) = p.content_changes.into_iter().last() else { return false };
            // Full sync: the last change is the whole document. Older versions are ignored.
            match state.docs.get(&path) {
                Some(d) if d.version > p.text_document.version => false,
                _ => {
                    state.docs.insert(path, Doc { version: p.text_document.version, text: change.text });
                    true
                }
            }
        }
        lsp::notification::DidCloseTextDocument::METHOD => {
            let Ok(p) = serde_json::from_value::<lsp::DidCloseTextDocumentParams>(n.params) else { return false };
            path_of_uri(&p.text_document.uri).is_some_and(|path| state.docs.remove(&path).is_some())
        }
        lsp::notification::DidSaveTextDocument::METHOD => true,
        _ => false,
    }
}

/// Recompiles and publishes diagnostics for every file of every policy tree,
/// clearing files that no longer have any.
fn publish(conn: &Connection, state: &mut State) -> anyhow::Result<()> {
    state.rebuild(&Options { today: Some(segc_fsio::clock::today()) });
    let mut now: BTreeSet<lsp::Url> = BTreeSet::new();
    let mut batches: Vec<(lsp::Url, Vec<lsp::Diagnostic>, Option<i32>)> = Vec::new();
    for unit in &state.units {
        let sources = unit.comp.sources();
        let locate = |span: segc_compiler::diag::Span| -> Option<(lsp::Url, String)> {
            let path = unit.path_of(span.file)?;
            Some((lsp::Url::from_file_path(path).ok()?, sources.get(span.file).text.clone()))
        };
        for &f in &unit.comp.tree.user_files {
            let Some(path) = unit.path_of(f) else { continue };
            let Ok(uri) = lsp::Url::from_file_path(&path) else { continue };
            if now.contains(&uri) {
                continue;
            }
            let text = &sources.get(f).text;
            let diags: Vec<lsp::Diagnostic> =
                unit.comp.diagnostics.iter().filter(|d| d.span.file == f).map(|d| convert::diagnostic(d, text, &locate)).collect();
            let version = state.docs.get(&path).map(|d| d.version);
            now.insert(uri.clone());
            batches.push((uri, diags, version));
        }
    }
    for uri in state.published.difference(&now) {
        batches.push((uri.clone(), Vec::new(), None));
    }
    for (uri, diagnostics, version) in batches {
        let params = lsp::PublishDiagnosticsParams { uri, diagnostics, version };
        conn.sender.send(Message::Notification(Notification::new(lsp::notification::PublishDiagnostics::METHOD.into(), params)))?;
    }
    state.published = now;
    Ok(())
}

fn reply<T: serde::Serialize>(id: lsp_server::RequestId, v: T) -> Response {
    Response::new_ok(id, serde_json::to_value(v).unwrap_or(Value::Null))
}

fn handle_request(state: &mut State, req: Request) -> Response {
    let id = req.id.clone();
    let bad = |id, e: serde_json::Error| Response::new_err(id, ErrorCode::InvalidParams as i32, e.to_string());
    macro_rules! params {
        ($t:ty) => {
            match serde_json::from_value::<$t>(req.params) {
                Ok(p) => p,
                Err(e) => return bad(id, e),
            }
        };
    }
    match req.method.as_str() {
        lsp::request::HoverRequest::METHOD => {
            let p = params!(lsp::HoverParams);
            reply(id, features::hover(state, &p, segc_fsio::clock::today()))
        }
        lsp::request::GotoDefinition::METHOD => {
            let p = params!(lsp::GotoDefinitionParams);
            reply(id, features::definition(state, &p))
        }
        lsp::request::References::METHOD => {
            let p = params!(lsp::ReferenceParams);
            reply(id, features::references(state, &p))
        }
        lsp::request::Completion::METHOD => {
            let p = params!(lsp::CompletionParams);
            reply(id, features::completion(state, &p))
        }
        lsp::request::Formatting::METHOD => {
            let p = params!(lsp::DocumentFormattingParams);
            reply(id, features::formatting(state, &p))
        }
        lsp::request::Rename::METHOD => {
            let p = params!(lsp::RenameParams);
            match features::rename(state, &p) {
                Ok(edit) => reply(id, edit),
                Err(msg) => Response::new_err(id, ErrorCode::InvalidRequest as i32, msg),
            }
        }
        lsp::request::DocumentSymbolRequest::METHOD => {
            let p = params!(lsp::DocumentSymbolParams);
            reply(id, features::symbols(state, &p))
        }
        lsp::request::CodeActionRequest::METHOD => {
            let p = params!(lsp::CodeActionParams);
            reply(id, features::code_actions(state, &p))
        }
        // A request that only tests the panic barrier.
        "segc/panic" if std::env::var_os("SEGC_LSP_TEST").is_some() => panic!("requested panic"),
        _ => Response::new_err(id, ErrorCode::MethodNotFound as i32, format!("unknown method {}", req.method)),
    }
}
