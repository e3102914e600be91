// Starts `segc lsp` for .seg files. The server does all the work: diagnostics,
// hover, navigation, completion, formatting, rename and quick fixes.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const command = vscode.workspace.getConfiguration("segc").get("path", "segc");
  const server = { command, args: ["lsp"] };
  client = new LanguageClient("segc", "segc", { run: server, debug: server }, {
    documentSelector: [{ scheme: "file", language: "seg" }],
  });
  context.subscriptions.push({ dispose: () => client && client.stop() });
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
