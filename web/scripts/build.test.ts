// The pages Herald embeds (internal/webui/dist/{demo,admin}) must be what the
// sources build: build each into a temporary folder and compare, byte for
// byte. A change to a page's sources comes with its build: `npm run build:ui`.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const web = join(dirname(fileURLToPath(import.meta.url)), '..');

describe.each(['demo', 'admin'])('the embedded %s page', (page) => {
  it(`is what scripts/build-${page}.mjs builds (else run \`npm run build:ui\` and commit internal/webui/dist)`, () => {
    const committed = join(web, '..', 'internal', 'webui', 'dist', page);
    const out = mkdtempSync(join(tmpdir(), `herald-${page}-`));
    try {
      execFileSync(process.execPath, [join(web, 'scripts', `build-${page}.mjs`), '--outdir', out], { stdio: 'pipe' });
      const files = readdirSync(out).sort();
      expect(files).toEqual(['app.css', 'app.js', 'index.html']);
      expect(readdirSync(committed).sort()).toEqual(files);
      for (const f of files) {
        expect(readFileSync(join(out, f)).equals(readFileSync(join(committed, f))), `${f} differs from the build`).toBe(true);
      }
      const html = readFileSync(join(out, 'index.html'), 'utf8');
      // Herald serves it under a CSP without 'unsafe-inline', and the assets at /{page}/...
      expect(html).toContain(`src="./${page}/app.js"`);
      expect(html).toContain(`href="./${page}/app.css"`);
      expect(html).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>/);
      expect(html).not.toMatch(/<style|\sstyle=|\son[a-z]+=/i);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 120_000);
});
