// The admin page Herald embeds (internal/webui/dist/admin) must be what the
// sources build: build into a temporary folder and compare, byte for byte.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const web = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const committed = join(web, '..', 'internal', 'webui', 'dist', 'admin');

describe('build-admin', () => {
  it('builds exactly the committed internal/webui/dist/admin (else run `npm run build:admin`)', () => {
    const out = mkdtempSync(join(tmpdir(), 'herald-admin-'));
    try {
      execFileSync(process.execPath, [join(web, 'scripts', 'build-admin.mjs'), '--outdir', out], { stdio: 'pipe' });
      const files = readdirSync(out).sort();
      expect(files).toEqual(['app.css', 'app.js', 'index.html']);
      expect(readdirSync(committed).sort()).toEqual(files);
      for (const f of files) {
        expect(readFileSync(join(out, f)).equals(readFileSync(join(committed, f))), `${f} differs from the build`).toBe(true);
      }
      const html = readFileSync(join(out, 'index.html'), 'utf8');
      // Herald serves it under a CSP without 'unsafe-inline', and the assets at /admin/...
      expect(html).toContain('src="./admin/app.js"');
      expect(html).toContain('href="./admin/app.css"');
      expect(html).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>/);
      expect(html).not.toMatch(/<style|\sstyle=|\son[a-z]+=/i);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 60_000);
});
