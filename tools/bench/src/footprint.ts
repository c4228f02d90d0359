/**
 * What embedding a node costs a service: import time and RSS, as plain Node on the built and
 * packed packages (no tsx), against two baselines measured in the same run — a bare `node` and
 * an import of `effect/Effect` alone (the floor this stack's choice of Effect sets).
 *
 * Phases, each a fresh `node --expose-gc` process in a blank npm project with the tarballs
 * installed: bare node; `import('effect/Effect')`; `import('mycorrizal')` (medians of RUNS);
 * then one long process: a node started and idle, 10,000 and 100,000 puts of 100 bytes, and
 * 1,000 messages of 1 MiB sent to it by a peer process — RSS after each, raw, after a full
 * collection and after the idle trim (`FOOTPRINT_IDLE_MS`, default 11 s: the streams buffer
 * pool drops its free buffers after 10 s without use).
 *
 * Last line: {"import_ms","effect_core_ms","import_ratio","import_rss_mb","idle_node_rss_mb",
 * "rss_after_puts_mb","rss_after_bulk_mb","settled_rss_mb","baseline_rss_mb",
 * "idle_node_released_mb","after_puts_released_mb","after_bulk_released_mb"} (MiB; the
 * `released` figures after three more full collections, when V8 has given back the pages it
 * pools), then the judged figures: {"idle_overhead_mb","puts_overhead_mb","bulk_overhead_mb"}
 * (the settled figures above — after a full collection and the idle trim — less
 * `baseline_rss_mb`; puts: the larger of the two put phases) and "targets_met" (all three and
 * `import_ratio` within the targets below; the line before it says which were missed).
 * Targets (issue "Footprint"): import_ratio <= 2; RSS over bare node <= 60 MiB idle and
 * <= 100 MiB after each traffic phase once settled.
 */
import { execFileSync, spawn } from 'node:child_process'
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { packAndInstall, publishablePackages, workspaceRoot } from '@mycorrizal/package-check'
import { printResult } from './report.js'

const RUNS = Number(process.env['FOOTPRINT_RUNS'] ?? 5)
const IDLE_MS = Number(process.env['FOOTPRINT_IDLE_MS'] ?? 11_000)
const BULK_MESSAGES = Number(process.env['FOOTPRINT_BULK_MESSAGES'] ?? 1_000)
/** How long the idle node then waits with no forced collection, to see what V8 returns by itself (0: skipped). */
const LONG_IDLE_MS = Number(process.env['FOOTPRINT_LONG_IDLE_MS'] ?? 0)
/** Extra `node` flags of the node phase, e.g. `--max-semi-space-size=2` (space-separated). */
const NODE_FLAGS = (process.env['FOOTPRINT_NODE_FLAGS'] ?? '').split(' ').filter((f) => f.length > 0)

/** Issue #20's targets: import time over `effect/Effect`'s, RSS over bare node's once settled. */
const TARGETS = { importRatio: 2.0, idleOverheadMb: 60, trafficOverheadMb: 100 } as const

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}
const round = (x: number, digits = 1): number => Number(x.toFixed(digits))

// The children's JSON is this tool's own (footprint-child.mjs); read loosely.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = Record<string, any>
const lastJson = (text: string): Json => JSON.parse(text.trim().split('\n').at(-1)!)

const main = async () => {
  if (process.env['FOOTPRINT_SKIP_BUILD'] !== '1') {
    console.log('building the packages (nx build) ...')
    execFileSync('npx', ['nx', 'run-many', '-t', 'build', '--outputStyle=static'], { cwd: workspaceRoot, stdio: ['ignore', 'ignore', 'inherit'] })
  }
  console.log('packing and installing them into a blank project ...')
  const project = packAndInstall(publishablePackages())
  const scratch = mkdtempSync(join(tmpdir(), 'mycorrizal-footprint-'))
  try {
    const child = join(project.dir, 'footprint-child.mjs')
    copyFileSync(join(import.meta.dirname, 'footprint-child.mjs'), child)
    const run = (args: ReadonlyArray<string>) =>
      lastJson(execFileSync(process.execPath, ['--expose-gc', child, ...args], { cwd: project.dir, encoding: 'utf8', timeout: 600_000 }))

    const bare = Array.from({ length: RUNS }, () => run(['bare'])['rss'] as number)
    const effect = Array.from({ length: RUNS }, () => run(['import', 'effect/Effect']))
    const mycorrizal = Array.from({ length: RUNS }, () => run(['import', 'mycorrizal']))
    const baselineRss = median(bare)
    const effectMs = median(effect.map((r) => r['ms']))
    const importMs = median(mycorrizal.map((r) => r['ms']))
    console.log(`bare node: rss ${bare.map((x) => round(x)).join(', ')} MiB`)
    console.log(`import effect/Effect: ${effect.map((r) => round(r['ms'])).join(', ')} ms; rss ${effect.map((r) => round(r['rss'])).join(', ')} MiB`)
    console.log(`import mycorrizal: ${mycorrizal.map((r) => round(r['ms'])).join(', ')} ms; rss ${mycorrizal.map((r) => round(r['rss'])).join(', ')} MiB`)

    const seedFile = join(scratch, 'seed')
    const nodeProc = spawn(process.execPath, ['--expose-gc', ...NODE_FLAGS, child, 'node', String(IDLE_MS), seedFile, String(BULK_MESSAGES), String(LONG_IDLE_MS)], { cwd: project.dir, stdio: ['ignore', 'pipe', 'inherit'] })
    let nodeOut = ''
    nodeProc.stdout.on('data', (chunk) => (nodeOut += chunk))
    const nodeExit = new Promise<number | null>((resolve) => nodeProc.once('exit', resolve))
    let seed = ''
    for (let i = 0; i < 3_000 && seed === ''; i++) {
      try {
        seed = readFileSync(seedFile, 'utf8')
      } catch {
        await new Promise((r) => setTimeout(r, 100))
      }
      if (nodeProc.exitCode !== null) break
    }
    if (seed === '') throw new Error('the node phase did not start its node')
    const peer = lastJson(execFileSync(process.execPath, [child, 'peer', seed, String(BULK_MESSAGES)], { cwd: project.dir, encoding: 'utf8', timeout: 600_000 }))
    const code = await nodeExit
    if (code !== 0) throw new Error(`the node phase exited with ${code}`)
    const steps = lastJson(nodeOut)
    const line = (label: string, s: Json) =>
      console.log(
        `${label}: ${['raw', 'collected', 'trimmed', 'released']
          .filter((k) => s[k] !== undefined)
          .map((k) => `${k} rss ${round(s[k].rss)} (heap ${round(s[k].heap)}, buffers ${round(s[k].arrayBuffers)})`)
          .join('; ')} MiB`
      )
    console.log(`node: import ${round(steps['import_ms'])} ms, ready ${round(steps['ready_ms'])} ms`)
    line('idle node', steps['idle'])
    if (steps['idle_long'] !== undefined)
      console.log(
        `idle node before any forced collection, over ${LONG_IDLE_MS / 1000} s: ${steps['idle_long']
          .map((s: Json) => `${round(s.at / 1000)} s rss ${round(s.rss)} (heap ${round(s.heap)}, total ${round(s.heapTotal)})`)
          .join('; ')} MiB`
      )
    line('after 10,000 puts', steps['puts_10k'])
    line('after 100,000 puts', steps['puts_100k'])
    line('bucket deleted', steps['bucket_deleted'])
    line(`after ${steps['bulk'].received} of ${peer['sent']} messages of 1 MiB (${peer['resent']} sent again after a dropped connection)`, steps['bulk'])
    console.log(`settled: rss ${round(steps['settled'].rss)} MiB; baseline (bare node) ${round(baselineRss)} MiB`)
    const released = (s: Json) => round(s.released.rss)
    // The judged figures: each phase's settled RSS (after a full collection and the idle trim)
    // less bare node's, against the targets.
    const idleOverhead = round(steps['idle'].trimmed.rss - baselineRss)
    const putsOverhead = round(Math.max(steps['puts_10k'].trimmed.rss, steps['puts_100k'].trimmed.rss) - baselineRss)
    const bulkOverhead = round(steps['bulk'].trimmed.rss - baselineRss)
    const importRatio = round(importMs / effectMs, 2)
    const misses = [
      ...(importRatio > TARGETS.importRatio ? [`import_ratio ${importRatio} > ${TARGETS.importRatio}`] : []),
      ...(idleOverhead > TARGETS.idleOverheadMb ? [`idle +${idleOverhead} MiB > +${TARGETS.idleOverheadMb}`] : []),
      ...(putsOverhead > TARGETS.trafficOverheadMb ? [`after puts +${putsOverhead} MiB > +${TARGETS.trafficOverheadMb}`] : []),
      ...(bulkOverhead > TARGETS.trafficOverheadMb ? [`after bulk +${bulkOverhead} MiB > +${TARGETS.trafficOverheadMb}`] : [])
    ]
    console.log(misses.length === 0 ? 'targets met' : `targets missed: ${misses.join('; ')}`)
    printResult({
      import_ms: round(importMs),
      effect_core_ms: round(effectMs),
      import_ratio: round(importMs / effectMs, 2),
      import_rss_mb: round(median(mycorrizal.map((r) => r['rss']))),
      idle_node_rss_mb: round(steps['idle'].trimmed.rss),
      rss_after_puts_mb: round(Math.max(steps['puts_10k'].trimmed.rss, steps['puts_100k'].trimmed.rss)),
      rss_after_bulk_mb: round(steps['bulk'].trimmed.rss),
      settled_rss_mb: round(steps['settled'].rss),
      baseline_rss_mb: round(baselineRss),
      idle_node_released_mb: released(steps['idle']),
      after_puts_released_mb: Math.max(released(steps['puts_10k']), released(steps['puts_100k'])),
      after_bulk_released_mb: released(steps['bulk']),
      idle_overhead_mb: idleOverhead,
      puts_overhead_mb: putsOverhead,
      bulk_overhead_mb: bulkOverhead,
      targets_met: misses.length === 0
    })
  } finally {
    project.dispose()
    rmSync(scratch, { recursive: true, force: true })
  }
}

await main()
