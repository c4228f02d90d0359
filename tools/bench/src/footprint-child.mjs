// One phase of `npm run bench:footprint`, run with plain `node --expose-gc` inside a blank npm
// project that has the packed packages installed (no tsx, no TypeScript sources).
// argv[2] is the phase; the last line of stdout is one JSON object.
import { performance } from 'node:perf_hooks'
import { getHeapSpaceStatistics } from 'node:v8'

const MiB = 1024 * 1024
const phase = process.argv[2]
/** RSS and V8's figures (MiB); `young`: the memory V8's young generation holds (both semi-spaces). */
const mem = () => {
  const m = process.memoryUsage()
  const young = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.physical_space_size ?? 0
  return { rss: m.rss / MiB, heap: m.heapUsed / MiB, heapTotal: m.heapTotal / MiB, young: young / MiB, arrayBuffers: m.arrayBuffers / MiB, external: m.external / MiB }
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
/**
 * What a service sees once the node has been idle `settleMs` with NO forced collection
 * (`settled`, the judged figure), sampled every 10 s on the way (`samples`); then after one
 * forced full collection (`collected`) and three more (`released`).
 *
 * Why idle and not forced: after traffic V8 keeps its young generation grown to its largest
 * (2 x 16 MiB on 64-bit Node 20) and some freed old-generation pages committed; a forced
 * collection right after the traffic does not give them back (the allocation rate it sees is
 * still high). V8's memory reducer does, by itself, once the process has been quiet: it looks
 * every 8 s and, at the latest 100 s after the last full collection (its watchdog), runs its
 * own collections that shrink the young generation to 1 MiB. 120 s covers that.
 */
const settleIdle = async (settleMs) => {
  const samples = []
  const from = performance.now()
  for (let at = 10_000; at < settleMs; at += 10_000) {
    await sleep(from + at - performance.now())
    samples.push({ at, ...mem() })
  }
  await sleep(from + settleMs - performance.now())
  const settled = mem()
  globalThis.gc?.()
  const collected = mem()
  for (let i = 0; i < 3; i++) globalThis.gc?.()
  return { samples, settled, collected, released: mem() }
}
/** The short settle of a step that is not judged: a full collection, `idleMs` (the buffer pool's trim), another. */
const settleForced = async (idleMs) => {
  globalThis.gc?.()
  const collected = mem()
  await sleep(idleMs)
  globalThis.gc?.()
  const trimmed = mem()
  for (let i = 0; i < 3; i++) globalThis.gc?.()
  return { collected, trimmed, released: mem() }
}
const out = (result) => process.stdout.write(`${JSON.stringify(result)}\n`)
const secret = 'footprint-bench-cluster-secret-0123456789abcdef'

if (phase === 'bare') {
  out({ rss: mem().rss })
} else if (phase === 'import') {
  const specifier = process.argv[3]
  const cpu = process.cpuUsage()
  const start = performance.now()
  await import(specifier)
  const ms = performance.now() - start
  const used = process.cpuUsage(cpu)
  out({ ms, cpuMs: (used.user + used.system) / 1000, rss: mem().rss })
} else if (phase === 'node') {
  // One node in this process: import, start, idle, puts; then a peer (`peer` phase, another
  // process) sends 1 MiB messages to it. RSS after each step: raw, then settled (see settleIdle).
  const idleMs = Number(process.argv[3])
  const seedFile = process.argv[4]
  const settleMs = Number(process.argv[6])
  const steps = {}
  let start = performance.now()
  const { createMycorrizal } = await import('mycorrizal')
  steps.import_ms = performance.now() - start
  steps.import = mem()
  start = performance.now()
  const node = await createMycorrizal({ nodeId: 'footprint-a', host: '127.0.0.1', port: 0, clusterSecret: secret, logLevel: 'none' })
  steps.ready_ms = performance.now() - start
  steps.ready = mem()
  steps.idle = { raw: mem(), ...(await settleIdle(settleMs)) }

  await node.mycel.createBucket('footprint', 600_000, 200_000)
  const value = new Uint8Array(100).fill(7)
  for (const [count, label] of [[10_000, 'puts_10k'], [90_000, 'puts_100k']]) {
    const base = label === 'puts_10k' ? 0 : 10_000
    start = performance.now()
    for (let i = 0; i < count; i++) await node.mycel.put('footprint', `key-${base + i}`, value)
    steps[label] = { ms: performance.now() - start, raw: mem(), ...(await settleIdle(settleMs)) }
  }
  await node.mycel.deleteBucket('footprint')
  steps.bucket_deleted = await settleForced(idleMs)

  let received = 0
  let bytes = 0
  const expected = Number(process.argv[5])
  const app = node.registerApplication('footprint')
  app.setReceiveFunc((payload, from) => {
    received++
    bytes += payload.byteLength
    // tells the peer it may stop: a peer that stops first may take its last messages with it
    if (received === expected) app.send(new Uint8Array([1]), [from]).catch(() => {})
  })
  const { writeFileSync } = await import('node:fs')
  writeFileSync(seedFile, `127.0.0.1:${node.address.port}`)
  const deadline = Date.now() + 300_000
  while (received < expected && Date.now() < deadline) await sleep(10)
  steps.bulk = { received, bytes, raw: mem(), ...(await settleIdle(settleMs)) }
  await node.shutdown()
  out(steps)
} else if (phase === 'peer') {
  const [seed, count] = [process.argv[3], Number(process.argv[4])]
  const { createMycorrizal } = await import('mycorrizal')
  const node = await createMycorrizal({ nodeId: 'footprint-b', host: '127.0.0.1', port: 0, seeds: [seed], clusterSecret: secret, logLevel: 'none' })
  for (let i = 0; i < 1_000 && !node.nodes().includes('footprint-a'); i++) await sleep(10)
  let done = false
  const app = node.registerApplication('footprint')
  app.setReceiveFunc(() => (done = true))
  const payload = new Uint8Array(MiB).fill(1)
  // On a loaded machine a heartbeat may be missed and the connection dropped mid-transfer:
  // wait for the node to be back and send that message again (counted in `resent`).
  let resent = 0
  for (let i = 0; i < count; i++) {
    for (;;) {
      try {
        await app.send(payload, ['footprint-a'])
        break
      } catch (e) {
        if (++resent > 100) throw e
        for (let j = 0; j < 1_000 && !node.nodes().includes('footprint-a'); j++) await sleep(10)
      }
    }
  }
  const deadline = Date.now() + 300_000
  while (!done && Date.now() < deadline) await sleep(10)
  out({ sent: count, resent, confirmed: done })
  await node.shutdown()
} else {
  console.error(`unknown phase ${phase}`)
  process.exit(2)
}
