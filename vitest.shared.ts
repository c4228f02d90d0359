import type { UserWorkspaceConfig } from 'vitest/config'

/**
 * Test settings every project shares: sources resolved through the `@mycorrizal/source`
 * export condition (no build needed), Node environment, one fork per file.
 */
export const sharedTestConfig = (root: string, name: string): UserWorkspaceConfig => ({
  root,
  cacheDir: `${root}/node_modules/.vite`,
  resolve: { conditions: ['@mycorrizal/source'] },
  ssr: { resolve: { conditions: ['@mycorrizal/source'] } },
  test: {
    name,
    environment: 'node',
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    watch: false,
    reporters: ['default'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    coverage: { reportsDirectory: `${root}/coverage`, provider: 'v8' }
  }
})
