// Builds the admin page (web/apps/admin) into internal/webui/dist/admin, the
// files Herald embeds and serves at /admin: index.html (at /admin) and its
// assets app.js and app.css (at /admin/app.js, /admin/app.css, which is why
// index.html names them ./admin/...). Fixed names, minified, and the same
// bytes on every run, so that CI can rebuild and compare with what is
// committed. `--outdir DIR` writes elsewhere (a test builds there and
// compares).
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const web = join(dirname(fileURLToPath(import.meta.url)), '..');
const app = join(web, 'apps', 'admin');

let outdir = join(web, '..', 'internal', 'webui', 'dist', 'admin');
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--outdir' && args[i + 1]) outdir = resolve(args[++i]);
  else if (a.startsWith('--outdir=')) outdir = resolve(a.slice('--outdir='.length));
  else {
    console.error(`build-admin: unknown argument ${a}\nusage: node scripts/build-admin.mjs [--outdir DIR]`);
    process.exit(2);
  }
}
mkdirSync(outdir, { recursive: true });

const common = {
  bundle: true,
  minify: true,
  target: 'es2020',
  legalComments: 'none',
  charset: 'utf8',
  logLevel: 'warning',
  absWorkingDir: web,
};
await build({
  ...common,
  entryPoints: [join(app, 'src', 'main.ts')],
  outfile: join(outdir, 'app.js'),
  format: 'esm',
  tsconfig: join(app, 'tsconfig.json'), // its paths point @herald/client at the sources
});
await build({ ...common, entryPoints: [join(app, 'src', 'app.css')], outfile: join(outdir, 'app.css') });
copyFileSync(join(app, 'index.html'), join(outdir, 'index.html'));

for (const f of ['index.html', 'app.js', 'app.css']) {
  const b = readFileSync(join(outdir, f));
  console.log(`admin/${f}: ${b.length} bytes, ${gzipSync(b, { level: 9 }).length} gzipped`);
}
