// Bundles the extension (Node, CommonJS, `vscode` external), the chat webview script (browser),
// and, with --tests, the unit tests and the end-to-end driver.
import { build } from 'esbuild';
import { readdirSync } from 'node:fs';

const tests = process.argv.includes('--tests');
const common = { bundle: true, sourcemap: true, target: 'es2022', logLevel: 'warning' };

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

if (tests) {
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
