// Builds the demo page (web/apps/demo) into internal/webui/dist/demo, which
// herald embeds: index.html, app.js and app.css, minified, with fixed names
// and the same bytes from the same sources (so CI can rebuild and compare).
// @herald/react and @herald/client are bundled from their sources.
//
//   node scripts/build-demo.mjs [--outdir DIR]
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const web = join(dirname(fileURLToPath(import.meta.url)), '..');
const app = join(web, 'apps', 'demo');
const { values } = parseArgs({ options: { outdir: { type: 'string' } } });
const out = resolve(values.outdir ?? join(web, '..', 'internal', 'webui', 'dist', 'demo'));

mkdirSync(out, { recursive: true });
for (const f of ['index.html', 'app.js', 'app.css']) rmSync(join(out, f), { force: true });

await build({
  entryPoints: [join(app, 'src', 'main.tsx')],
  outfile: join(out, 'app.js'), // and app.css, from the CSS it imports
  bundle: true,
  format: 'esm',
  target: 'es2020',
  minify: true,
  jsx: 'automatic',
  define: { 'process.env.NODE_ENV': '"production"' },
  alias: {
    '@herald/react': join(web, 'packages', 'react', 'src', 'index.ts'),
    '@herald/client': join(web, 'packages', 'client', 'src', 'index.ts'),
  },
  legalComments: 'eof',
  charset: 'utf8',
  logLevel: 'warning',
});
copyFileSync(join(app, 'index.html'), join(out, 'index.html'));

for (const f of ['app.js', 'app.css']) {
  const b = readFileSync(join(out, f));
  console.log(`demo ${f}: ${b.length} bytes minified, ${gzipSync(b, { level: 9 }).length} bytes minified+gzipped`);
}
