// The editor's own configuration files (VS Code's settings.json, keybindings.json, tasks.json,
// launch.json, extensions.json, a .code-workspace file): no ghost text there by default. Typing
// a setting is no place for code suggestions, and the file would go to a model for nothing.
// An explicit `mlxd.inline.languages` entry for the file's language (e.g. "jsonc": true)
// turns it back on. No `vscode` import here, so the unit tests run in plain Node.

const VSCODE_FILES = new Set(['settings.json', 'keybindings.json', 'tasks.json', 'launch.json', 'extensions.json', 'mcp.json']);

/** Is `uri` (a URI string) one of VS Code's own configuration files? */
export function isEditorConfigFile(uri: string): boolean {
  if (uri.startsWith('vscode-userdata:') || uri.startsWith('vscode-settings:')) return true;
  const p = decodeURIComponent(uri.replace(/^[a-z][\w+.-]*:\/\/[^/]*/i, '')).replace(/\\/g, '/');
  if (/\.code-workspace$/i.test(p)) return true;
  const parts = p.split('/');
  const name = parts.at(-1) ?? '';
  if (!VSCODE_FILES.has(name.toLowerCase())) return false;
  // .vscode/settings.json in a folder; <user data>/User/settings.json, also per profile
  // (User/profiles/<id>/settings.json), and User/snippets is not one of them.
  const parent = parts.at(-2) ?? '';
  return parent === '.vscode' || parent === 'User' || parts.at(-3) === 'profiles';
}
