// Bundles the extension (Node, CommonJS, `vscode` external) and the chat webview script
// (browser) into dist/; with --tests, only the unit tests and the end-to-end driver into out/
// (so running the tests never touches what the .vsix is made from).
import { build } from 'esbuild';
import { readdirSync } from 'node:fs';

const common = { bundle: true, sourcemap: true, target: 'es2022', logLevel: 'warning' };

async function buildExtension() {
  await build({
    ...common,
    entryPoints: ['src/extension.ts'],
    outfile: 'dist/extension.js',
    platform: 'node',
    format: 'cjs',
    external: ['vscode'],
  });
  await build({
    ...common,
    entryPoints: ['src/webview/main.ts'],
    outfile: 'dist/webview.js',
    platform: 'browser',
    format: 'iife',
  });
}

async function buildTests() {
  const entries = readdirSync('test').filter((f) => f.endsWith('.test.ts')).map((f) => `test/${f}`);
  await build({
    ...common,
    entryPoints: entries,
    outdir: 'out/test',
    platform: 'node',
    format: 'cjs',
    // Pure logic only: the few modules that touch `vscode` get a thin fake.
    alias: { vscode: './test/fake-vscode.ts' },
  });
  await build({
    ...common,
    entryPoints: ['test/e2e/e2e.ts'],
    outfile: 'out/e2e/e2e.js',
    platform: 'node',
    format: 'cjs',
    external: ['playwright-core'],
  });
}

await (process.argv.includes('--tests') ? buildTests() : buildExtension());
