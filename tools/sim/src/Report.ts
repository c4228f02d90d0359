/**
 * How a run is told: one line per seed, and for each broken promise the seed, the promise and
 * a shortened history (the operations on the key involved and every fault) that reproduces it.
 */
import { promiseNames, type Violation } from './Checker.js'
import type { RunResult, SimOptions } from './Simulator.js'
import type { Fault, History, Op } from './History.js'

const secs = (ms: number) => `${(ms / 1000).toFixed(3)}s`

const size = (n: number) => (n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(2)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`)

export const formatOp = (op: Op): string => {
  const what =
    op.kind === 'put' ? `put ${op.key} #${op.id} (${size(op.size ?? 0)} ${op.hash})` : op.kind === 'incr' ? `incr ${op.key} #${op.id} by ${op.delta}` : `${op.kind} ${op.key} #${op.id}`
  const result =
    op.count !== undefined && (op.res === 'ok' || op.res === 'hit' || op.res === 'miss')
      ? `${op.res} ${op.count}`
      : op.res === 'hit'
        ? `hit ${op.got}`
        : op.res === 'error'
          ? `error ${op.err}`
          : op.res === 'lost'
            ? 'never completed'
            : String(op.res)
  const end = op.comp === undefined ? '' : ` at ${secs(op.comp)}`
  return `${secs(op.inv)}  ${op.node.padEnd(4)} ${op.final === true ? 'final ' : ''}${what} -> ${result}${end}`
}

export const formatFault = (f: Fault): string => `${secs(f.at)}  fault ${f.kind} ${f.nodes.join(',')}${f.detail === undefined ? '' : ` ${f.detail}`}`

/** The command that replays a run. */
export const replayCommand = (options: SimOptions): string => {
  const parts = ['npm run sim --', `--seed ${options.seed}`]
  if (options.nodes !== undefined) parts.push(`--nodes ${options.nodes}`)
  if (options.ops !== undefined) parts.push(`--ops ${options.ops}`)
  if (options.faults !== undefined) parts.push(`--faults ${options.faults.length === 0 ? 'none' : options.faults.join(',')}`)
  return parts.join(' ')
}

/** One finding per (promise, bucket, key): the first violation of each, with how many reads showed it. */
export const distinct = (violations: ReadonlyArray<Violation>): Array<{ readonly first: Violation; readonly count: number }> => {
  const groups = new Map<string, { first: Violation; count: number }>()
  for (const v of violations) {
    const id = `${v.promise}/${v.bucket}/${v.key}/${v.promise === 'P6' ? v.node : ''}`
    const g = groups.get(id)
    if (g === undefined) groups.set(id, { first: v, count: 1 })
    else g.count++
  }
  return [...groups.values()]
}

/** The operations on the key involved, and every fault, in time order. */
export const shortHistory = (history: History, v: Violation): Array<string> => {
  const ops = history.ops.filter((op) => op.bucket === v.bucket && (v.key === '' ? op.node === v.node && op.kind === 'put' : op.key === v.key))
  const lines: Array<{ at: number; text: string }> = [
    ...ops.map((op) => ({ at: op.inv, text: formatOp(op) })),
    ...history.faults.map((f) => ({ at: f.at, text: formatFault(f) }))
  ]
  return lines.sort((a, b) => a.at - b.at).map((l) => l.text)
}

export const describeViolation = (result: RunResult, finding: { readonly first: Violation; readonly count: number }): Array<string> => {
  const v = finding.first
  return [
    `VIOLATION seed ${result.options.seed} ${v.promise} (${promiseNames[v.promise]})`,
    `  ${v.message}${finding.count > 1 ? ` (and ${finding.count - 1} more like it)` : ''}`,
    `  replay: ${replayCommand(result.options)}`,
    `  history of '${v.bucket}'/${v.key === '' ? v.node : v.key}, with every fault:`,
    ...shortHistory(result.history, v).map((l) => `    ${l}`),
    ...(v.promise === 'P4' && result.history.views !== undefined
      ? [`  members as each node saw them before the final reads: ${Object.entries(result.history.views).map(([n, m]) => `${n}=[${m.join(',')}]`).join(' ')}`]
      : [])
  ]
}

export const summaryLine = (result: RunResult): string => {
  const c = result.history.config
  const near = c.buckets.find((b) => b.near !== undefined)?.near
  return `seed ${result.options.seed}: ${c.nodes} nodes, R=${c.replicas}${near === undefined ? '' : `, near cache (ttl ${near.ttlMs} ms, trackedKeys ${near.trackedKeys})`}, ${result.ops} ops, ${result.faults} faults, ${secs(result.virtualMs)} simulated in ${result.wallMs} ms (${result.cpuMs} ms CPU), ${distinct(result.violations).length} violations`
}
