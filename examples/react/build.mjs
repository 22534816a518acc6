// Bundles src/main.tsx into dist/app.js (React included) and copies
// index.html next to it: open dist/index.html from any static server.
//
// preserveSymlinks: @herald/client and @herald/react are file: dependencies,
// which npm links into node_modules. Resolved through their real path
// (web/packages/...), their `import 'react'` would find web/node_modules'
// React, a second copy next to this app's, and hooks would fail with
// "Invalid hook call". Keeping the link's path makes them resolve this
// app's node_modules, as a package installed from a registry would.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');
mkdirSync(dist, { recursive: true });
await build({
  entryPoints: [join(here, 'src', 'main.tsx')],
  outfile: join(dist, 'app.js'),
  bundle: true,
  format: 'esm',
  target: 'es2020',
  jsx: 'automatic',
  minify: true,
  sourcemap: true,
  preserveSymlinks: true,
  define: { 'process.env.NODE_ENV': '"production"' },
  logLevel: 'warning',
});
copyFileSync(join(here, 'index.html'), join(dist, 'index.html'));
console.log(`dist/app.js: ${statSync(join(dist, 'app.js')).size} bytes`);
