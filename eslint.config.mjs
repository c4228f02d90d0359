import nx from '@nx/eslint-plugin'
import tseslint from 'typescript-eslint'

export default [
  ...nx.configs['flat/base'],
  ...nx.configs['flat/typescript'],
  {
    ignores: ['**/dist', '**/out-tsc', '**/node_modules', '**/.nx', '**/vitest.config.*.timestamp*']
  },
  {
    files: ['**/*.ts', '**/*.mts', '**/*.js', '**/*.mjs'],
    ignores: ['**/eslint.config.mjs', '**/vitest.config.ts'],
    rules: {
      '@nx/enforce-module-boundaries': [
        'error',
        {
          enforceBuildableLibDependency: true,
          allow: [],
          depConstraints: [
            { sourceTag: 'layer:wire', onlyDependOnLibsWithTags: [] },
            { sourceTag: 'layer:nodosum', onlyDependOnLibsWithTags: ['layer:wire'] },
            { sourceTag: 'layer:streams', onlyDependOnLibsWithTags: ['layer:wire', 'layer:nodosum'] },
            { sourceTag: 'layer:mycel', onlyDependOnLibsWithTags: ['layer:wire', 'layer:nodosum', 'layer:streams'] },
            { sourceTag: 'layer:coordination', onlyDependOnLibsWithTags: ['layer:wire', 'layer:nodosum', 'layer:streams', 'layer:mycel'] },
            { sourceTag: 'layer:metrics', onlyDependOnLibsWithTags: ['layer:wire', 'layer:nodosum', 'layer:streams', 'layer:mycel', 'layer:coordination'] },
            { sourceTag: 'layer:umbrella', onlyDependOnLibsWithTags: ['layer:wire', 'layer:nodosum', 'layer:streams', 'layer:mycel', 'layer:coordination', 'layer:metrics'] },
            { sourceTag: 'layer:app', onlyDependOnLibsWithTags: ['layer:wire', 'layer:nodosum', 'layer:streams', 'layer:mycel', 'layer:coordination', 'layer:metrics', 'layer:umbrella'] },
            { sourceTag: 'layer:tool', onlyDependOnLibsWithTags: ['layer:wire', 'layer:nodosum', 'layer:streams', 'layer:mycel', 'layer:coordination', 'layer:metrics', 'layer:umbrella', 'layer:tool'] },
            // the test kit depends on no Mycorrizal package, so any package's tests may use it
            { sourceTag: 'layer:testing', onlyDependOnLibsWithTags: [] }
          ]
        }
      ]
    }
  },
  {
    // test files (and only they) may also use the private test kit, @mycorrizal/testing
    files: ['**/test/**/*.ts', '**/*.test.ts'],
    rules: {
      '@nx/enforce-module-boundaries': [
        'error',
        {
          // tests are never built: a non-buildable test kit is fine
          enforceBuildableLibDependency: false,
          allow: [],
          depConstraints: [
            { sourceTag: 'layer:wire', onlyDependOnLibsWithTags: ['layer:testing'] },
            { sourceTag: 'layer:nodosum', onlyDependOnLibsWithTags: ['layer:wire', 'layer:testing'] },
            { sourceTag: 'layer:streams', onlyDependOnLibsWithTags: ['layer:wire', 'layer:nodosum', 'layer:testing'] },
            { sourceTag: 'layer:mycel', onlyDependOnLibsWithTags: ['layer:wire', 'layer:nodosum', 'layer:streams', 'layer:testing'] },
            { sourceTag: 'layer:coordination', onlyDependOnLibsWithTags: ['layer:wire', 'layer:nodosum', 'layer:streams', 'layer:mycel', 'layer:testing'] },
            { sourceTag: 'layer:metrics', onlyDependOnLibsWithTags: ['layer:wire', 'layer:nodosum', 'layer:streams', 'layer:mycel', 'layer:coordination', 'layer:testing'] },
            { sourceTag: 'layer:umbrella', onlyDependOnLibsWithTags: ['layer:wire', 'layer:nodosum', 'layer:streams', 'layer:mycel', 'layer:coordination', 'layer:metrics', 'layer:testing'] },
            { sourceTag: 'layer:app', onlyDependOnLibsWithTags: ['layer:wire', 'layer:nodosum', 'layer:streams', 'layer:mycel', 'layer:coordination', 'layer:metrics', 'layer:umbrella', 'layer:testing'] },
            {
              sourceTag: 'layer:tool',
              onlyDependOnLibsWithTags: ['layer:wire', 'layer:nodosum', 'layer:streams', 'layer:mycel', 'layer:coordination', 'layer:metrics', 'layer:umbrella', 'layer:tool', 'layer:testing']
            },
            { sourceTag: 'layer:testing', onlyDependOnLibsWithTags: [] }
          ]
        }
      ]
    }
  },
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-empty-function': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
      'no-restricted-syntax': ['error', { selector: "CallExpression[callee.name='setInterval']", message: 'Use Effect.schedule / Effect.repeat owned by a Scope instead of a bare setInterval.' }]
    }
  },
  {
    // effect-barrel-imports: `import { Effect } from 'effect'` loads every module of Effect (Schema,
    // FastCheck, ...) at import time; import each module from its own path instead.
    files: ['**/src/**/*.ts', '**/src/**/*.mts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [{ name: 'effect', message: "Import each module from its own path (import * as Effect from 'effect/Effect'): the barrel loads all of Effect." }]
        }
      ]
    }
  },
  {
    files: ['**/package.json'],
    rules: {
      '@nx/dependency-checks': [
        'error',
        {
          ignoredFiles: ['{projectRoot}/eslint.config.{js,cjs,mjs}', '{projectRoot}/vitest.config.{js,ts,mjs,mts}', '{projectRoot}/test/**/*', '{projectRoot}/**/*.test.ts'],
          ignoredDependencies: ['tslib'],
          // packages may install their own versions under their node_modules (npm workspaces)
          checkVersionMismatches: false
        }
      ]
    },
    languageOptions: { parser: await import('jsonc-eslint-parser') }
  }
]
