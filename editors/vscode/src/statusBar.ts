// The status bar item: a thin shell over renderStatus() (status.ts), which holds the logic.

import * as vscode from 'vscode';
import { renderStatus, type StatusModel, type StatusView } from './status';

export class StatusBar implements vscode.Disposable {
  readonly item: vscode.StatusBarItem;
  model: StatusModel = { phase: 'starting' };
  view: StatusView = renderStatus(this.model);

  constructor() {
    this.item = vscode.window.createStatusBarItem('mlxd.status', vscode.StatusBarAlignment.Right, 100);
    this.item.name = 'mlxd';
    this.item.command = 'mlxd.showMenu';
    this.render();
    this.item.show();
  }

  /** Merges a partial model (keys present with `undefined` clear that field) and re-renders. */
  update(patch: Partial<StatusModel>): void {
    this.model = { ...this.model, ...patch };
    this.render();
  }

  private render(): void {
    this.view = renderStatus(this.model);
    this.item.text = this.view.text;
    this.item.tooltip = this.view.tooltip;
    this.item.backgroundColor =
      this.view.severity === 'error'
        ? new vscode.ThemeColor('statusBarItem.errorBackground')
        : this.view.severity === 'warning'
          ? new vscode.ThemeColor('statusBarItem.warningBackground')
          : undefined;
  }

  dispose(): void {
    this.item.dispose();
  }
}
