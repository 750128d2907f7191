// airlock sample extension: shows that an offline VSIX from the bundle is installed.
const vscode = require("vscode");

function activate(context) {
  context.subscriptions.push(
    vscode.commands.registerCommand("airlockSample.hello", () =>
      vscode.window.showInformationMessage("Installed offline from an airlock bundle.")
    )
  );
}

module.exports = { activate, deactivate() {} };
