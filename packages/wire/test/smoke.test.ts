import { expect, it } from '@effect/vitest'
import { VERSION } from '../src/index.js'
it('v', () => { expect(VERSION).toBe(1) })
