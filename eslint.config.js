// What a reviewer would otherwise catch by eye: a promise nobody awaits, an error nobody handles. Type-aware
// (typescript-eslint, on tsconfig.json's files); layout is Prettier's (npm run format), not the linter's.
import js from '@eslint/js'
import { defineConfig } from 'eslint/config'
import tseslint from 'typescript-eslint'

/** `.catch(() => {})` and `.catch(() => undefined)`: the error is dropped where it is caught. */
const SWALLOWED = 'CallExpression[callee.property.name="catch"] > ArrowFunctionExpression'
const swallowedMessage = 'a swallowed error: handle it, rethrow it with a cause, or log it'

export default defineConfig(
  // The examples are users' projects, type-checked in one by test/host/recipes.test.ts; fixtures likewise.
  {
    ignores: [
      'dist/',
      'node_modules/',
      'patches/',
      'results/',
      'examples/*/',
      'test/fixtures/package/',
      '**/*.js',
      '**/*.mjs',
      '**/*.cjs',
    ],
  },
  {
    files: ['**/*.ts'],
    extends: [js.configs.recommended, tseslint.configs.recommended],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      'no-empty': ['error', { allowEmptyCatch: false }],
      // A class written with \u escapes lists code points on purpose (SASLprep's tables); a literal combining mark still fails.
      'no-misleading-character-class': ['error', { allowEscape: true }],
      'no-restricted-syntax': [
        'error',
        { selector: `${SWALLOWED}[body.type="BlockStatement"][body.body.length=0]`, message: swallowedMessage },
        { selector: `${SWALLOWED}[body.type="Identifier"][body.name="undefined"]`, message: swallowedMessage },
      ],
    },
  },
)
