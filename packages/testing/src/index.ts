/**
 * @mycorrizal/testing — the test kit of this repository (private, never published). Test
 * files of every package import it; no package's `src/` may (the module boundaries forbid it),
 * so published packages carry no test dependency.
 *
 * It depends on no Mycorrizal package, so the tests of any package can use it without a cycle.
 */
export * from './Logs.js'
export * from './Loop.js'
export * from './Mesh.js'
export { testApi } from './Vitest.js'
