// Builds @herald/react: an ES module bundle (readable), a minified one, the
// type declarations, and prints the minified + gzipped size that docs/web.md
// reports. react and @herald/client stay imports (peer and dependency).
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..', 'packages', 'react');
const common = {
  entryPoints: [join(pkg, 'src', 'index.ts')],
  bundle: true,
  format: 'esm',
  target: 'es2020',
  external: ['react', 'react/*', '@herald/client'],
  logLevel: 'warning',
};
await build({ ...common, outfile: join(pkg, 'dist', 'index.js') });
await build({ ...common, outfile: join(pkg, 'dist', 'herald-react.min.js'), minify: true });
execFileSync(process.execPath, [join(pkg, '..', '..', 'node_modules', 'typescript', 'bin', 'tsc'), '-p', pkg], { stdio: 'inherit' });

const min = readFileSync(join(pkg, 'dist', 'herald-react.min.js'));
const gz = gzipSync(min, { level: 9 });
console.log(`@herald/react: ${min.length} bytes minified, ${gz.length} bytes minified+gzipped (without react and @herald/client)`);
