/**
 * The checker: reads a run's history and reports every broken promise of Mycel
 * (packages/mycel/README.md, DESIGN.md section 7). Pure; it knows nothing of the engine.
 *
 * Writes are acknowledged (`ok`) or indeterminate (a typed error, or never completed): an
 * indeterminate write may take effect at any time after its invocation, or never. Order is real
 * time: write a precedes write b when a completed before b was invoked.
 *
 * - P1 an acknowledged put or delete is not lost while fewer than R owners fail at once: a
 *   checked read does not miss a put that an acknowledged write followed by nothing newer; kills
 *   of R distinct nodes within `killWindowMs` of each other, between the write and the read,
 *   excuse it (conservative: those nodes may have been the key's owners).
 * - P2 a write acknowledged after another completed wins: a checked read does not return a value
 *   an acknowledged later put superseded.
 * - P3 a read returns a value some put wrote to that key (invoked before the read ended) or a
 *   miss; never a torn or invented one. Every read, in every bucket, is held to it.
 * - P4 after the final heal and the quiet period, every node answers the same for every key.
 * - P5 a deleted key does not come back: a checked read does not return a value an acknowledged
 *   delete superseded.
 * - P6 memory is bounded: sampled keys and bytes per node stay within the bucket's limits.
 * - P7 counters (buckets of increments only): every final read of a counter is at least the sum
 *   of its acknowledged increments and at most that plus the sum of the failed or unfinished
 *   ones (none applied twice, none acknowledged and lost); an increment acknowledged before
 *   another began answered a smaller count, and no two acknowledged increments answered the
 *   same count. A cut (partition or pause, and `settleMs` after it, until the sides see each
 *   other again) gives each side a primary whose chain the heal may overwrite: the lower bound
 *   and the order are not held for increments acknowledged then; kills of R nodes within
 *   `killWindowMs` excuse them too, and so does an increment under way within `settleMs` after
 *   a clock step beyond the failure timeout (see below). The upper bound is always held.
 *
 * - P8 locks (`tryAcquire`, hold, release on a few names of the locks' bucket): no fencing token
 *   granted twice for a name; a grant that began after another was granted has a higher token;
 *   no two holds of a name overlap, each judged by its holder's own lease (from the grant to the
 *   earlier of its release and the end of its lease on its own clock). A cut (and `settleMs`
 *   after it) gives each side a primary for the lock's record, and R kills within `killWindowMs`
 *   (R of the locks' bucket, `lockReplicas`: 2 whatever the cache's R) may take the record:
 *   grants then are not held to it (what the locks README says a partition can do); so does a node's clock stepping by more than the failure timeout (its failure
 *   detector declares every peer failed, and it acts alone for a moment). An overlap is also excused when a node whose clock ran ahead of the earlier
 *   holder's by more than the locks' clock-skew allowance took the lock in between (or is the
 *   later holder): its release freed the lock for the next one (the model's stated assumption).
 * - P9 near cache (buckets with `near`): a read returns a value that was current at some point
 *   within the last near ttl, and never a value older than the reading node's own last
 *   acknowledged write. The first is promises 1, 2 and 5 with the read's window widened by the
 *   near ttl: a write supersedes for such a read once it completed `staleMs + ttl` before the
 *   read began, and a read is checked only when no disturbance fell within `settleMs + ttl`
 *   before it (a copy fetched while unsettled may live that long). The second: a checked read on
 *   node N does not return a value (or a miss) that N's own last acknowledged write of the key,
 *   completed before the read began, superseded (a write that was acknowledged before N's write
 *   began is superseded by it; concurrent and unfinished ones are not). A clock skew within
 *   2 × `settleMs` before the read excuses it: a node whose clock jumps sees its peers'
 *   heartbeats time out and reads alone until discovery brings them back (seed 21: 3.2 s).
 *
 * Writes on two sides of a partition or pause, once any clock was skewed, cannot be ordered by
 * real time by any available cache: violations of 1, 2 and 5 whose writes span such a cut are
 * not counted (P4 still is). A node whose clock steps by more than the failure timeout acts alone
 * for a moment, as one side of a cut: a violation of 1, 2, 5, 7 or 9 that involves a write (or an
 * increment) under way within `settleMs` after such a step is not counted either — only those
 * operations, not every pair that spans the step (seed 7 at `--gap 2`, skew,delay: three nodes
 * declaring each other failed and rejoining over and over, acknowledging writes of one key
 * alone meanwhile).
 *
 * "Checked" reads are the final ones and those that start `settleMs` after any partition,
 * pause, kill, restart, join or leave, or a node's clock step beyond the failure timeout (an AP
 * cache may answer stale there; the step makes that node declare its peers failed), and not while a
 * partition or pause is open: each side of a cut answers from what it holds, and a side without
 * a key's owners misses it until the heal (promises 1, 2 and 5 are about what is kept and what
 * wins, which the final reads and P4 check; promise 3 holds every read); a write supersedes
 * for a read only once it completed `staleMs` before the read began (replicas lag).
 */
import type { Fault, History, Op } from './History.js'

export type Promise = 'P1' | 'P2' | 'P3' | 'P4' | 'P5' | 'P6' | 'P7' | 'P8' | 'P9'

export interface Violation {
  readonly promise: Promise
  readonly bucket: string
  /** The key involved ('' for P6). */
  readonly key: string
  /** The node involved, where one is. */
  readonly node?: string
  readonly message: string
  /** Op ids that show it (the read and the writes it contradicts). */
  readonly ops: ReadonlyArray<number>
  readonly at: number
}

const isWrite = (op: Op) => op.kind === 'put' || op.kind === 'delete'
const acked = (op: Op) => op.res === 'ok' && op.comp !== undefined

/** Network and membership faults after which reads may be stale for a while. */
const DISTURBING = new Set(['kill', 'restart', 'pause', 'resume', 'partition', 'heal', 'join', 'leave'])

export const promiseNames: Readonly<Record<Promise, string>> = {
  P1: 'an acknowledged put or delete is never lost while fewer than R owners fail at once',
  P2: 'a write acknowledged after another acknowledged write completed wins over it',
  P3: 'a get returns a value some put wrote, or a miss; never a torn or invented one',
  P4: 'once faults heal and writes stop, every owner holds the same version',
  P5: 'a deleted key does not come back',
  P6: 'memory stays bounded (keys and bytes within the bucket limits)',
  P7: 'an acknowledged increment is counted once: never lost, never applied twice',
  P8: 'locks: fencing tokens never repeat or go backwards per name, and holds never overlap',
  P9: "a near-cache read is no older than the near ttl, nor than the node's own last acknowledged write"
}

/** True when kills of `r` distinct nodes fall within `window` ms of each other inside [from, to]. */
export const killsExcuse = (faults: ReadonlyArray<Fault>, r: number, window: number, from: number, to: number): boolean => {
  const kills = faults.filter((f) => f.kind === 'kill' && f.at >= from && f.at <= to)
  for (let i = 0; i < kills.length; i++) {
    const nodes = new Set<string>()
    for (let j = i; j < kills.length && kills[j]!.at - kills[i]!.at <= window; j++) for (const n of kills[j]!.nodes) nodes.add(n)
    if (nodes.size >= r) return true
  }
  return false
}

/** Windows [from, to] during which the network was cut (a partition or a pause). */
const cuts = (faults: ReadonlyArray<Fault>): Array<readonly [number, number]> => {
  const out: Array<readonly [number, number]> = []
  let open: number | undefined
  for (const f of faults) {
    if ((f.kind === 'partition' || f.kind === 'pause') && open === undefined) open = f.at
    if ((f.kind === 'heal' || f.kind === 'resume') && open !== undefined) {
      out.push([open, f.at])
      open = undefined
    }
  }
  if (open !== undefined) out.push([open, Infinity])
  return out
}

/**
 * Times a node's clock stepped by more than the failure timeout: its failure detector (on that
 * clock) then finds every peer's last heartbeat too old and declares it failed, so for a moment
 * the node acts alone, as one side of a partition (seeds 57 and 79).
 */
const clockSteps = (history: History): Array<number> => {
  const { config, faults } = history
  const steps: Array<number> = []
  const last = new Map<string, number>()
  for (const f of faults) {
    if (f.kind !== 'skew') continue
    for (const n of f.nodes) {
      if (config.failureTimeoutMs !== undefined && Math.abs((f.offsetMs ?? 0) - (last.get(n) ?? 0)) > config.failureTimeoutMs) steps.push(f.at)
      last.set(n, f.offsetMs ?? 0)
    }
  }
  return steps
}

/** The first time any node's clock was off (Infinity if never). */
const firstSkew = (faults: ReadonlyArray<Fault>): number => faults.find((f) => f.kind === 'skew' && (f.offsetMs ?? 0) !== 0)?.at ?? Infinity

export const check = (history: History): Array<Violation> => {
  const { config, ops, faults } = history
  const violations: Array<Violation> = []
  // a clock step beyond the failure timeout cuts its node off for a moment: reads settle after it as after a partition
  const disturbances = [...faults.filter((f) => DISTURBING.has(f.kind)).map((f) => f.at), ...clockSteps(history)]
  const cut = cuts(faults)
  const skewFrom = firstSkew(faults)
  /**
   * Two sides of a partition each acknowledge writes; with clocks apart, no available cache can
   * order them by real time (a side cannot know of the other's write): write order on different
   * sides of a cut, once a clock was skewed, is not held to promises 1, 2 and 5. A side acts
   * alone until it has found the other again after the heal or resume (heartbeats, handshakes,
   * membership), so the cut counts until `settleMs` after it, as for the locks (seeds 433, 481:
   * writes 10-600 ms after a heal, each node still its key's only owner).
   */
  const unorderable = (from: number, to: number) => skewFrom <= to && cut.some(([a, b]) => a <= to && b + config.settleMs >= from)
  /**
   * A clock step beyond the failure timeout leaves its node alone for a moment (its failure
   * detector drops its peers, or theirs drop it), as one side of a cut: an operation under way
   * within `settleMs` after such a step is not held to the order of promises 1, 2, 5, 7 and 9
   * (seed 7 at `--gap 2`, skew,delay: nodes declaring each other failed and rejoining, over and
   * over, acknowledging writes of one key alone meanwhile).
   * Narrower than a cut: only the operations under way then, not every pair that spans it.
   */
  const steps = clockSteps(history)
  const alone = (o: Op): boolean => steps.some((t) => t <= (o.comp ?? o.inv) && t + config.settleMs >= o.inv)
  const settled = (read: Op, nearTtlMs = 0): boolean => {
    if (read.final === true) return true
    const from = read.inv - config.settleMs - nearTtlMs
    const to = read.comp ?? read.inv
    // while a cut is open each side answers from what it has: Mycel is available, not linearizable
    if (cut.some(([a, b]) => a <= to && b >= read.inv)) return false
    return !disturbances.some((t) => t >= from && t <= to)
  }

  const byKey = new Map<string, Array<Op>>()
  for (const op of ops) {
    const id = `${op.bucket}\u0000${op.key}`
    const list = byKey.get(id)
    if (list === undefined) byKey.set(id, [op])
    else list.push(op)
  }

  checkLocks(history, cut, violations)
  for (const bucket of config.buckets) {
    if (bucket.counters === true) {
      checkCounters(history, bucket.name, byKey, cut, alone, violations)
      continue
    }
    for (const [id, list] of byKey) {
      if (!id.startsWith(`${bucket.name}\u0000`)) continue
      const key = id.slice(bucket.name.length + 1)
      const writes = list.filter(isWrite)
      const puts = writes.filter((w) => w.kind === 'put')
      const reads = list.filter((op) => op.kind === 'get' && (op.res === 'hit' || op.res === 'miss'))
      for (const read of reads) {
        const end = read.comp!
        // P3: a value some put to this key wrote, invoked before the read ended
        if (read.res === 'hit') {
          const source = puts.filter((p) => p.hash === read.got)
          if (source.length === 0 || !source.some((p) => p.inv <= end)) {
            violations.push({
              promise: 'P3',
              bucket: bucket.name,
              key,
              node: read.node,
              at: read.inv,
              ops: [read.id],
              message: `read #${read.id} on ${read.node} returned a value (${read.got}) that no put to '${key}' wrote${source.length > 0 ? ' before the read ended' : ''}`
            })
            continue
          }
        }
        const nearTtl = bucket.near?.ttlMs ?? 0
        if (!bucket.strict || !settled(read, nearTtl)) continue
        if (bucket.near !== undefined) checkOwnWrite(history, bucket.name, key, read, writes, unorderable, alone, violations)
        // candidates: writes that may be what the read sees (a near copy may be the near ttl older)
        const horizon = read.inv - config.staleMs - nearTtl
        const supersedes = (w: Op, later: Op) => acked(w) && acked(later) && w.comp! < later.inv && later.comp! <= horizon
        const candidates = writes.filter((w) => w.inv <= end && !writes.some((later) => supersedes(w, later)))
        // the initial absence stands unless an acknowledged write completed before the horizon
        const initialStands = !writes.some((w) => acked(w) && w.comp! <= horizon)
        const ok =
          read.res === 'miss'
            ? initialStands || candidates.some((w) => w.kind === 'delete')
            : candidates.some((w) => w.kind === 'put' && w.hash === read.got)
        if (ok) continue
        // which acknowledged writes the answer contradicts: the newest ones that nothing supersedes
        const newest = candidates.filter((w) => acked(w) && w.comp! <= horizon)
        const from = Math.min(...newest.map((w) => w.inv))
        const seenPut = read.res === 'hit' ? puts.filter((p) => p.hash === read.got) : []
        if (killsExcuse(faults, config.replicas, config.killWindowMs, from, end)) continue
        if (unorderable(Math.min(from, ...seenPut.map((p) => p.inv)), read.inv)) continue
        if (newest.some(alone) || seenPut.some(alone)) continue
        const promise = read.res === 'miss' ? (newest.some((w) => w.kind === 'put') ? 'P1' : 'P5') : newest.some((w) => w.kind === 'delete') ? 'P5' : 'P2'
        const what =
          read.res === 'miss'
            ? `missed, but acknowledged ${newest.map((w) => `${w.kind} #${w.id}`).join(', ')} completed before it and nothing newer was acknowledged`
            : `returned the value of put #${seenPut.map((p) => p.id).join('/')}, superseded by acknowledged ${newest.map((w) => `${w.kind} #${w.id}`).join(', ')}`
        violations.push({
          promise: promise === 'P5' && read.res === 'miss' ? 'P1' : promise,
          bucket: bucket.name,
          key,
          node: read.node,
          at: read.inv,
          ops: [read.id, ...newest.map((w) => w.id), ...seenPut.map((p) => p.id)],
          message: `${read.final === true ? 'final ' : ''}read #${read.id} on ${read.node} ${what}`
        })
      }
      // P4: every final read of the key agrees
      if (bucket.strict) {
        const finals = list.filter((op) => op.kind === 'get' && op.final === true)
        const answers = new Map<string, Array<Op>>()
        for (const f of finals) {
          const a = f.res === 'hit' ? f.got! : f.res === 'miss' ? 'miss' : `error:${f.err ?? f.res}`
          answers.set(a, [...(answers.get(a) ?? []), f])
        }
        if (answers.size > 1 || [...answers.keys()].some((a) => a.startsWith('error:'))) {
          violations.push({
            promise: 'P4',
            bucket: bucket.name,
            key,
            at: finals[0]!.inv,
            ops: finals.map((f) => f.id),
            message: `after the heal and the quiet period the nodes answer differently: ${[...answers].map(([a, fs]) => `${fs.map((f) => f.node).join(',')}=${a}`).join(' ')}`
          })
        }
      }
    }
  }

  // P6: stats within the bucket limits
  const limits = new Map(config.buckets.map((b) => [b.name, b]))
  const reported = new Set<string>()
  for (const s of history.samples) {
    const b = limits.get(s.bucket)
    if (b === undefined) continue
    const over = s.keys > b.maxSize ? `${s.keys} keys > maxSize ${b.maxSize}` : b.maxBytes > 0 && s.bytes > b.maxBytes ? `${s.bytes} bytes > maxBytes ${b.maxBytes}` : undefined
    if (over === undefined || reported.has(`${s.node}/${s.bucket}`)) continue
    reported.add(`${s.node}/${s.bucket}`)
    violations.push({ promise: 'P6', bucket: s.bucket, key: '', node: s.node, at: s.at, ops: [], message: `${s.node} holds ${over} in '${s.bucket}'` })
  }
  return violations
}

/** A node's clock offset at `t` (ms), from the skew faults. */
const offsetAt = (faults: ReadonlyArray<Fault>, node: string, t: number): number => {
  let offset = 0
  for (const f of faults) if (f.kind === 'skew' && f.at <= t && f.nodes.includes(node)) offset = f.offsetMs ?? 0
  return offset
}

/** P8 over the lock grants. */
const checkLocks = (history: History, cut: ReadonlyArray<readonly [number, number]>, violations: Array<Violation>): void => {
  const { config, faults, ops } = history
  const allowance = config.lockSkewMs ?? 0
  // a clock stepping by more than the failure timeout cuts its node off for a moment
  const cuts = [...cut, ...clockSteps(history).map((t) => [t, t] as const)]
  const disturbed = (from: number, to: number) =>
    cuts.some(([a, b]) => a <= to && b + config.settleMs >= from) || killsExcuse(faults, config.lockReplicas ?? config.replicas, config.killWindowMs, from, to)
  const byName = new Map<string, Array<Op>>()
  for (const op of ops) {
    if (op.kind !== 'lock' || op.res !== 'ok' || op.token === undefined || op.comp === undefined) continue
    const list = byName.get(op.key)
    if (list === undefined) byName.set(op.key, [op])
    else list.push(op)
  }
  const holdEnd = (op: Op) => Math.min(op.leaseEnd ?? op.comp!, op.releasedAt ?? Infinity)
  const ahead = (c: Op, base: number) => Math.max(offsetAt(faults, c.node, c.inv), offsetAt(faults, c.node, c.comp!)) - base
  for (const [name, grants] of byName) {
    grants.sort((a, b) => a.comp! - b.comp!)
    const byToken = new Map<string, Op>()
    for (const b of grants) {
      const twin = byToken.get(b.token!)
      if (twin !== undefined && !disturbed(Math.min(twin.inv, b.inv), Math.max(twin.comp!, b.comp!))) {
        violations.push({ promise: 'P8', bucket: b.bucket, key: name, node: b.node, at: b.inv, ops: [twin.id, b.id], message: `token ${b.token} of '${name}' granted to #${twin.id} on ${twin.node} and #${b.id} on ${b.node}` })
      }
      byToken.set(b.token!, b)
      for (const a of grants) {
        if (a === b) continue
        if (a.comp! < b.inv && BigInt(b.token!) <= BigInt(a.token!) && !disturbed(a.inv, b.comp!)) {
          violations.push({
            promise: 'P8',
            bucket: b.bucket,
            key: name,
            node: b.node,
            at: b.inv,
            ops: [a.id, b.id],
            message: `grant #${b.id} of '${name}' began after #${a.id} was granted token ${a.token}, yet got token ${b.token}`
          })
        }
        // overlap: a (the lower token) still held by its own lease when b (a higher one) was granted
        if (BigInt(a.token!) >= BigInt(b.token!) || !(b.comp! < holdEnd(a) && a.comp! < holdEnd(b))) continue
        if (disturbed(Math.min(a.inv, b.inv), Math.max(holdEnd(a), b.comp!))) continue
        // a node whose clock ran ahead of a's took the lock from it, at b or at a grant between
        // them (whose release then freed it for b): excused by the model's clock assumption
        const base = offsetAt(faults, a.node, a.inv)
        if (grants.some((c) => BigInt(c.token!) > BigInt(a.token!) && BigInt(c.token!) <= BigInt(b.token!) && ahead(c, base) > allowance)) continue
        violations.push({
          promise: 'P8',
          bucket: b.bucket,
          key: name,
          node: b.node,
          at: b.comp!,
          ops: [a.id, b.id],
          message: `'${name}' granted to #${b.id} on ${b.node} (token ${b.token}) at ${b.comp} while #${a.id} on ${a.node} (token ${a.token}) held it until ${holdEnd(a)}`
        })
      }
    }
  }
}

/** P9's second half: a read on a node is not older than that node's own last acknowledged write of the key. */
const checkOwnWrite = (
  history: History,
  bucket: string,
  key: string,
  read: Op,
  writes: ReadonlyArray<Op>,
  unorderable: (from: number, to: number) => boolean,
  alone: (o: Op) => boolean,
  violations: Array<Violation>
): void => {
  const { config, faults } = history
  let own: Op | undefined
  for (const w of writes) if (w.node === read.node && acked(w) && w.comp! <= read.inv && (own === undefined || w.comp! > own.comp!)) own = w
  if (own === undefined) return
  // what the read may return: the own write, or a write not acknowledged before it began
  const allowed = writes.filter((w) => w.inv <= read.comp! && (w === own || !(acked(w) && w.comp! < own!.inv)))
  const ok = read.res === 'miss' ? allowed.some((w) => w.kind === 'delete') : allowed.some((w) => w.kind === 'put' && w.hash === read.got)
  if (ok) return
  if (killsExcuse(faults, config.replicas, config.killWindowMs, own.inv, read.comp!)) return
  if (unorderable(own.inv, read.inv) || alone(own)) return
  // a clock that jumps makes the node's failure detector drop its peers: it reads alone, as behind a cut
  if (faults.some((f) => f.kind === 'skew' && f.at >= read.inv - 2 * config.settleMs && f.at <= read.comp!)) return
  violations.push({
    promise: 'P9',
    bucket,
    key,
    node: read.node,
    at: read.inv,
    ops: [read.id, own.id],
    message: `read #${read.id} on ${read.node} ${read.res === 'miss' ? 'missed' : `returned ${read.got}`}, older than ${own.kind} #${own.id} that ${read.node} wrote and had acknowledged before the read`
  })
}

/** P7 over the keys of a counter bucket. */
const checkCounters = (
  history: History,
  bucket: string,
  byKey: ReadonlyMap<string, ReadonlyArray<Op>>,
  cut: ReadonlyArray<readonly [number, number]>,
  alone: (o: Op) => boolean,
  violations: Array<Violation>
): void => {
  const { config, faults } = history
  const disturbed = (from: number, to: number) =>
    cut.some(([a, b]) => a <= to && b + config.settleMs >= from) || killsExcuse(faults, config.replicas, config.killWindowMs, from, to)
  for (const [id, list] of byKey) {
    if (!id.startsWith(`${bucket}\u0000`)) continue
    const key = id.slice(bucket.length + 1)
    const incrs = list.filter((op) => op.kind === 'incr')
    const ok = incrs.filter((op) => acked(op) && op.count !== undefined)
    const ackedSum = ok.reduce((n, op) => n + (op.delta ?? 0), 0)
    const openSum = incrs.filter((op) => !acked(op)).reduce((n, op) => n + (op.delta ?? 0), 0)
    const lossExcused = ok.some((op) => disturbed(op.inv, op.comp!) || alone(op))
    for (const read of list.filter((op) => op.kind === 'get' && op.final === true && op.count !== undefined)) {
      const n = read.count!
      const low = n < ackedSum && !lossExcused && !disturbed(Math.min(...ok.map((op) => op.inv)), read.inv)
      if (n <= ackedSum + openSum && !low && Number.isSafeInteger(n)) continue
      violations.push({
        promise: 'P7',
        bucket,
        key,
        node: read.node,
        at: read.inv,
        ops: [read.id],
        message: `final read #${read.id} on ${read.node} counts ${n}: acknowledged increments sum to ${ackedSum}, failed or unfinished ones to ${openSum} (${n < ackedSum ? 'an acknowledged increment was lost' : 'an increment was applied twice'})`
      })
    }
    // order: an increment acknowledged before another began answered a smaller count; no count answered twice
    const byCount = new Map<number, Op>()
    for (const b of ok) {
      const twin = byCount.get(b.count!)
      if (twin !== undefined && !disturbed(Math.min(twin.inv, b.inv), Math.max(twin.comp!, b.comp!)) && !alone(twin) && !alone(b)) {
        violations.push({
          promise: 'P7',
          bucket,
          key,
          node: b.node,
          at: b.inv,
          ops: [twin.id, b.id],
          message: `increments #${twin.id} and #${b.id} both answered ${b.count}`
        })
      }
      byCount.set(b.count!, b)
      for (const a of ok) {
        if (a.comp! >= b.inv || b.count! > a.count! || disturbed(a.inv, b.comp!) || alone(a) || alone(b)) continue
        violations.push({
          promise: 'P7',
          bucket,
          key,
          node: b.node,
          at: b.inv,
          ops: [a.id, b.id],
          message: `increment #${b.id} began after #${a.id} answered ${a.count}, yet answered ${b.count}`
        })
      }
    }
  }
}
