/**
 * The deterministic simulator of Mycel (DESIGN.md section 12, issue 15): one seed decides the
 * cluster size, the clients' operations and the fault schedule; N nodes run in this process over
 * `MemoryTransport` on the Effect `TestClock`, each with its own `Clock` (the test clock plus a
 * skew); the driver moves time in ticks and lets the process run until it is idle between ticks.
 * The run's history goes to the checker.
 *
 * Only Mycel's public API is used (`Mycel` and its layer, `Streams.layer`, `Nodosum.make` over
 * `MemoryTransport.make`), so the same simulator runs against any engine behind it.
 */
import { Locks } from '@mycorrizal/coordination'
import { Mycel, MycelConfig } from '@mycorrizal/mycel'
import { Certificates, Discovery, MemoryTransport, Nodosum, NodosumConfig, Transport, TransportConfig } from '@mycorrizal/nodosum'
import { Streams, StreamsConfig } from '@mycorrizal/streams'
import * as Cause from 'effect/Cause'
import type * as Clock from 'effect/Clock'
import * as Context from 'effect/Context'
import * as Effect from 'effect/Effect'
import * as Exit from 'effect/Exit'
import * as FiberSet from 'effect/FiberSet'
import * as Layer from 'effect/Layer'
import * as Logger from 'effect/Logger'
import * as LogLevel from 'effect/LogLevel'
import * as Option from 'effect/Option'
import * as Runtime from 'effect/Runtime'
import * as Scope from 'effect/Scope'
import { check, type Violation } from './Checker.js'
import type { BucketConfig, FaultKind, History, Op, OpKind, RunConfig } from './History.js'
import { Prng } from './Prng.js'
import { drawSize, hashBytes, valueBytes } from './Values.js'
import { VirtualTime } from './VirtualTime.js'

/** The fault families a run may draw from. */
export type FaultChoice = 'kill' | 'pause' | 'partition' | 'delay' | 'membership' | 'skew'
export const allFaults: ReadonlyArray<FaultChoice> = ['kill', 'pause', 'partition', 'delay', 'membership', 'skew']

export interface SimOptions {
  readonly seed: number
  /** Members at the start (3-7); drawn from the seed when absent. */
  readonly nodes?: number
  /** Client operations (default 200). */
  readonly ops?: number
  /** Mean time between client operations (virtual ms, default MEAN_GAP_MS). */
  readonly gapMs?: number
  /** Fault families (default all). */
  readonly faults?: ReadonlyArray<FaultChoice>
  /** Print the nodes' logs (stderr) with the virtual time. */
  readonly verbose?: boolean
  /** Near cache on 'main' and 'blobs' (default: on for odd seeds). */
  readonly near?: boolean
}

export interface RunResult {
  readonly options: SimOptions
  readonly history: History
  readonly violations: ReadonlyArray<Violation>
  /** Faults injected (heal, resume and undelay not counted). */
  readonly faults: number
  /** Client operations issued (final reads included). */
  readonly ops: number
  /** Virtual time simulated (ms). */
  readonly virtualMs: number
  /** Wall-clock time of the run (ms). */
  readonly wallMs: number
  /** CPU time of this process during the run (ms, user + system): what a loaded machine does not inflate. */
  readonly cpuMs: number
}

// ---- timings (virtual ms) ---------------------------------------------------------------

const TICK_MS = 10
const PORT = 7001
const WARMUP_MS = 3_000
const MEAN_GAP_MS = 100
const QUIET_MS = 15_000
/** Faults after the last client operation. */
const TAIL_MS = 5_000
const FINAL_MAX_MS = 20_000
const SAMPLE_EVERY_MS = 1_000
const SECRET = 'simulated-cluster-secret-0123456789abcdef'
/** Large enough for every value; small enough that a handoff of many large values needs several messages. */
const MAX_MESSAGE_SIZE = 2 * 1024 * 1024

const nodeSettings = {
  heartbeatInterval: 100,
  failureTimeout: 1_000,
  discoveryInterval: 1_000,
  reconnectInitial: 100,
  reconnectMax: 1_000,
  maxMessageSize: MAX_MESSAGE_SIZE,
  transport: { handshakeTimeout: 1_000, idleTimeout: 2_000 }
} as const

const mycelOptions: Mycel.MycelOptions = { requestTimeout: '1 second', readyTimeout: '5 seconds' }
/** The locks' clock-skew allowance: skews beyond it excuse overlapping holds (the model's assumption). */
const LOCK_SKEW_MS = 1_000
const LOCK_NAMES = ['l0', 'l1']

// ---- the plan ---------------------------------------------------------------------------

interface PlannedOp {
  readonly at: number
  readonly kind: OpKind
  readonly bucket: string
  readonly key: string
  /** Which up node serves it: index into the up nodes, modulo their number. */
  readonly nodeHint: number
  /** put: the value's size; incr: the delta; lock: the lease (ms). */
  readonly size: number
  /** lock: how long the holder keeps it before releasing (may exceed the lease). */
  readonly holdMs?: number
  /** incr: how many increments the node starts at once through the Promise entry point (they go to the primary as one operation). */
  readonly burst?: number
}

interface Event {
  readonly at: number
  readonly seq: number
  readonly run: () => void
}

/** Everything about a run that is drawn before it starts. */
const plan = (options: SimOptions) => {
  const prng = new Prng(options.seed)
  const nodes = options.nodes ?? prng.int(3, 7)
  const replicas = nodes >= 5 && prng.chance(0.25) ? 3 : 2
  const opCount = options.ops ?? 200
  const gapMs = options.gapMs ?? MEAN_GAP_MS
  // the near cache, decided by the seed without a draw (the other draws of a seed stay as they
  // were): on for odd seeds, with small LRUs (evictions) and, one seed in two of those, the
  // broadcast variant; else owners remember 3 keys' readers (past that, broadcast)
  const near = (options.near ?? options.seed % 2 === 1) ? { ttlMs: 1_000, trackedKeys: options.seed % 4 === 3 ? 0 : 3 } : undefined
  const buckets: ReadonlyArray<BucketConfig> = [
    // no eviction and no expiry within a run: promises 1-5 are checked here
    { name: 'main', ttlMs: 3_600_000, maxSize: 10_000, maxBytes: 0, strict: true, ...(near === undefined ? {} : { near: { ...near, maxSize: 4 } }) },
    // a bucket that evicts: promises 3 and 6
    { name: 'tight', ttlMs: 3_600_000, maxSize: 3, maxBytes: 1_536 * 1024, strict: false },
    // large values only (64 KiB - 1 MiB): rebalancing moves megabytes per batch
    { name: 'blobs', ttlMs: 3_600_000, maxSize: 10_000, maxBytes: 0, strict: true, ...(near === undefined ? {} : { near: { ...near, maxSize: 2 } }) },
    // counters: increments only (P7)
    { name: 'counters', ttlMs: 3_600_000, maxSize: 1_000, maxBytes: 0, strict: false, counters: true }
  ]
  const keys: Record<string, ReadonlyArray<string>> = {
    main: ['k0', 'k1', 'k2', 'k3', 'k4', 'k5'],
    tight: ['t0', 't1', 't2', 't3', 't4'],
    blobs: ['b0', 'b1', 'b2', 'b3', 'b4', 'b5', 'b6', 'b7'],
    counters: ['c0', 'c1', 'c2']
  }
  const ops: Array<PlannedOp> = []
  let at = WARMUP_MS
  const opsPrng = prng.fork()
  for (let i = 0; i < opCount; i++) {
    at += Math.max(1, Math.round(-Math.log(1 - opsPrng.float()) * gapMs))
    const b = opsPrng.float()
    const bucket = b < 0.72 ? 'main' : b < 0.9 ? 'tight' : 'blobs'
    const x = opsPrng.float()
    const kind: OpKind = bucket === 'blobs' ? (x < 0.6 ? 'put' : x < 0.7 ? 'delete' : 'get') : x < 0.45 ? 'put' : x < 0.55 ? 'delete' : 'get'
    const key = opsPrng.pick(keys[bucket]!)
    const nodeHint = opsPrng.int(0, 1_000)
    const size = kind !== 'put' ? 0 : bucket === 'blobs' ? opsPrng.int(64 * 1024, 1024 * 1024) : drawSize(opsPrng)
    ops.push({ at, kind, bucket, key, nodeHint, size })
  }
  const opsEnd = at
  const choices = options.faults ?? allFaults
  const faultPrng = prng.fork()
  const faultTimes: Array<{ at: number; choice: FaultChoice }> = []
  // faults while the clients run, and a tail of faults after the last operation: a write lost
  // there is not hidden by a newer one
  const faultCount = choices.length === 0 ? 0 : Math.max(1, Math.round(opCount / 25))
  for (let i = 0; i < faultCount; i++) faultTimes.push({ at: faultPrng.int(WARMUP_MS, opsEnd), choice: faultPrng.pick(choices) })
  const tail = choices.length === 0 ? 0 : faultPrng.int(1, 2)
  for (let i = 0; i < tail; i++) faultTimes.push({ at: faultPrng.int(opsEnd + 500, opsEnd + TAIL_MS - 500), choice: faultPrng.pick(choices) })
  faultTimes.sort((a, b) => a.at - b.at)
  const activeEnd = opsEnd + (choices.length === 0 ? 1_000 : TAIL_MS)
  const config: RunConfig = {
    seed: options.seed,
    nodes,
    replicas,
    buckets,
    staleMs: 2_000,
    settleMs: 3_000,
    killWindowMs: 6_000,
    lockSkewMs: LOCK_SKEW_MS,
    lockReplicas: Locks.REPLICAS,
    failureTimeoutMs: nodeSettings.failureTimeout
  }
  const runtimePrng = prng.fork()
  // increments on the counter keys, drawn last so the other draws of a seed stay as they were
  const counterPrng = prng.fork()
  let incrAt = WARMUP_MS
  for (let i = 0; i < Math.round(opCount / 4); i++) {
    incrAt += Math.max(1, Math.round(-Math.log(1 - counterPrng.float()) * gapMs * 4))
    if (incrAt > opsEnd) break
    ops.push({ at: incrAt, kind: 'incr', bucket: 'counters', key: counterPrng.pick(keys.counters!), nodeHint: counterPrng.int(0, 1_000), size: counterPrng.int(1, 3) })
  }
  // lock clients (tryAcquire, hold, release) on a few names, drawn after the counters for the same reason
  const lockPrng = prng.fork()
  let lockAt = WARMUP_MS
  for (let i = 0; i < Math.round(opCount / 4); i++) {
    lockAt += Math.max(1, Math.round(-Math.log(1 - lockPrng.float()) * gapMs * 4))
    if (lockAt > opsEnd) break
    const ttl = lockPrng.int(200, 2_000)
    // a few holders keep the lock past their lease: others may take it once it passed
    const holdMs = lockPrng.chance(0.15) ? lockPrng.int(ttl, ttl * 2) : lockPrng.int(5, Math.round(ttl * 0.8))
    ops.push({ at: lockAt, kind: 'lock', bucket: Locks.BUCKET, key: lockPrng.pick(LOCK_NAMES), nodeHint: lockPrng.int(0, 1_000), size: ttl, holdMs })
  }
  if (near !== undefined) {
    // near seeds read a key again on the same node soon after a read or a write of it, so reads
    // meet their near copies and their own writes (drawn after everything else: the other draws
    // of the seed stay as they were)
    const nearPrng = prng.fork()
    for (const o of [...ops]) {
      if (o.kind === 'incr' || (o.bucket !== 'main' && o.bucket !== 'blobs') || !nearPrng.chance(0.6)) continue
      ops.push({ ...o, kind: 'get', size: 0, at: o.at + nearPrng.int(10, 600) })
    }
  }
  // some increments come in bursts: several of one key started on one node at once (drawn after
  // everything else, so the other draws of a seed stay as they were)
  const burstPrng = prng.fork()
  for (let i = 0; i < ops.length; i++) {
    const o = ops[i]!
    if (o.kind === 'incr' && burstPrng.chance(0.25)) ops[i] = { ...o, burst: burstPrng.int(2, 5) }
  }
  ops.sort((a, b) => a.at - b.at)
  return { config, ops, activeEnd, faultTimes, runtimePrng, keys }
}

// ---- nodes ------------------------------------------------------------------------------

type NodeState = 'starting' | 'up' | 'dead' | 'left'

interface SimNode {
  readonly id: string
  state: NodeState
  /** Clock skew (ms) of this node against the test clock. */
  offset: number
  /** Paused like SIGSTOP: its timers wait (see VirtualTime), its links are cut, no client uses it. */
  paused: boolean
  readonly parked: Array<() => void>
  /** Bumped at every start and kill: a start that finishes after a kill is discarded. */
  generation: number
  scope?: Scope.CloseableScope
  mycel?: Mycel.Mycel['Type']
  locks?: Locks.Locks['Type']
  nodosum?: Nodosum.Nodosum['Type']
  run?: <A, E>(effect: Effect.Effect<A, E>) => unknown
}

const addressOf = (id: string) => `${id}:${PORT}`

/** Self-signed identities, made once per node id per process (key generation is real async work). */
const identities = new Map<string, Nodosum.TlsIdentity>()
const identityFor = (id: string): Effect.Effect<Nodosum.TlsIdentity> =>
  identities.has(id)
    ? Effect.succeed(identities.get(id)!)
    : Certificates.createSelfSigned(id).pipe(
        Effect.map((c) => ({ cert: c.cert, key: c.key, ca: undefined })),
        Effect.tap((identity) => Effect.sync(() => identities.set(id, identity)))
      )

/** Identities of every node a run with these options may start, made before it starts. */
const prepareIdentities = (count: number) => Effect.forEach(Array.from({ length: count }, (_, i) => `n${i + 1}`), identityFor, { discard: true })

const MAX_NODES = 12

const cpuMs = (since: NodeJS.CpuUsage): number => {
  const d = process.cpuUsage(since)
  return Math.round((d.user + d.system) / 1000)
}

/** Runs one seed. */
export const runSeed = (options: SimOptions): Promise<RunResult> => {
  const started = performance.now()
  const cpu = process.cpuUsage()
  const { config, ops: plannedOps, activeEnd, faultTimes, runtimePrng, keys } = plan(options)
  const history: History = { config, ops: [], faults: [], samples: [] }
  const vt = new VirtualTime()
  const program = Effect.gen(function* () {
    const network = yield* MemoryTransport.MemoryNetwork
    const rootRuntime = yield* Effect.runtime<never>()
    const now = () => vt.now()

    const nodes = new Map<string, SimNode>()
    const upNodes = () => [...nodes.values()].filter((n) => n.state === 'up')
    const knownAddresses = () =>
      [...nodes.values()].filter((n) => n.state !== 'left').map((n) => ({ host: n.id, port: PORT }))
    const record = (kind: FaultKind, ids: ReadonlyArray<string>, detail?: string) => {
      history.faults.push(detail === undefined ? { at: now(), kind, nodes: [...ids] } : { at: now(), kind, nodes: [...ids], detail })
    }

    const clockOf = (node: SimNode): Clock.Clock => vt.clock(() => node.offset, node)

    const nodosumLayer = (id: string) =>
      Layer.scoped(
        Nodosum.Nodosum,
        Effect.gen(function* () {
          const settings = yield* NodosumConfig.make({ nodeId: id, host: id, port: PORT, clusterSecret: SECRET, ...nodeSettings })
          const identity = yield* identityFor(id)
          const transport = yield* MemoryTransport.make({
            host: id,
            port: PORT,
            handshakeTimeoutMs: nodeSettings.transport.handshakeTimeout,
            idleTimeoutMs: nodeSettings.transport.idleTimeout,
            limits: settings.transport,
            certificates: [Certificates.toDer(identity.cert)]
          })
          // the deployment's DNS: every member that has not left, restarted or not
          const discovery: Discovery.Discovery['Type'] = {
            describe: 'simulated deployment',
            resolve: Effect.sync(() => knownAddresses().filter((a) => a.host !== id))
          }
          return yield* Nodosum.make(settings, identity).pipe(
            Effect.provideService(Transport, transport),
            Effect.provideService(Discovery.Discovery, discovery)
          )
        })
      ).pipe(Layer.orDie)

    const start = (node: SimNode) => {
      const generation = ++node.generation
      node.state = 'starting'
      const build = Effect.gen(function* () {
        const scope = yield* Scope.make()
        const ctx = yield* Layer.buildWithScope(
          Locks.layer({ maxClockSkewMs: LOCK_SKEW_MS }).pipe(
            Layer.provideMerge(Mycel.layer(mycelOptions)),
            Layer.provideMerge(Streams.layer()),
            Layer.provideMerge(nodosumLayer(node.id))
          ),
          scope
        )
        const mycel = Context.get(ctx, Mycel.Mycel)
        for (const b of config.buckets) {
          yield* mycel.createBucket(b.name, b.ttlMs, b.maxSize, { replicas: config.replicas, maxBytes: b.maxBytes, ...(b.near === undefined ? {} : { nearCache: b.near }) })
        }
        const clients = yield* FiberSet.make<unknown, unknown>().pipe(Scope.extend(scope))
        const run = yield* FiberSet.runtime(clients)<never>()
        if (node.generation !== generation) {
          yield* Scope.close(scope, Exit.void)
          return
        }
        node.scope = scope
        node.mycel = mycel
        node.locks = Context.get(ctx, Locks.Locks)
        node.nodosum = Context.get(ctx, Nodosum.Nodosum)
        node.run = (effect) => run(effect as Effect.Effect<unknown, unknown>)
        node.state = 'up'
        restoreLinks(node)
      }).pipe(
        Effect.withClock(clockOf(node)),
        Effect.provideService(MemoryTransport.MemoryNetwork, network),
        Effect.catchAllCause((cause) =>
          Effect.sync(() => {
            if (node.generation === generation) node.state = 'dead'
            record('kill', [node.id], `start failed: ${Cause.pretty(cause).split('\n')[0]}`)
          })
        )
      )
      Runtime.runFork(rootRuntime)(build)
    }

    const stop = (node: SimNode, how: 'kill' | 'leave') => {
      node.generation++
      if (how === 'kill') network.kill(addressOf(node.id))
      const scope = node.scope
      node.scope = undefined
      node.mycel = undefined
      node.locks = undefined
      node.nodosum = undefined
      node.run = undefined
      node.state = how === 'kill' ? 'dead' : 'left'
      if (scope !== undefined) Runtime.runFork(rootRuntime)(Scope.close(scope, Exit.void))
    }

    // ---- network faults: one partition or pause at a time (heal is global) ----
    let networkFault: 'none' | 'partition' | 'pause' = 'none'
    const delays = new Map<string, number>()
    const setDelay = (from: string, to: string, ms: number) => {
      if (ms > 0) delays.set(`${from}>${to}`, ms)
      else delays.delete(`${from}>${to}`)
      network.delay(addressOf(from), addressOf(to), ms)
    }
    /** A node that (re)started gets the links the others have: unblocked unless a fault says otherwise, delays as they are. */
    const restoreLinks = (node: SimNode) => {
      if (networkFault === 'none') network.heal()
      for (const other of nodes.values()) {
        if (other.id === node.id) continue
        network.delay(addressOf(node.id), addressOf(other.id), delays.get(`${node.id}>${other.id}`) ?? 0)
        network.delay(addressOf(other.id), addressOf(node.id), delays.get(`${other.id}>${node.id}`) ?? 0)
      }
    }

    // ---- events ----
    const events: Array<Event> = []
    let seq = 0
    const at = (time: number, run: () => void) => {
      const event = { at: time, seq: seq++, run }
      let i = events.length
      while (i > 0 && (events[i - 1]!.at > time || (events[i - 1]!.at === time && events[i - 1]!.seq > event.seq))) i--
      events.splice(i, 0, event)
    }
    let injected = 0
    const minUp = Math.max(2, config.replicas)
    const prng = runtimePrng

    const fault = (choice: FaultChoice) => {
      const up = upNodes()
      switch (choice) {
        case 'kill': {
          // a dead endpoint keeps its blocked links through a heal: no kills while the network is cut
          if (networkFault !== 'none' || up.length <= minUp) return
          const victim = prng.pick(up)
          stop(victim, 'kill')
          record('kill', [victim.id])
          injected++
          const downFor = prng.int(1_000, 15_000)
          at(now() + downFor, () => {
            if (victim.state !== 'dead') return
            record('restart', [victim.id])
            start(victim)
          })
          return
        }
        case 'pause': {
          if (networkFault !== 'none' || up.length < 2) return
          const victim = prng.pick(up)
          const others = [...nodes.values()].filter((n) => n.id !== victim.id && n.state !== 'left').map((n) => n.id)
          network.partition([victim.id], others)
          victim.paused = true
          networkFault = 'pause'
          record('pause', [victim.id])
          injected++
          at(now() + prng.int(500, 6_000), () => {
            network.heal()
            networkFault = 'none'
            victim.paused = false
            // everything that came due while it was stopped runs at once, as after SIGCONT
            for (const wake of victim.parked.splice(0)) wake()
            record('resume', [victim.id])
          })
          return
        }
        case 'partition': {
          if (networkFault !== 'none' || up.length < 2) return
          const all = [...nodes.values()].filter((n) => n.state !== 'left').map((n) => n.id)
          const left = prng.sample(all, prng.int(1, all.length - 1))
          const right = all.filter((id) => !left.includes(id))
          network.partition(left, right)
          networkFault = 'partition'
          record('partition', left, `| ${right.join(',')}`)
          injected++
          at(now() + prng.int(1_000, 10_000), () => {
            network.heal()
            networkFault = 'none'
            record('heal', [])
          })
          return
        }
        case 'delay': {
          if (up.length < 2) return
          const [from, to] = prng.sample(up, 2)
          const [a, b] = prng.chance(0.5) ? [from!, to!] : [to!, from!]
          const ms = prng.int(5, 400)
          setDelay(a.id, b.id, ms)
          record('delay', [a.id, b.id], `${ms} ms`)
          injected++
          at(now() + prng.int(1_000, 8_000), () => {
            setDelay(a.id, b.id, 0)
            record('undelay', [a.id, b.id])
          })
          return
        }
        case 'membership': {
          const joins = Math.min(prng.int(0, 2), MAX_NODES - nodes.size)
          const leaves = Math.min(prng.int(joins === 0 ? 1 : 0, 2), Math.max(0, up.length - minUp))
          if (joins + leaves === 0) return
          const leaving = prng.sample(up, leaves)
          const joining: Array<SimNode> = []
          for (let i = 0; i < joins; i++) {
            const node: SimNode = { id: `n${nodes.size + 1}`, state: 'starting', offset: 0, generation: 0, paused: false, parked: [] }
            nodes.set(node.id, node)
            joining.push(node)
          }
          for (const node of leaving) stop(node, 'leave')
          for (const node of joining) start(node)
          if (joining.length > 0) record('join', joining.map((n) => n.id))
          if (leaving.length > 0) record('leave', leaving.map((n) => n.id))
          injected += joining.length + leaving.length
          return
        }
        case 'skew': {
          const candidates = [...nodes.values()].filter((n) => n.state !== 'left')
          if (candidates.length === 0) return
          const node = prng.pick(candidates)
          const magnitude = prng.chance(0.5) ? prng.int(1_000, 30_000) : prng.int(30_000, 300_000)
          node.offset = prng.chance(0.2) ? 0 : prng.chance(0.5) ? magnitude : -magnitude
          history.faults.push({ at: now(), kind: 'skew', nodes: [node.id], detail: `${node.offset >= 0 ? '+' : ''}${node.offset} ms`, offsetMs: node.offset })
          injected++
          return
        }
      }
    }

    // ---- clients ----
    let nextOp = 1
    let writeId = 0
    /** A lock client: one tryAcquire; when granted, holds for `holdMs` and releases. */
    const lockClient = (node: SimNode, name: string, ttlMs: number, holdMs: number) => {
      const op: Op = { id: nextOp++, node: node.id, kind: 'lock', bucket: Locks.BUCKET, key: name, inv: now() }
      history.ops.push(op)
      // every other client goes through the Promise entry points (the facade's), the others through the Effects
      const promised = op.id % 2 === 1
      const locks = node.locks!
      const acquire = promised ? Effect.tryPromise({ try: () => locks.unsafeTryAcquire(name, { ttlMs }), catch: (e) => e }) : locks.tryAcquire(name, { ttlMs })
      const release = (lock: Locks.Lock) => (promised && lock.unsafeRelease !== undefined ? Effect.tryPromise({ try: lock.unsafeRelease, catch: (e) => e }) : lock.release)
      node.run!(
        acquire.pipe(
          Effect.tap((lock) =>
            Effect.sync(() => {
              op.comp = now()
              if (lock === undefined) op.res = 'miss'
              else {
                op.res = 'ok'
                op.token = lock.token.toString()
                op.leaseEnd = now() + lock.remainingMs()
              }
            })
          ),
          Effect.flatMap((lock) =>
            lock === undefined
              ? Effect.void
              : Effect.sleep(holdMs).pipe(
                  Effect.andThen(Effect.sync(() => (op.releasedAt = now()))),
                  Effect.andThen(Effect.ignore(release(lock)))
                )
          ),
          Effect.onExit((exit) =>
            Effect.sync(() => {
              if (Exit.isSuccess(exit) || op.res !== undefined) return
              if (Cause.isInterruptedOnly(exit.cause)) op.res = 'lost'
              else {
                op.comp = now()
                op.res = 'error'
                const failure = Cause.failureOption(exit.cause)
                op.err = Option.match(failure, { onNone: () => 'defect', onSome: (e) => String((e as { reason?: unknown }).reason ?? e) })
              }
            })
          )
        )
      )
    }

    const issue = (node: SimNode, kind: OpKind, bucket: string, key: string, size: number, final = false, promise = false) => {
      const id = nextOp++
      let value: Uint8Array | undefined
      let hash: string | undefined
      if (kind === 'put') {
        value = valueBytes(config.seed, ++writeId, size)
        hash = hashBytes(value)
      }
      const op: Op = {
        id,
        node: node.id,
        kind,
        bucket,
        key,
        inv: now(),
        ...(value === undefined ? {} : { size, hash: hash! }),
        ...(kind === 'incr' ? { delta: size } : {}),
        ...(final ? { final: true } : {})
      }
      history.ops.push(op)
      const mycel = node.mycel!
      const counter = config.buckets.some((b) => b.name === bucket && b.counters === true)
      const effect: Effect.Effect<Uint8Array | undefined | void | number, unknown> =
        kind === 'put'
          ? mycel.put(bucket, key, value!)
          : kind === 'delete'
            ? mycel.delete(bucket, key)
            : kind === 'incr'
              ? // every other increment through the Promise entry point (the facade's), the others through the Effect
                promise || op.id % 2 === 1
                ? Effect.tryPromise({ try: () => mycel.unsafeIncrement(bucket, key, size), catch: (e) => e })
                : mycel.increment(bucket, key, size)
              : mycel.get(bucket, key)
      node.run!(
        effect.pipe(
          Effect.onExit((exit) =>
            Effect.sync(() => {
              if (Exit.isSuccess(exit)) {
                op.comp = now()
                if (kind === 'get') {
                  const v = exit.value as Uint8Array | undefined
                  op.res = v === undefined ? 'miss' : 'hit'
                  if (v !== undefined) op.got = hashBytes(v)
                  if (counter) op.count = v === undefined ? 0 : Number(new TextDecoder().decode(v))
                } else op.res = 'ok'
                if (kind === 'incr') op.count = exit.value as number
                return
              }
              if (Cause.isInterruptedOnly(exit.cause)) {
                op.res = 'lost'
                return
              }
              op.comp = now()
              op.res = 'error'
              const failure = Cause.failureOption(exit.cause)
              op.err = Option.match(failure, {
                onNone: () => `defect: ${Cause.pretty(exit.cause).split('\n')[0]}`,
                onSome: (e) => (typeof e === 'object' && e !== null && 'reason' in e ? String((e as { reason: unknown }).reason) : String(e))
              })
            })
          )
        )
      )
    }

    // ---- the run ----
    for (let i = 0; i < config.nodes; i++) {
      const node: SimNode = { id: `n${i + 1}`, state: 'starting', offset: 0, generation: 0, paused: false, parked: [] }
      nodes.set(node.id, node)
    }
    for (const node of nodes.values()) start(node)
    for (const p of plannedOps) {
      at(p.at, () => {
        const up = upNodes().filter((n) => !n.paused)
        if (up.length === 0) return
        if (p.kind === 'lock') lockClient(up[p.nodeHint % up.length]!, p.key, p.size, p.holdMs ?? 0)
        else if (p.burst !== undefined) for (let i = 0; i < p.burst; i++) issue(up[p.nodeHint % up.length]!, p.kind, p.bucket, p.key, p.size, false, true)
        else issue(up[p.nodeHint % up.length]!, p.kind, p.bucket, p.key, p.size)
      })
    }
    for (const f of faultTimes) at(f.at, () => fault(f.choice))

    const sample = () => {
      for (const node of upNodes()) {
        for (const b of config.buckets) {
          const s = node.mycel!.stats(b.name)
          if (s !== undefined) history.samples.push({ at: now(), node: node.id, bucket: b.name, keys: s.keys, bytes: s.bytes })
        }
      }
    }
    let nextSample = SAMPLE_EVERY_MS
    const advanceTo = (end: number, until?: () => boolean) =>
      Effect.gen(function* () {
        while (now() < end) {
          while (events.length > 0 && events[0]!.at <= now()) events.shift()!.run()
          if (until?.() === true) return
          if (now() >= nextSample) {
            sample()
            nextSample += SAMPLE_EVERY_MS
          }
          const next = Math.min(end, nextSample, events[0]?.at ?? Infinity, until === undefined ? Infinity : now() + TICK_MS)
          yield* Effect.promise(() => vt.advanceTo(Math.max(next, now() + 1)))
        }
      })

    yield* advanceTo(activeEnd)
    // the end of the faults: heal everything, stop every delay, keep the skews; then a quiet period
    events.length = 0
    network.heal()
    networkFault = 'none'
    for (const node of nodes.values()) {
      node.paused = false
      for (const wake of node.parked.splice(0)) wake()
    }
    for (const k of [...delays.keys()]) {
      const [from, to] = k.split('>') as [string, string]
      setDelay(from, to, 0)
    }
    history.finalHealAt = now()
    record('heal', [], 'final')
    yield* advanceTo(now() + QUIET_MS)
    history.views = Object.fromEntries(upNodes().map((n) => [n.id, [...n.nodosum!.nodes()].sort()]))
    const finalFrom = history.ops.length
    for (const b of config.buckets) {
      if (b.strict || b.counters === true) for (const key of keys[b.name]!) for (const node of upNodes()) issue(node, 'get', b.name, key, 0, true)
    }
    const finals = history.ops.slice(finalFrom)
    yield* advanceTo(now() + FINAL_MAX_MS, () => finals.every((op) => op.res !== undefined))
    sample()
    for (const op of history.ops) if (op.res === undefined) op.res = 'lost'
    const virtualMs = now()
    // shut every node down so nothing of this run is left running
    for (const node of nodes.values()) if (node.state === 'up' || node.state === 'starting') stop(node, 'leave')
    yield* advanceTo(now() + 2_000)
    return { injected, virtualMs }
  })

  const logger = options.verbose === true ? Logger.minimumLogLevel(LogLevel.Debug) : Logger.minimumLogLevel(LogLevel.None)
  return Effect.runPromise(
    // the config schemas load with a real dynamic import: before virtual time, not inside it
    Effect.all([NodosumConfig.load, TransportConfig.load, StreamsConfig.load, MycelConfig.load], { discard: true }).pipe(
      Effect.andThen(prepareIdentities(MAX_NODES)),
      Effect.andThen(
        Effect.sync(() => vt.install()).pipe(
          Effect.andThen(program.pipe(Effect.provide(MemoryTransport.networkLayer), Effect.withClock(vt.clock()), Effect.scoped)),
          Effect.ensuring(Effect.sync(() => vt.uninstall()))
        )
      ),
      Effect.provide(logger)
    )
  ).then(({ injected, virtualMs }) => {
    const violations = check(history)
    return { options, history, violations, faults: injected, ops: history.ops.length, virtualMs, wallMs: Math.round(performance.now() - started), cpuMs: cpuMs(cpu) }
  })
}
