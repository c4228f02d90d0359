/**
 * The test functions of `@effect/vitest`, as the compliance suites of the contract packages
 * take them (`transportSuite(name, factory, environment, testApi)` of `@mycorrizal/nodosum/testing`).
 */
import { describe, expect, it } from '@effect/vitest'

/** `describe`, `it` and `expect` of `@effect/vitest`. */
export const testApi = { describe, it, expect } as const
