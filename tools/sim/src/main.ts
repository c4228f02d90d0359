/**
 * npm run sim -- --seeds N            seeds 1..N
 * npm run sim -- --seed S             replay one seed (the same output every time)
 *   --first F     first seed of --seeds (default 1)
 *   --nodes N     members at the start (3-7; default drawn from the seed)
 *   --ops N       client operations per seed (default 200)
 *   --gap MS      mean time between client operations (virtual ms, default 100); 1-5 makes
 *                 writes of one key overlap all the time (a hot key)
 *   --faults a,b  fault families: kill,pause,partition,delay,membership,skew (default all; none)
 *   --verbose     the nodes' logs on stderr
 *
 * Prints one line per seed, every violation with a shortened history, and as its last line one
 * JSON object {"seeds","ops","faults","violations"}. Exit code 1 on any violation.
 */
import { parseArgs } from 'node:util'
import type { FaultChoice, SimOptions } from './Simulator.js'

const { values } = parseArgs({
  options: {
    seeds: { type: 'string' },
    seed: { type: 'string' },
    first: { type: 'string' },
    nodes: { type: 'string' },
    ops: { type: 'string' },
    gap: { type: 'string' },
    faults: { type: 'string' },
    verbose: { type: 'boolean' }
  }
})

const int = (name: string, text: string | undefined, min: number, max: number): number | undefined => {
  if (text === undefined) return undefined
  const n = Number(text)
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    console.error(`--${name} must be an integer from ${min} to ${max}, got ${text}`)
    process.exit(2)
  }
  return n
}

const seedList = (): Array<number> => {
  const one = int('seed', values.seed, 0, Number.MAX_SAFE_INTEGER)
  if (one !== undefined) return [one]
  const count = int('seeds', values.seeds, 1, 1_000_000) ?? 1
  const first = int('first', values.first, 0, Number.MAX_SAFE_INTEGER) ?? 1
  return Array.from({ length: count }, (_, i) => first + i)
}

const nodes = int('nodes', values.nodes, 3, 7)
const ops = int('ops', values.ops, 1, 100_000)
const gapMs = int('gap', values.gap, 1, 10_000)
const families = ['kill', 'pause', 'partition', 'delay', 'membership', 'skew']
const faultList = values.faults === undefined || values.faults === 'none' ? [] : values.faults.split(',').map((s) => s.trim())
const unknown = faultList.filter((f) => !families.includes(f))
if (unknown.length > 0) {
  console.error(`unknown fault '${unknown[0]}' (one of ${families.join(', ')}, or none)`)
  process.exit(2)
}
const faults = values.faults === undefined ? undefined : (faultList as ReadonlyArray<FaultChoice>)
const seeds = seedList()

// the simulator loads the whole stack: only once the options are valid
const { describeViolation, distinct, summaryLine } = await import('./Report.js')
const { runSeed } = await import('./Simulator.js')

const totals = { seeds: 0, ops: 0, faults: 0, violations: 0 }
for (const seed of seeds) {
  const options: SimOptions = {
    seed,
    ...(nodes === undefined ? {} : { nodes }),
    ...(ops === undefined ? {} : { ops }),
    ...(gapMs === undefined ? {} : { gapMs }),
    ...(faults === undefined ? {} : { faults }),
    ...(values.verbose === true ? { verbose: true } : {})
  }
  const result = await runSeed(options)
  const findings = distinct(result.violations)
  totals.seeds++
  totals.ops += result.ops
  totals.faults += result.faults
  totals.violations += findings.length
  console.log(summaryLine(result))
  for (const finding of findings) console.log(describeViolation(result, finding).join('\n'))
}
console.log(JSON.stringify(totals))
process.exitCode = totals.violations > 0 ? 1 : 0
