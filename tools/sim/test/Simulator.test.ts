import { describe, expect, it } from '@effect/vitest'
import { readFileSync } from 'node:fs'
import { describeViolation, distinct } from '../src/Report.js'
import { type FaultChoice, runSeed, type RunResult, type SimOptions } from '../src/Simulator.js'

interface SeedCase {
  readonly seed: number
  readonly ops: number
  readonly nodes?: number
  readonly faults?: ReadonlyArray<FaultChoice>
  /** Mean time between client operations (virtual ms; `--gap`). */
  readonly gapMs?: number
}

interface Regression extends SeedCase {
  /** The promise this seed broke when it was found. */
  readonly promise: string
  /** True while it still breaks it on the current engine (its test is `it.fails`). */
  readonly failsToday: boolean
  readonly mechanism: string
}

const load = <A>(name: string): ReadonlyArray<A> => JSON.parse(readFileSync(new URL(`../seeds/${name}`, import.meta.url), 'utf8')) as ReadonlyArray<A>

const optionsOf = (c: SeedCase): SimOptions => ({
  seed: c.seed,
  ops: c.ops,
  ...(c.nodes === undefined ? {} : { nodes: c.nodes }),
  ...(c.faults === undefined ? {} : { faults: c.faults }),
  ...(c.gapMs === undefined ? {} : { gapMs: c.gapMs })
})

/** The violations, told as the CLI tells them: the assertion message is the reproduction. */
const told = (result: RunResult): string =>
  distinct(result.violations)
    .map((f) => describeViolation(result, f).join('\n'))
    .join('\n')

describe('simulator', () => {
  it('one seed replays exactly: two runs of it record the same history and the same violations', async () => {
    const options: SimOptions = { seed: 11, ops: 60 }
    const a = await runSeed(options)
    const b = await runSeed(options)
    expect(a.ops).toBeGreaterThan(60)
    expect(a.faults).toBeGreaterThan(0)
    expect(JSON.stringify(b.history)).toBe(JSON.stringify(a.history))
    expect(b.violations).toEqual(a.violations)
    // and a different seed runs differently
    const c = await runSeed({ ...options, seed: 12 })
    expect(JSON.stringify(c.history)).not.toBe(JSON.stringify(a.history))
  }, 120_000)

  describe('CI seeds: hold on the current engine', () => {
    for (const c of load<SeedCase>('ci.json')) {
      it(`seed ${c.seed} (${c.ops} ops${c.gapMs === undefined ? '' : ` ${c.gapMs} ms apart`}, faults ${c.faults === undefined ? 'all' : c.faults.length === 0 ? 'none' : c.faults.join(',')})`, async () => {
        const result = await runSeed(optionsOf(c))
        expect(result.ops).toBeGreaterThanOrEqual(c.ops)
        expect(result.violations, told(result)).toEqual([])
      }, 120_000)
    }
  })

  describe('regression seeds: every seed that ever broke a promise', () => {
    for (const r of load<Regression>('regressions.json')) {
      // failsToday: this seed breaks r.promise on the current engine (see r.mechanism); `it.fails`
      // until the engine holds the promise, then `it` (flip failsToday in seeds/regressions.json)
      const test = r.failsToday ? it.fails : it
      test(`seed ${r.seed} (${r.ops} ops${r.gapMs === undefined ? '' : ` ${r.gapMs} ms apart`}, faults ${r.faults === undefined ? 'all' : r.faults.join(',')}) holds ${r.promise}`, async () => {
        const result = await runSeed(optionsOf(r))
        expect(result.violations, told(result)).toEqual([])
      }, 120_000)
    }
  })
})
