// One phase of `npm run bench:footprint`, run with plain `node --expose-gc` inside a blank npm
// project that has the packed packages installed (no tsx, no TypeScript sources).
// argv[2] is the phase; the last line of stdout is one JSON object.
import { performance } from 'node:perf_hooks'

const MiB = 1024 * 1024
const phase = process.argv[2]
const mem = () => {
  const m = process.memoryUsage()
  return { rss: m.rss / MiB, heap: m.heapUsed / MiB, heapTotal: m.heapTotal / MiB, arrayBuffers: m.arrayBuffers / MiB, external: m.external / MiB }
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
/**
 * After a full collection, and again after `idleMs` without work (the buffer pool's idle trim);
 * then after three more full collections (`released`): V8 keeps the pages a collection frees
 * in a pool and gives them back to the system at later full collections (which a service's
 * own allocations bring; idle time alone did not).
 */
const settle = async (idleMs) => {
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
  const start = performance.now()
  await import(specifier)
  out({ ms: performance.now() - start, rss: mem().rss })
} else if (phase === 'node') {
  // One node in this process: import, start, idle, puts; then a peer (`peer` phase, another
  // process) sends 1 MiB messages to it. RSS after each step, raw, collected and trimmed.
  const idleMs = Number(process.argv[3])
  const seedFile = process.argv[4]
  const steps = {}
  let start = performance.now()
  const { createMycorrizal } = await import('mycorrizal')
  steps.import_ms = performance.now() - start
  steps.import = mem()
  start = performance.now()
  const node = await createMycorrizal({ nodeId: 'footprint-a', host: '127.0.0.1', port: 0, clusterSecret: secret, logLevel: 'none' })
  steps.ready_ms = performance.now() - start
  steps.ready = mem()
  const longIdleMs = Number(process.argv[6] ?? 0)
  if (longIdleMs > 0) {
    // before any forced collection: only what the node's own timers allocate, and what V8 does about it
    steps.idle_long = []
    const from = performance.now()
    for (let at = 10_000; at <= longIdleMs; at += 10_000) {
      await sleep(from + at - performance.now())
      steps.idle_long.push({ at, ...mem() })
    }
  }
  steps.idle = await settle(idleMs)

  await node.mycel.createBucket('footprint', 600_000, 200_000)
  const value = new Uint8Array(100).fill(7)
  for (const [count, label] of [[10_000, 'puts_10k'], [90_000, 'puts_100k']]) {
    const base = label === 'puts_10k' ? 0 : 10_000
    for (let i = 0; i < count; i++) await node.mycel.put('footprint', `key-${base + i}`, value)
    steps[label] = { raw: mem(), ...(await settle(idleMs)) }
  }
  await node.mycel.deleteBucket('footprint')
  steps.bucket_deleted = await settle(idleMs)

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
  steps.bulk = { received, bytes, raw: mem(), ...(await settle(idleMs)) }
  steps.settled = (await settle(idleMs)).trimmed
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
