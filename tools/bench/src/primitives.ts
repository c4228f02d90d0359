/**
 * Coordination primitives against Redis: publish latency of a topic, and increment throughput. Two node processes on
 * loopback (one publishes, one subscribes; a publish resolves once the subscriber node took the
 * message), against the same two processes on one redis-server (PUBLISH from one ioredis
 * connection, SUBSCRIBE on another in the other process). 100-byte messages, one publish in
 * flight, after a warm-up.
 * Increments: the same two node processes (a bucket with R = 2, so both own every key); one
 * drives BENCH_INCRS `increment`s of 16 counter keys, INCR_IN_FLIGHT at a time (each at its
 * key's primary, replicated to the other node before it answers), against INCR of the same keys
 * from one ioredis connection with the same number in flight. The counts are checked after.
 * Locks: the same two node processes; one drives BENCH_LOCKS acquire + release cycles,
 * LOCK_IN_FLIGHT workers at once, each on its own lock name (no contention: the cost of a cycle)
 * and each an equal share of the cycles (the same mix of local and remote primaries every run),
 * against `SET key value NX PX ttl` + a Lua compare-and-delete release from one ioredis
 * connection with the same workers.
 * Last line: {"publish_p50_us","publish_p99_us","redis_publish_p50_us","redis_publish_p99_us","publish_p99_ratio",
 * "incr_ops_s","redis_incr_ops_s","incr_ratio","lock_cycles_s","redis_lock_cycles_s","lock_ratio"}
 * (publish_p99_ratio = publish_p99_us / redis_publish_p99_us, the target is ≤ 2;
 * incr_ratio = incr_ops_s / redis_incr_ops_s and lock_ratio = lock_cycles_s /
 * redis_lock_cycles_s, the targets are ≥ 1).
 * Every phase first warms up for BENCH_WARMUP_SECONDS (default 3) with the same operations, Mycel and
 * Redis alike, so the figures are those of a running service, not of code the JIT has not
 * compiled yet (a warm-up of a few hundred operations measured Mycel's increments at 40 % of
 * their steady rate); then the measured run.
 * The increment and lock phases also give the CPU time per operation (us) of the measured run over
 * every process that served it ("incr_cpu_us", "redis_incr_cpu_us", "lock_cpu_us",
 * "redis_lock_cpu_us": both node processes; Redis's two processes and redis-server): a figure a
 * busy machine moves much less than the throughput. BENCH_PROFILE_DIR=<dir> writes CPU profiles of
 * the node processes during the measured runs (`profile.ts`).
 * BENCH_WORK=publish (or incr, lock; comma-separated) runs only those phases; the last line then
 * carries only their figures. BENCH_TAIL=1 also prints the publish latencies' tail (p90 to max).
 * BENCH_INCR_IN_FLIGHT=<n> runs the increments with n in flight instead of 64 (both sides): at 1,
 * an increment's CPU is that of one round trip between the nodes, its messages alone in their
 * datagrams (docs/performance.md).
 */
import { type ChildProcess, execFileSync, fork, spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks'
import { inbox, type Inbox, killingOnFailure } from './children.js'
import { processesCpuUs } from './cpu.js'
import { profiled } from './profile.js'
import { percentile, printResult } from './report.js'

const MESSAGES = Number(process.env['BENCH_MESSAGES'] ?? 5_000)
/** Warm-up of every phase (ms), before its measured run. */
const WARMUP_MS = Number(process.env['BENCH_WARMUP_SECONDS'] ?? 3) * 1000
const PAYLOAD = new Uint8Array(100).fill(42)
/**
 * Measured increments and lock cycles: enough for a few seconds each (at 40-180 k increments and
 * 2.5-20 k cycles a second), as these shared machines run at half or double speed for a second
 * at a time; 20,000 and 5,000 measured 0.1-0.7 s.
 */
const INCRS = Number(process.env['BENCH_INCRS'] ?? 200_000)
/** Increments in flight (BENCH_INCR_IN_FLIGHT, default 64), Mycel and Redis alike. */
const INCR_IN_FLIGHT = Number(process.env['BENCH_INCR_IN_FLIGHT'] ?? 64)
if (!Number.isInteger(INCR_IN_FLIGHT) || INCR_IN_FLIGHT < 1) throw new Error(`BENCH_INCR_IN_FLIGHT is a whole number of increments ≥ 1, got ${process.env['BENCH_INCR_IN_FLIGHT']}`)
const COUNTERS = 16
const LOCKS = Number(process.env['BENCH_LOCKS'] ?? 20_000)
const LOCK_IN_FLIGHT = 16
const LOCK_TTL_MS = 10_000
const WORK = new Set((process.env['BENCH_WORK'] ?? 'publish,incr,lock').split(',').map((w) => w.trim()))
/** Redis's compare-and-delete release: delete the key only when it still holds this holder's value. */
const RELEASE_LUA = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"

type Work = 'publish' | 'incr' | 'lock'
type Role = { readonly kind: 'mycel' | 'redis'; readonly publisher: boolean; readonly seed: string | undefined; readonly port: number; readonly work: Work }
type FromChild =
  | { type: 'ready'; port?: number }
  | { type: 'subscribed' }
  | { type: 'warm'; warmed: number }
  | { type: 'done'; samples: Array<number>; received: number; opsPerSec?: number }

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port
      server.close(() => resolve(port))
    })
  })

const send = (message: FromChild) => process.send!(message)
const waitFor = (type: string) => new Promise<void>((resolve) => process.on('message', (m: { type: string }) => m.type === type && resolve()))

/**
 * With BENCH_TAIL=1, how late this process's event loop ran while it published or subscribed
 * (timer lateness at 1 ms resolution, and garbage-collection pauses): printed when `done` is called.
 */
const loopDelay = (): ((who: string) => void) | undefined => {
  if (process.env['BENCH_TAIL'] !== '1') return undefined
  const h = monitorEventLoopDelay({ resolution: 1 })
  h.enable()
  const gcs: Array<number> = []
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcs.push(e.duration)
  })
  observer.observe({ entryTypes: ['gc'] })
  return (who) => {
    h.disable()
    observer.disconnect()
    const ms = (ns: number) => (ns / 1e6).toFixed(1)
    const over = (limit: number) => gcs.filter((d) => d > limit).length
    console.log(
      `${who} event loop: delay p50 ${ms(h.percentile(50))} ms, p99 ${ms(h.percentile(99))}, max ${ms(h.max)}; ${gcs.length} collections, ${gcs.reduce((a, d) => a + d, 0).toFixed(1)} ms, ${over(1)} over 1 ms, ${over(5)} over 5 ms`
    )
  }
}

/**
 * Runs `chunk` (which returns the operations it made) until WARMUP_MS passed, tells the parent
 * how many operations that was, and waits for it to start measuring.
 */
const warmUp = async (chunk: () => Promise<number>): Promise<number> => {
  let warmed = 0
  const until = performance.now() + WARMUP_MS
  do warmed += await chunk()
  while (performance.now() < until)
  const measure = waitFor('measure')
  send({ type: 'warm', warmed })
  await measure
  return warmed
}

/** Publishes one message at a time; after the warm-up, the latency of each (us). */
const drive = async (publish: () => Promise<unknown>, name: string) => {
  await warmUp(async () => {
    for (let i = 0; i < 100; i++) await publish()
    return 100
  })
  return profiled(name, async () => {
    const samples: Array<number> = []
    for (let i = 0; i < MESSAGES; i++) {
      const t = performance.now()
      await publish()
      samples.push((performance.now() - t) * 1000)
    }
    return samples
  })
}

/** `count` increments of the counter keys, INCR_IN_FLIGHT at a time; ops per second. */
const incrLoad = async (count: number, increment: (key: string) => Promise<unknown>) => {
  let next = 0
  const started = performance.now()
  await Promise.all(
    Array.from({ length: INCR_IN_FLIGHT }, async () => {
      while (next < count) await increment(`counter:${next++ % COUNTERS}`)
    })
  )
  return count / ((performance.now() - started) / 1000)
}

/** Warm-up, then the measured run; checks that the counts sum to every increment made. */
const incrBench = async (increment: (key: string) => Promise<unknown>, read: (key: string) => Promise<number>, name: string) => {
  const warmed = await warmUp(async () => {
    await incrLoad(1_000, increment)
    return 1_000
  })
  const opsPerSec = await profiled(name, () => incrLoad(INCRS, increment))
  let total = 0
  for (let i = 0; i < COUNTERS; i++) total += await read(`counter:${i}`)
  if (total !== warmed + INCRS) throw new Error(`the counters sum to ${total}, not ${warmed + INCRS}`)
  return opsPerSec
}

/**
 * `count` acquire + release cycles, LOCK_IN_FLIGHT workers each on its own name and each with an
 * equal share (so every run and every tree has the same mix of names whose primary is this node
 * and names whose primary is the other: a faster kind does not get a larger share); cycles per second.
 */
const lockLoad = async (count: number, cycle: (name: string, n: number) => Promise<void>) => {
  const started = performance.now()
  await Promise.all(
    Array.from({ length: LOCK_IN_FLIGHT }, async (_, w) => {
      for (let n = w; n < count; n += LOCK_IN_FLIGHT) await cycle(`lock:${w}`, n)
    })
  )
  return count / ((performance.now() - started) / 1000)
}

const lockBench = async (cycle: (name: string, n: number) => Promise<void>, name: string) => {
  await warmUp(async () => {
    await lockLoad(LOCK_IN_FLIGHT * 16, cycle)
    return LOCK_IN_FLIGHT * 16
  })
  return profiled(name, () => lockLoad(LOCKS, cycle))
}

const child = async (role: Role) => {
  let received = 0
  if (role.kind === 'mycel') {
    const { createMycorrizal } = await import('mycorrizal')
    const node = await createMycorrizal({
      nodeId: role.publisher ? 'publisher' : 'subscriber',
      host: '127.0.0.1',
      port: 0,
      seeds: role.seed === undefined ? [] : [role.seed],
      clusterSecret: 'bench-cluster-secret-of-at-least-32-characters',
      logLevel: 'error'
    })
    send({ type: 'ready', port: node.address.port })
    const until = Date.now() + 20_000
    while (node.nodes().length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 20))
    if (role.work === 'lock') {
      while (!node.mycel.ready() && Date.now() < until) await new Promise((r) => setTimeout(r, 20))
      if (!role.publisher) {
        send({ type: 'subscribed' })
        await waitFor('measure')
        await profiled('mycel-lock-server', () => waitFor('stop'))
        send({ type: 'done', samples: [], received })
      } else {
        await waitFor('go')
        const tokens = new Map<string, bigint>()
        const opsPerSec = await lockBench(async (name) => {
          const lock = await node.locks.acquire(name, { ttlMs: LOCK_TTL_MS, waitMs: 5_000 })
          if (lock.token <= (tokens.get(name) ?? 0n)) throw new Error(`token ${lock.token} of ${name} did not increase`)
          tokens.set(name, lock.token)
          await lock.release()
        }, 'mycel-lock-driver')
        send({ type: 'done', samples: [], received, opsPerSec })
        await waitFor('stop')
      }
      await node.shutdown()
      process.exit(0)
    }
    if (role.work === 'incr') {
      await node.mycel.createBucket('counters', 600_000, 10_000)
      if (!role.publisher) {
        send({ type: 'subscribed' })
        await waitFor('measure')
        await profiled('mycel-incr-server', () => waitFor('stop'))
        send({ type: 'done', samples: [], received })
      } else {
        await waitFor('go')
        const text = new TextDecoder()
        const opsPerSec = await incrBench(
          (key) => node.mycel.increment('counters', key),
          async (key) => Number(text.decode((await node.mycel.get('counters', key)) ?? new Uint8Array(0))),
          'mycel-incr-driver'
        )
        send({ type: 'done', samples: [], received, opsPerSec })
        await waitFor('stop')
      }
      await node.shutdown()
      process.exit(0)
    }
    if (!role.publisher) {
      await node.topics.subscribe('bench', () => void received++)
      send({ type: 'subscribed' })
      await waitFor('measure')
      const loop = loopDelay()
      await profiled('mycel-publish-subscriber', () => waitFor('stop'))
      loop?.('subscriber')
      send({ type: 'done', samples: [], received })
    } else {
      await waitFor('go')
      const loop = loopDelay()
      const samples = await drive(() => node.topics.publish('bench', PAYLOAD), 'mycel-publish-publisher')
      loop?.('publisher')
      send({ type: 'done', samples, received })
      await waitFor('stop')
    }
    await node.shutdown()
    process.exit(0)
  }
  const { Redis } = await import('ioredis')
  const redis = new Redis({ host: '127.0.0.1', port: role.port })
  send({ type: 'ready' })
  if (role.work === 'lock') {
    if (!role.publisher) {
      send({ type: 'subscribed' })
      await waitFor('stop')
      send({ type: 'done', samples: [], received })
    } else {
      await waitFor('go')
      redis.defineCommand('releaseLock', { numberOfKeys: 1, lua: RELEASE_LUA })
      const release = (redis as unknown as { releaseLock: (key: string, value: string) => Promise<number> }).releaseLock.bind(redis)
      const opsPerSec = await lockBench(async (name, n) => {
        const value = `holder:${n}`
        if ((await redis.set(name, value, 'PX', LOCK_TTL_MS, 'NX')) !== 'OK') throw new Error(`${name} was held`)
        if ((await release(name, value)) !== 1) throw new Error(`${name} was not released`)
      }, 'redis-lock-driver')
      send({ type: 'done', samples: [], received, opsPerSec })
      await waitFor('stop')
    }
    redis.disconnect()
    process.exit(0)
  }
  if (role.work === 'incr') {
    if (!role.publisher) {
      send({ type: 'subscribed' })
      await waitFor('stop')
      send({ type: 'done', samples: [], received })
    } else {
      await waitFor('go')
      await redis.del(...Array.from({ length: COUNTERS }, (_, i) => `counter:${i}`))
      const opsPerSec = await incrBench(
        (key) => redis.incr(key),
        async (key) => Number(await redis.get(key)),
        'redis-incr-driver'
      )
      send({ type: 'done', samples: [], received, opsPerSec })
      await waitFor('stop')
    }
    redis.disconnect()
    process.exit(0)
  }
  if (!role.publisher) {
    redis.on('messageBuffer', () => void received++)
    await redis.subscribe('bench')
    send({ type: 'subscribed' })
    await waitFor('stop')
    send({ type: 'done', samples: [], received })
  } else {
    await waitFor('go')
    const samples = await drive(() => redis.publish('bench', Buffer.from(PAYLOAD)), 'redis-publish-publisher')
    send({ type: 'done', samples, received })
    await waitFor('stop')
  }
  redis.disconnect()
  process.exit(0)
}

const phase = async (kind: Role['kind'], port: number, work: Work = 'publish', serverPid?: number) => {
  const children: Array<ChildProcess> = []
  const inboxes: Array<Inbox<FromChild>> = []
  const next = <T extends FromChild['type']>(i: number, type: T) => inboxes[i]!(type)
  return killingOnFailure(children, async () => {
    let seed: string | undefined
    for (const [i, publisher] of [false, true].entries()) {
      const c = fork(new URL(import.meta.url).pathname, ['child', JSON.stringify({ kind, publisher, seed, port, work } satisfies Role)], { execArgv: process.execArgv })
      children.push(c)
      inboxes.push(inbox<FromChild>(c))
      const ready = await next(i, 'ready')
      if (i === 0 && ready.type === 'ready' && ready.port !== undefined) seed = `127.0.0.1:${ready.port}`
    }
    await next(0, 'subscribed')
    children[1]!.send({ type: 'go' })
    const { warmed } = await next(1, 'warm')
    // CPU of every process that served the measured run (both children; redis-server for Redis)
    const pids = [...children.map((c) => c.pid), ...(kind === 'redis' ? [serverPid] : [])]
    const cpuBefore = processesCpuUs(pids)
    for (const c of children) c.send({ type: 'measure' })
    const published = await next(1, 'done')
    const cpuUs = processesCpuUs(pids) - cpuBefore
    for (const c of children) c.send({ type: 'stop' })
    const subscriber = await next(0, 'done')
    await Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r)))))
    if (process.env['BENCH_TAIL'] !== undefined && published.samples.length > 0) {
      const s = published.samples
      console.log(`${kind} tail: p90 ${percentile(s, 0.9).toFixed(0)} p95 ${percentile(s, 0.95).toFixed(0)} p99 ${percentile(s, 0.99).toFixed(0)} p99.9 ${percentile(s, 0.999).toFixed(0)} max ${Math.max(...s).toFixed(0)}; >2ms ${s.filter((x) => x > 2000).length}, >5ms ${s.filter((x) => x > 5000).length}`)
    }
    return { p50: percentile(published.samples, 0.5), p99: percentile(published.samples, 0.99), received: subscriber.received, warmed, opsPerSec: published.opsPerSec ?? 0, cpuUs }
  })
}

const main = async () => {
  const redisPath = ['redis-server', '/usr/bin/redis-server'].find((p) => {
    try {
      execFileSync(p, ['--version'], { stdio: 'ignore' })
      return true
    } catch {
      return false
    }
  })
  if (redisPath === undefined) {
    console.error('redis-server is not installed: apt-get install redis-server (Debian) to run the baseline')
    process.exit(2)
  }
  const port = await freePort()
  const redis = spawn(redisPath, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
  try {
    await new Promise((r) => setTimeout(r, 300))
    let result: Record<string, number> = {}
    if (WORK.has('publish')) {
      const topics = await phase('mycel', port)
      console.log(`topics: publish p50 ${topics.p50.toFixed(0)} us, p99 ${topics.p99.toFixed(0)} us; the subscriber got ${topics.received} of ${topics.warmed + MESSAGES}`)
      const baseline = await phase('redis', port)
      console.log(`redis:  publish p50 ${baseline.p50.toFixed(0)} us, p99 ${baseline.p99.toFixed(0)} us; the subscriber got ${baseline.received} of ${baseline.warmed + MESSAGES}`)
      if (topics.received !== topics.warmed + MESSAGES) throw new Error(`the topic subscriber got ${topics.received} messages, not ${topics.warmed + MESSAGES}`)
      result = {
        ...result,
        publish_p50_us: Math.round(topics.p50),
        publish_p99_us: Math.round(topics.p99),
        redis_publish_p50_us: Math.round(baseline.p50),
        redis_publish_p99_us: Math.round(baseline.p99),
        publish_p99_ratio: Number((topics.p99 / baseline.p99).toFixed(2))
      }
    }
    if (WORK.has('incr')) {
      const incr = await phase('mycel', port, 'incr')
      const incrCpu = incr.cpuUs / INCRS
      console.log(`mycel:  ${Math.round(incr.opsPerSec)} increments/s (${INCRS} of ${COUNTERS} keys, ${INCR_IN_FLIGHT} in flight, replicated to R = 2), ${incrCpu.toFixed(1)} us of CPU per increment`)
      const redisIncr = await phase('redis', port, 'incr', redis.pid)
      const redisIncrCpu = redisIncr.cpuUs / INCRS
      console.log(`redis:  ${Math.round(redisIncr.opsPerSec)} INCR/s (the same keys, ${INCR_IN_FLIGHT} in flight on one connection), ${redisIncrCpu.toFixed(1)} us of CPU per INCR`)
      result = {
        ...result,
        incr_ops_s: Math.round(incr.opsPerSec),
        redis_incr_ops_s: Math.round(redisIncr.opsPerSec),
        incr_ratio: Number((incr.opsPerSec / redisIncr.opsPerSec).toFixed(3)),
        incr_cpu_us: Number(incrCpu.toFixed(1)),
        redis_incr_cpu_us: Number(redisIncrCpu.toFixed(1))
      }
    }
    if (WORK.has('lock')) {
      const locks = await phase('mycel', port, 'lock')
      const lockCpu = locks.cpuUs / LOCKS
      console.log(`mycel:  ${Math.round(locks.opsPerSec)} lock cycles/s (acquire + release, ${LOCK_IN_FLIGHT} workers on their own names, R = 2), ${lockCpu.toFixed(1)} us of CPU per cycle`)
      const redisLocks = await phase('redis', port, 'lock', redis.pid)
      const redisLockCpu = redisLocks.cpuUs / LOCKS
      console.log(`redis:  ${Math.round(redisLocks.opsPerSec)} lock cycles/s (SET NX PX + Lua compare-and-delete, ${LOCK_IN_FLIGHT} workers on one connection), ${redisLockCpu.toFixed(1)} us of CPU per cycle`)
      result = {
        ...result,
        lock_cycles_s: Math.round(locks.opsPerSec),
        redis_lock_cycles_s: Math.round(redisLocks.opsPerSec),
        lock_ratio: Number((locks.opsPerSec / redisLocks.opsPerSec).toFixed(3)),
        lock_cpu_us: Number(lockCpu.toFixed(1)),
        redis_lock_cpu_us: Number(redisLockCpu.toFixed(1))
      }
    }
    printResult(result)
  } finally {
    redis.kill('SIGTERM')
  }
  process.exit(0)
}

if (process.argv[2] === 'child') await child(JSON.parse(process.argv[3]!) as Role)
else await main()
