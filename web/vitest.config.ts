import { defineConfig } from 'vitest/config';
import { fileURLToPath } from 'node:url';

const src = (p: string) => fileURLToPath(new URL(p, import.meta.url));

export default defineConfig({
  // The workspace's packages from their sources, so that tests need no build.
  resolve: {
    alias: {
      '@herald/client': src('./packages/client/src/index.ts'),
      '@herald/react': src('./packages/react/src/index.ts'),
    },
  },
  esbuild: { jsx: 'automatic' },
  test: {
    // Browser code runs in jsdom: test files say so with a
    // `// @vitest-environment jsdom` first line.
    include: ['packages/*/test/**/*.test.{ts,tsx}', 'apps/*/test/**/*.test.{ts,tsx}', 'scripts/*.test.ts'],
    environment: 'node',
  },
});
