/**
 * Soak: a 3-node cluster, each node in its own process, under a steady mix of cache
 * operations (put, get, delete on a bucket with R = 2) and messages on a named stream. Every
 * node reports its RSS, heap, open handles, operations and errors every few seconds; at the
 * end one JSON line compares the end of the run with a baseline taken after the warm-up.
 * The traffic, the run's clock and the warm-up start on every node at once, when all three
 * nodes are up (a node that starts slowly on a busy machine is not counted as a lost member).
 *
 *   npm run soak -- --minutes 10
 *   npm run soak -- --seconds 30 --rate 300
 *   npm run soak -- --seconds 30 --join-delay-ms 9000   (n2 and n3 start 9 s after n1)
 */
import { createMycorrizal } from 'mycorrizal'
import { type ChildProcess, fork } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { parseArgs } from 'node:util'

/** What a worker reports. */
interface Sample {
  readonly type: 'sample'
  readonly id: string
  readonly t: number
  readonly rss: number
  readonly heapUsed: number
  readonly handles: number
  readonly members: number
  readonly ops: number
  readonly messagesSent: number
  readonly messagesReceived: number
  readonly errors: number
  readonly lastError: string | undefined
  /** The report made once the traffic stopped. */
  readonly final: boolean
}

type WorkerMessage = { readonly type: 'ready'; readonly id: string; readonly port: number } | Sample

interface WorkerSettings {
  readonly id: string
  readonly seeds: ReadonlyArray<string>
  readonly secret: string
  /** Cache operations per second. */
  readonly rate: number
  readonly reportMs: number
}

const KEYS = 5_000
const VALUE_BYTES = 256
const MESSAGE_BYTES = 1024

/** One node with its workload; reports over IPC until the parent stops it. */
const worker = async (settings: WorkerSettings) => {
  const node = await createMycorrizal({ nodeId: settings.id, host: '127.0.0.1', port: 0, seeds: [...settings.seeds], clusterSecret: settings.secret, logLevel: 'error' })
  await node.mycel.createBucket('soak', 60_000, 10_000)
  const app = node.registerApplication('soak')
  const events = app.createStream('events')
  let messagesReceived = 0
  events.setReceiveFunc(() => {
    messagesReceived++
  })
  process.send!({ type: 'ready', id: node.id, port: node.address.port } satisfies WorkerMessage)
  await new Promise<void>((resolve) => {
    const go = (m: { type?: string }) => {
      if (m.type !== 'start') return
      process.off('message', go)
      resolve()
    }
    process.on('message', go)
  })
  let ops = 0
  let messagesSent = 0
  let errors = 0
  let lastError: string | undefined
  const failed = (e: unknown) => {
    errors++
    lastError = e instanceof Error ? `${e.name}: ${e.message}` : String(e)
  }
  const started = Date.now()
  let running = true
  const value = new Uint8Array(VALUE_BYTES)
  const message = new Uint8Array(MESSAGE_BYTES)
  const tick = async () => {
    // a tenth of a second of work: puts, gets and a few deletes, one message per ten operations
    const n = Math.max(1, Math.round(settings.rate / 10))
    const work: Array<Promise<unknown>> = []
    for (let i = 0; i < n; i++) {
      const key = `k${Math.floor(Math.random() * KEYS)}`
      const roll = Math.random()
      const op = roll < 0.45 ? node.mycel.put('soak', key, value) : roll < 0.95 ? node.mycel.get('soak', key) : node.mycel.delete('soak', key)
      work.push(op.then(() => ops++, failed))
      if (i % 10 === 0 && node.nodes().length > 1) work.push(events.send(message).then(() => messagesSent++, failed))
    }
    await Promise.all(work)
  }
  const loop = async () => {
    let next = Date.now()
    while (running) {
      await tick()
      next += 100
      const wait = next - Date.now()
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
      else next = Date.now()
    }
  }
  const report = (final = false) =>
    process.send!({
      type: 'sample',
      id: node.id,
      t: Date.now() - started,
      rss: process.memoryUsage.rss(),
      heapUsed: process.memoryUsage().heapUsed,
      handles: process.getActiveResourcesInfo().filter((r) => r !== 'Timeout' && r !== 'Immediate').length,
      members: node.nodes().length,
      ops,
      messagesSent,
      messagesReceived,
      errors,
      lastError,
      final
    } satisfies WorkerMessage)
  const reporter = setTimeout(function again() {
    report(false)
    reporter.refresh()
  }, settings.reportMs)
  const done = loop()
  // the parent stops the traffic of every node before it stops any node
  const quiesce = async () => {
    running = false
    clearTimeout(reporter)
    await done
  }
  process.on('message', (m: { type?: string }) => {
    if (m.type === 'stop-traffic') void quiesce().then(() => report(true))
  })
  const stop = async () => {
    await quiesce()
    await node.shutdown()
    process.exit(0)
  }
  process.once('SIGTERM', () => void stop())
  process.once('disconnect', () => void stop())
}

/** Summary of a run: the baseline is the first sample after the warm-up, the end the last. */
export const summarize = (samples: ReadonlyArray<Sample>, warmupMs: number, durationMs: number) => {
  const ids = [...new Set(samples.map((s) => s.id))].sort()
  const per = ids.map((id) => {
    const mine = samples.filter((s) => s.id === id)
    const base = mine.find((s) => s.t >= warmupMs) ?? mine[0]!
    const end = mine.at(-1)!
    return { id, base, end }
  })
  const pct = (a: number, b: number) => Math.round(((b - a) / a) * 1000) / 10
  const mb = (n: number) => Math.round((n / 1024 / 1024) * 10) / 10
  const ops = per.reduce((sum, p) => sum + p.end.ops, 0)
  return {
    duration_s: Math.round(durationMs / 1000),
    nodes: ids.length,
    ops,
    ops_s: Math.round(ops / (durationMs / 1000)),
    messages_sent: per.reduce((sum, p) => sum + p.end.messagesSent, 0),
    messages_received: per.reduce((sum, p) => sum + p.end.messagesReceived, 0),
    errors: per.reduce((sum, p) => sum + p.end.errors, 0),
    last_error: per.map((p) => p.end.lastError).find((e) => e !== undefined) ?? null,
    members_min: Math.min(...samples.filter((s) => s.t >= warmupMs && !s.final).map((s) => s.members)),
    rss_base_mb: per.map((p) => mb(p.base.rss)),
    rss_end_mb: per.map((p) => mb(p.end.rss)),
    rss_growth_pct_max: Math.max(...per.map((p) => pct(p.base.rss, p.end.rss))),
    heap_base_mb: per.map((p) => mb(p.base.heapUsed)),
    heap_end_mb: per.map((p) => mb(p.end.heapUsed)),
    handles_base: per.map((p) => p.base.handles),
    handles_end: per.map((p) => p.end.handles),
    handles_growth_max: Math.max(...per.map((p) => p.end.handles - p.base.handles))
  }
}

const main = async () => {
  const { values } = parseArgs({
    options: { minutes: { type: 'string' }, seconds: { type: 'string' }, rate: { type: 'string', default: '500' }, 'join-delay-ms': { type: 'string', default: '0' } }
  })
  const seconds = values.seconds !== undefined ? Number(values.seconds) : Number(values.minutes ?? '10') * 60
  const rate = Number(values.rate)
  if (!Number.isFinite(seconds) || seconds < 10 || seconds > 24 * 3600) {
    console.error('--minutes or --seconds: a run of 10 s to 24 h')
    process.exit(2)
  }
  if (!Number.isInteger(rate) || rate < 10 || rate > 100_000) {
    console.error('--rate: cache operations per second per node, an integer from 10 to 100000')
    process.exit(2)
  }
  const joinDelayMs = Number(values['join-delay-ms'])
  if (!Number.isInteger(joinDelayMs) || joinDelayMs < 0 || joinDelayMs > 60_000) {
    console.error('--join-delay-ms: how long n2 and n3 start after n1, an integer from 0 to 60000')
    process.exit(2)
  }
  const durationMs = seconds * 1000
  const reportMs = Math.min(10_000, Math.max(1_000, Math.round(durationMs / 60)))
  const warmupMs = Math.min(60_000, durationMs / 4)
  const secret = randomBytes(32).toString('base64url')
  const samples: Array<Sample> = []
  const children: Array<ChildProcess> = []
  const start = (id: string, seeds: ReadonlyArray<string>) =>
    new Promise<number>((resolve, reject) => {
      const settings: WorkerSettings = { id, seeds, secret, rate, reportMs }
      const child = fork(new URL(import.meta.url).pathname, ['--worker', JSON.stringify(settings)], { execArgv: process.execArgv })
      children.push(child)
      child.on('message', (m: WorkerMessage) => {
        if (m.type === 'ready') resolve(m.port)
        else {
          samples.push(m)
          if (m.id === 'n1') {
            const now = ['n1', 'n2', 'n3'].flatMap((id) => samples.filter((s) => s.id === id).slice(-1))
            console.log(
              `t=${Math.round(m.t / 1000)}s ` +
                now.map((s) => `${s.id} rss=${(s.rss / 1048576).toFixed(1)}MiB handles=${s.handles} ops=${s.ops} msgs=${s.messagesSent}/${s.messagesReceived} errors=${s.errors}`).join(' | ')
            )
          }
        }
      })
      child.once('exit', (code) => reject(new Error(`node ${id} exited with ${code}`)))
    })
  const stopAll = () =>
    Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null) return resolve()
            const killer = setTimeout(() => child.kill('SIGKILL'), 10_000)
            child.once('exit', () => {
              clearTimeout(killer)
              resolve()
            })
            child.kill('SIGTERM')
          })
      )
    )
  process.once('SIGINT', () => void stopAll().then(() => process.exit(130)))
  const seedPort = await start('n1', [])
  if (joinDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, joinDelayMs))
  await Promise.all(['n2', 'n3'].map((id) => start(id, [`127.0.0.1:${seedPort}`])))
  for (const child of children) child.send({ type: 'start' })
  console.log(`soak: 3 nodes, ${rate} cache ops/s each plus messages, for ${seconds} s (baseline after ${Math.round(warmupMs / 1000)} s)`)
  await new Promise((resolve) => setTimeout(resolve, durationMs))
  // traffic stops everywhere first: a node that leaves while others still send would count as an error
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve) => {
          const final = (m: WorkerMessage) => {
            if (m.type === 'sample' && m.final) {
              child.off('message', final)
              resolve()
            }
          }
          child.on('message', final)
          child.send({ type: 'stop-traffic' })
        })
    )
  )
  await stopAll()
  console.log(JSON.stringify(summarize(samples, warmupMs, durationMs)))
}

const workerArg = process.argv.indexOf('--worker')
if (workerArg >= 0) await worker(JSON.parse(process.argv[workerArg + 1]!) as WorkerSettings)
else await main()
