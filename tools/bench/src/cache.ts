/**
 * Cache benchmark: three node processes on loopback, each driving its own embedded Mycorrizal
 * node (100-byte values, 100,000 keys, 64 operations in flight per process), against the same
 * three driver processes using ioredis on one redis-server started here. Each driver runs the
 * mix for BENCH_WARMUP_SECONDS (default 2) first (Mycel's, until 10 s after their cluster formed:
 * BENCH_SETTLE_SECONDS); then the three measured runs (BENCH_SECONDS,
 * default 5) start together. Two workloads, each run on Mycel then on Redis with fresh processes:
 *
 * - uniform: 90 % get / 10 % put, keys drawn uniformly;
 * - zipf: YCSB workload B, 95 % get / 5 % put, keys drawn by YCSB's scrambled Zipfian (constant
 *   0.99, `zipf.ts`); Mycel's bucket has its near cache on (BENCH_NEAR=0 turns it off;
 *   BENCH_NEAR_SIZE, default 10,000, BENCH_NEAR_TTL_MS, default 1,000, and BENCH_NEAR_TRACKED,
 *   the owners' trackedKeys, 0 = invalidation by broadcast, set it).
 *
 * Last line: {"mycel_ops_s","mycel_p99_us","redis_ops_s","redis_p99_us","ratio","zipf_mycel_ops_s",
 * "zipf_mycel_p99_us","zipf_redis_ops_s","zipf_redis_p99_us","zipf_ratio"}. BENCH_WORKLOAD=uniform
 * or zipf runs one of them (the other's fields are then absent). Then, per workload, CPU time per
 * operation over every process that served it: "cpu_ratio" (Redis's drivers and server ÷
 * Mycel's node processes; above 1, Mycel spends less CPU per operation), "mycel_cpu_us_per_op",
 * "redis_cpu_us_per_op", and the same with "zipf_" — a figure a busy machine moves less than
 * ops/s. "mycel_datagrams_per_op" (and "zipf_"): UDP datagrams the three nodes sent during the
 * measured run per operation (every operation, local answers included). The human lines give the
 * puts' p50 and p99 alone too (a put waits for an owner; most gets of a skewed workload do not),
 * and the membership changes the nodes saw during the measured run (joined, left, failed; a
 * cluster whose nodes declare each other failed under load measures its rebalancing).
 * BENCH_PROFILE_DIR=<dir> writes a
 * CPU profile of each driver process's measured run there, BENCH_HEAP_PROFILE_DIR=<dir> a sampling
 * heap profile (where it allocates) instead (`profile.ts`). BENCH_TURN_MS: see `TURN_MS`.
 */
import { type ChildProcess, execFileSync, fork, spawn } from 'node:child_process'
import dgram from 'node:dgram'
import { createServer } from 'node:net'
import { inbox, type Inbox, killingOnFailure } from './children.js'
import { processCpuUs } from './cpu.js'
import { profiled } from './profile.js'
import { percentile, printResult } from './report.js'
import { ScrambledZipfian } from './zipf.js'

const PROCESSES = 3
const KEYS = Number(process.env['BENCH_KEYS'] ?? 100_000)
const IN_FLIGHT = 64
const VALUE_BYTES = 100
const seconds = Number(process.env['BENCH_SECONDS'] ?? 5)
/**
 * Seconds each driver runs the same mix before the measured run (BENCH_WARMUP_SECONDS, default
 * 2; Mycel and Redis alike): the JIT compiles the hot paths and a near cache fills, so the
 * measured run is the steady state a service that has been up a while sees, not its first
 * seconds.
 */
const WARMUP_SECONDS = Number(process.env['BENCH_WARMUP_SECONDS'] ?? 2)
/**
 * Mycel's drivers warm up, besides, until at least this many seconds after their node saw the
 * three members (BENCH_SETTLE_SECONDS, default 10): the cache's rebalance window after a
 * membership change (`rebalanceWindowMs`), while keys may still be on their way to new owners
 * and a node answers more carefully (a local miss is checked with the other owners, a write
 * overtaken twice is written again). A service that has been up a while is past it.
 */
const SETTLE_SECONDS = Number(process.env['BENCH_SETTLE_SECONDS'] ?? 10)
const SAMPLE_LIMIT = 50_000
/**
 * A driver's worker yields to the event loop when the current turn has run this long (ms;
 * BENCH_TURN_MS, default 5): how long the service's own work holds the event loop, and so how
 * long an answer that arrived waits to be read. 0: every operation yields first, as a request
 * that arrives by I/O does.
 */
const TURN_MS = Number(process.env['BENCH_TURN_MS'] ?? 5)

type Workload = 'uniform' | 'zipf'
type Role =
  | { readonly kind: 'mycel'; readonly index: number; readonly seed: string | undefined; readonly workload: Workload }
  | { readonly kind: 'redis'; readonly index: number; readonly port: number; readonly workload: Workload }

/** The zipf phase's near cache, as Mycel's bucket option (undefined: off). */
const nearCache =
  process.env['BENCH_NEAR'] === '0'
    ? undefined
    : {
        maxSize: Number(process.env['BENCH_NEAR_SIZE'] ?? 10_000),
        ttlMs: Number(process.env['BENCH_NEAR_TTL_MS'] ?? 1_000),
        ...(process.env['BENCH_NEAR_TRACKED'] === undefined ? {} : { trackedKeys: Number(process.env['BENCH_NEAR_TRACKED']) })
      }

/** The next operation's key and whether it is a put, per workload. */
const chooser = (workload: Workload): ((x: number) => { key: string; put: boolean }) => {
  if (workload === 'uniform') return (x) => ({ key: `key:${(x >>> 0) % KEYS}`, put: (x >>> 0) % 10 === 0 })
  const zipf = new ScrambledZipfian(KEYS)
  return () => ({ key: `key:${zipf.next()}`, put: Math.random() < 0.05 })
}
/** A Mycel driver's near-cache counters over its run (absent without a near cache). */
interface NearCounts {
  hits: number
  misses: number
  invalidations: number
  updates: number
  evictions: number
  refused: number
  sent: number
  broadcasts: number
}
type FromChild =
  | { type: 'ready'; port?: number }
  | { type: 'loaded' }
  | { type: 'warm' }
  | { type: 'done'; ops: number; seconds: number; samples: Array<number>; putSamples: Array<number>; errors: Record<string, number>; cpuUs: number; near?: NearCounts; datagrams?: number; membership?: number }

/** UDP datagrams this process has sent (the QUIC transport's): counted by wrapping `dgram.Socket#send`. */
let datagramsSent = 0
const countDatagrams = () => {
  const proto = dgram.Socket.prototype as unknown as { send: (...args: Array<unknown>) => void }
  const send = proto.send
  proto.send = function (this: unknown, ...args: Array<unknown>) {
    datagramsSent++
    return send.apply(this, args)
  }
}

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port
      server.close(() => resolve(port))
    })
  })

/** Keeps the `n`th latency in a reservoir of at most SAMPLE_LIMIT (the first ones, then overwriting in turn). */
const keep = (reservoir: Array<number>, n: number, us: number): void => {
  if (reservoir.length < SAMPLE_LIMIT) reservoir.push(us)
  else reservoir[n % SAMPLE_LIMIT] = us
}

/** Runs 64 workers doing the mix for `seconds`; returns op count, time and latency samples (us). A process builds its key chooser once (the Zipfian one precomputes 100,000 hashes). */
const choosers = new Map<Workload, ReturnType<typeof chooser>>()
const drive = async (workload: Workload, get: (key: string) => Promise<unknown>, put: (key: string, value: Uint8Array) => Promise<unknown>, seconds: number) => {
  let choose = choosers.get(workload)
  if (choose === undefined) choosers.set(workload, (choose = chooser(workload)))
  const value = new Uint8Array(VALUE_BYTES).fill(42)
  const samples: Array<number> = []
  /** The puts' latencies alone (their own reservoir): a put waits for an owner, most gets of a skewed workload do not. */
  const putSamples: Array<number> = []
  let puts = 0
  const errors: Record<string, number> = {}
  let ops = 0
  let stop = false
  const started = performance.now()
  // Answers this node has resolve without a turn of the event loop. A service's requests come
  // from I/O, so it yields between them; a driver that only awaited could spin on local answers
  // and starve the node's own transport (heartbeats included). So a worker that finds the turn
  // older than TURN_MS yields to the event loop first.
  let turnStarted = performance.now()
  const nextTurn = () =>
    new Promise<void>((resolve) =>
      setImmediate(() => {
        turnStarted = performance.now()
        resolve()
      })
    )
  const worker = async () => {
    let x = (Math.random() * 0xffffffff) >>> 0 || 1
    while (!stop) {
      x ^= x << 13
      x ^= x >>> 17
      x ^= x << 5
      const { key, put: isPut } = choose(x)
      if (TURN_MS === 0 || performance.now() - turnStarted > TURN_MS) await nextTurn()
      const t = performance.now()
      try {
        if (isPut) await put(key, value)
        else await get(key)
      } catch (e) {
        // a failed operation (Timeout, Conflict on a hot key under load) is counted, not fatal
        const reason = (e as { reason?: string }).reason ?? 'error'
        errors[reason] = (errors[reason] ?? 0) + 1
      }
      const us = (performance.now() - t) * 1000
      ops++
      keep(samples, ops, us)
      if (isPut) keep(putSamples, ++puts, us)
    }
  }
  const cpu = process.cpuUsage()
  const timer = setTimeout(() => (stop = true), seconds * 1000)
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker))
  clearTimeout(timer)
  const used = process.cpuUsage(cpu)
  return { ops, seconds: (performance.now() - started) / 1000, samples, putSamples, errors, cpuUs: used.user + used.system }
}

/** Loads this process's share of the keys, 64 at a time. */
const preload = async (index: number, put: (key: string, value: Uint8Array) => Promise<unknown>) => {
  const value = new Uint8Array(VALUE_BYTES).fill(7)
  let next = index
  const worker = async () => {
    while (next < KEYS) {
      const i = next
      next += PROCESSES
      await put(`key:${i}`, value)
    }
  }
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker))
}

const send = (message: FromChild) => process.send!(message)
const waitFor = (type: string) => new Promise<void>((resolve) => process.on('message', (m: { type: string }) => m.type === type && resolve()))

const child = async (role: Role) => {
  if (role.kind === 'mycel') {
    const { createMycorrizal } = await import('mycorrizal')
    const node = await createMycorrizal({
      nodeId: `bench-${role.index}`,
      host: '127.0.0.1',
      port: 0,
      seeds: role.seed === undefined ? [] : [role.seed],
      clusterSecret: 'bench-cluster-secret-of-at-least-32-characters',
      logLevel: 'error',
      transport: { datagramSize: 16_384 }
    })
    await node.mycel.createBucket('bench', 600_000, KEYS * 2, role.workload === 'zipf' && nearCache !== undefined ? { nearCache } : {})
    send({ type: 'ready', port: node.address.port })
    const until = Date.now() + 20_000
    while (node.nodes().length < PROCESSES && Date.now() < until) await new Promise((r) => setTimeout(r, 20))
    const formedAt = performance.now()
    await waitFor('load')
    await preload(role.index, (k, v) => node.mycel.put('bench', k, v))
    send({ type: 'loaded' })
    await waitFor('go')
    countDatagrams()
    const get = (k: string) => node.mycel.get('bench', k)
    const put = (k: string, v: Uint8Array) => node.mycel.put('bench', k, v)
    const warmup = Math.max(WARMUP_SECONDS, SETTLE_SECONDS - (performance.now() - formedAt) / 1000)
    if (warmup > 0) await drive(role.workload, get, put, warmup)
    send({ type: 'warm' })
    await waitFor('measure')
    const near = () => {
      const n = node.mycel.stats('bench')?.near
      return n === undefined ? undefined : { hits: n.hits, misses: n.misses, invalidations: n.invalidations, updates: n.updates, evictions: n.evictions, refused: n.refused, sent: n.invalidationsSent, broadcasts: n.broadcasts }
    }
    const nearBefore = near()
    datagramsSent = 0
    // a node declared failed and back during the run would measure rebalancing, not the cache
    let membership = 0
    const offMembership = node.onMembership(() => membership++)
    const result = await profiled(`mycel-${role.workload}-${role.index}`, () => drive(role.workload, get, put, seconds))
    const nearAfter = near()
    const nearRun =
      nearAfter === undefined || nearBefore === undefined
        ? undefined
        : (Object.fromEntries(Object.entries(nearAfter).map(([k, v]) => [k, v - nearBefore[k as keyof NearCounts]])) as unknown as NearCounts)
    offMembership()
    send({ type: 'done', ...result, datagrams: datagramsSent, membership, ...(nearRun === undefined ? {} : { near: nearRun }) })
    await waitFor('stop')
    await node.shutdown()
    process.exit(0)
  }
  const { Redis } = await import('ioredis')
  const redis = new Redis({ host: '127.0.0.1', port: role.port, lazyConnect: false })
  send({ type: 'ready' })
  await waitFor('load')
  await preload(role.index, (k, v) => redis.set(k, Buffer.from(v)))
  send({ type: 'loaded' })
  await waitFor('go')
  const get = (k: string) => redis.getBuffer(k)
  const put = (k: string, v: Uint8Array) => redis.set(k, Buffer.from(v))
  if (WARMUP_SECONDS > 0) await drive(role.workload, get, put, WARMUP_SECONDS)
  send({ type: 'warm' })
  await waitFor('measure')
  const result = await profiled(`redis-${role.workload}-${role.index}`, () => drive(role.workload, get, put, seconds))
  send({ type: 'done', ...result })
  await waitFor('stop')
  redis.disconnect()
  process.exit(0)
}

/** Starts the drivers, loads, runs, and returns ops/s and p99 over all three. */
const phase = async (roles: (index: number, seed: string | undefined) => Role, serverPid?: number) => {
  const children: Array<ChildProcess> = []
  const inboxes: Array<Inbox<FromChild>> = []
  const next = <T extends FromChild['type']>(i: number, type: T) => inboxes[i]!(type)
  return killingOnFailure(children, async () => {
    let seed: string | undefined
    for (let i = 0; i < PROCESSES; i++) {
      const c = fork(new URL(import.meta.url).pathname, ['child', JSON.stringify(roles(i, seed))], { execArgv: process.execArgv })
      children.push(c)
      inboxes.push(inbox<FromChild>(c))
      const ready = await next(i, 'ready')
      if (i === 0 && ready.type === 'ready' && ready.port !== undefined) seed = `127.0.0.1:${ready.port}`
    }
    for (const c of children) c.send({ type: 'load' })
    await Promise.all(children.map((_, i) => next(i, 'loaded')))
    for (const c of children) c.send({ type: 'go' })
    // every driver warmed up (see WARMUP_SECONDS) before the measured runs start together
    await Promise.all(children.map((_, i) => next(i, 'warm')))
    const serverCpu = processCpuUs(serverPid)
    for (const c of children) c.send({ type: 'measure' })
    const done = await Promise.all(children.map((_, i) => next(i, 'done')))
    const serverCpuUs = processCpuUs(serverPid) - serverCpu
    for (const c of children) c.send({ type: 'stop' })
    await Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r)))))
    const opsS = done.reduce((sum, d) => sum + d.ops / d.seconds, 0)
    const samples = done.flatMap((d) => d.samples)
    const putSamples = done.flatMap((d) => d.putSamples)
    const near = done.some((d) => d.near !== undefined)
      ? done.reduce(
          (sum, d) => {
            for (const k of Object.keys(sum) as Array<keyof NearCounts>) sum[k] += d.near?.[k] ?? 0
            return sum
          },
          { hits: 0, misses: 0, invalidations: 0, updates: 0, evictions: 0, refused: 0, sent: 0, broadcasts: 0 }
        )
      : undefined
    const errors: Record<string, number> = {}
    for (const d of done) for (const [k, n] of Object.entries(d.errors)) errors[k] = (errors[k] ?? 0) + n
    // CPU per operation over every process that served it (drivers, and the server when there is one)
    const ops = done.reduce((sum, d) => sum + d.ops, 0)
    const cpuUsPerOp = (done.reduce((sum, d) => sum + d.cpuUs, 0) + serverCpuUs) / Math.max(1, ops)
    const datagrams = done.reduce((sum, d) => sum + (d.datagrams ?? 0), 0)
    const membership = done.reduce((sum, d) => sum + (d.membership ?? 0), 0)
    return { membership, opsS, p99: percentile(samples, 0.99), p50: percentile(samples, 0.5), putP50: percentile(putSamples, 0.5), putP99: percentile(putSamples, 0.99), near, errors, cpuUsPerOp, datagramsPerOp: datagrams / Math.max(1, ops) }
  })
}

const main = async () => {
  let redisPath = 'redis-server'
  try {
    execFileSync(redisPath, ['--version'], { stdio: 'ignore' })
  } catch {
    redisPath = '/usr/bin/redis-server'
    try {
      execFileSync(redisPath, ['--version'], { stdio: 'ignore' })
    } catch {
      console.error('redis-server is not installed: apt-get install redis-server (Debian) to run the baseline')
      process.exit(2)
    }
  }
  const port = await freePort()
  const redis = spawn(redisPath, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
  try {
    await new Promise((r) => setTimeout(r, 300))
    const only = process.env['BENCH_WORKLOAD']
    const result: Record<string, number> = {}
    const cpu: Record<string, number> = {}
    for (const workload of ['uniform', 'zipf'] as const) {
      if (only !== undefined && only !== workload) continue
      const prefix = workload === 'zipf' ? 'zipf_' : ''
      const mix = workload === 'zipf' ? 'YCSB B: 95 % get / 5 % put, scrambled Zipfian 0.99' : '90 % get / 10 % put, uniform'
      const near =
        workload === 'zipf' && nearCache !== undefined
          ? `near cache maxSize ${nearCache.maxSize}, ttl ${nearCache.ttlMs} ms, ${'trackedKeys' in nearCache ? `trackedKeys ${nearCache.trackedKeys}` : 'trackedKeys default'}`
          : 'no near cache'
      const mycel = await phase((index, seed) => ({ kind: 'mycel', index, seed, workload }))
      console.log(
        `${workload} mycel: ${mycel.opsS.toFixed(0)} ops/s, p50 ${mycel.p50.toFixed(0)} us, p99 ${mycel.p99.toFixed(0)} us (puts p50 ${mycel.putP50.toFixed(0)} us, p99 ${mycel.putP99.toFixed(0)} us), ${mycel.cpuUsPerOp.toFixed(1)} us of CPU per operation, ${mycel.datagramsPerOp.toFixed(3)} datagrams sent per operation, ${mycel.membership} membership changes seen (${mix}; 3 processes x ${IN_FLIGHT} in flight; ${near})`
      )
      if (Object.keys(mycel.errors).length > 0) console.log(`${workload} mycel: failed operations (counted in ops/s): ${JSON.stringify(mycel.errors)}`)
      if (mycel.near !== undefined) {
        const n = mycel.near
        const rate = n.hits + n.misses === 0 ? 0 : (100 * n.hits) / (n.hits + n.misses)
        console.log(`${workload} near cache: ${n.hits} hits, ${n.misses} misses (${rate.toFixed(1)} % of gets of keys owned elsewhere), ${n.updates} copies updated, ${n.invalidations} invalidated, ${n.evictions} evicted, ${n.refused} answers not kept, ${n.sent} updates and invalidations sent, ${n.broadcasts} broadcast writes`)
      }
      const baseline = await phase((index) => ({ kind: 'redis', index, port, workload }), redis.pid)
      console.log(
        `${workload} redis: ${baseline.opsS.toFixed(0)} ops/s, p50 ${baseline.p50.toFixed(0)} us, p99 ${baseline.p99.toFixed(0)} us (puts p50 ${baseline.putP50.toFixed(0)} us, p99 ${baseline.putP99.toFixed(0)} us), ${baseline.cpuUsPerOp.toFixed(1)} us of CPU per operation (drivers and server) (${mix}; one redis-server, ioredis)`
      )
      result[`${prefix}mycel_ops_s`] = Math.round(mycel.opsS)
      result[`${prefix}mycel_p99_us`] = Math.round(mycel.p99)
      result[`${prefix}redis_ops_s`] = Math.round(baseline.opsS)
      result[`${prefix}redis_p99_us`] = Math.round(baseline.p99)
      result[`${prefix}ratio`] = Number((mycel.opsS / baseline.opsS).toFixed(3))
      cpu[`${prefix}mycel_cpu_us_per_op`] = Number(mycel.cpuUsPerOp.toFixed(1))
      cpu[`${prefix}redis_cpu_us_per_op`] = Number(baseline.cpuUsPerOp.toFixed(1))
      cpu[`${prefix}mycel_datagrams_per_op`] = Number(mycel.datagramsPerOp.toFixed(3))
    }
    // CPU per operation is less sensitive to a busy machine than ops/s: Redis's over Mycel's is the CPU-bound ratio
    for (const prefix of ['', 'zipf_']) {
      const m = cpu[`${prefix}mycel_cpu_us_per_op`]
      const r = cpu[`${prefix}redis_cpu_us_per_op`]
      if (m !== undefined && r !== undefined) result[`${prefix}cpu_ratio`] = Number((r / m).toFixed(3))
    }
    Object.assign(result, cpu)
    printResult(result)
  } finally {
    redis.kill('SIGTERM')
  }
  process.exit(0)
}

if (process.argv[2] === 'child') await child(JSON.parse(process.argv[3]!) as Role)
else await main()
