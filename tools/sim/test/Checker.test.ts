import { describe, expect, it } from '@effect/vitest'
import { check, killsExcuse } from '../src/Checker.js'
import type { Fault, History, Op, RunConfig, Sample } from '../src/History.js'

/** Hand-made histories: each promise must be able to fail (a checker that cannot is worthless). */
const config: RunConfig = {
  seed: 0,
  nodes: 3,
  replicas: 2,
  buckets: [
    { name: 'main', ttlMs: 3_600_000, maxSize: 100, maxBytes: 0, strict: true },
    { name: 'tight', ttlMs: 3_600_000, maxSize: 2, maxBytes: 1_000, strict: false }
  ],
  staleMs: 100,
  settleMs: 1_000,
  killWindowMs: 1_000
}

let nextId = 1
const op = (o: Omit<Op, 'id' | 'bucket'> & { readonly bucket?: string }): Op => ({ id: nextId++, bucket: 'main', ...o })
const put = (key: string, hash: string, inv: number, comp: number | undefined, node = 'n1'): Op =>
  op({ node, kind: 'put', key, size: 1, hash, inv, ...(comp === undefined ? { res: 'lost' as const } : { comp, res: 'ok' as const }) })
const failedPut = (key: string, hash: string, inv: number, comp: number): Op => op({ node: 'n1', kind: 'put', key, size: 1, hash, inv, comp, res: 'error', err: 'Timeout' })
const del = (key: string, inv: number, comp: number, node = 'n1'): Op => op({ node, kind: 'delete', key, inv, comp, res: 'ok' })
const hit = (key: string, got: string, inv: number, node = 'n2', final = false): Op =>
  op({ node, kind: 'get', key, inv, comp: inv + 1, res: 'hit', got, ...(final ? { final: true } : {}) })
const miss = (key: string, inv: number, node = 'n2', final = false): Op => op({ node, kind: 'get', key, inv, comp: inv + 1, res: 'miss', ...(final ? { final: true } : {}) })

const history = (ops: Array<Op>, faults: Array<Fault> = [], samples: Array<Sample> = []): History => ({ config, ops, faults, samples })
const promises = (h: History) => check(h).map((v) => v.promise)

describe('checker', () => {
  it('a clean history passes: reads see the newest acknowledged write, concurrent writes may go either way, indeterminate writes may or may not land', () => {
    const h = history([
      miss('a', 0),
      put('a', 'A1', 10, 20),
      hit('a', 'A1', 200),
      // concurrent puts: either value is right
      put('a', 'A2', 300, 320),
      put('a', 'A3', 310, 330, 'n2'),
      hit('a', 'A2', 500),
      hit('a', 'A3', 510, 'n3'),
      // a put that failed may have landed, or not
      failedPut('b', 'B1', 600, 700),
      hit('b', 'B1', 900),
      miss('b', 950),
      del('a', 1_000, 1_010),
      miss('a', 1_200),
      put('a', 'A4', 1_300, 1_310),
      // within staleMs a replica may still answer the older state
      miss('a', 1_350),
      hit('a', 'A4', 5_000, 'n1', true),
      hit('a', 'A4', 5_000, 'n2', true),
      hit('a', 'A4', 5_000, 'n3', true)
    ])
    expect(check(h)).toEqual([])
  })

  it('P1: a miss after an acknowledged put, with nothing newer', () => {
    expect(promises(history([put('a', 'A1', 10, 20), miss('a', 500)]))).toEqual(['P1'])
  })

  it('P1 is excused when R nodes were killed at once between the write and the read, not when they were killed far apart', () => {
    const ops = [put('a', 'A1', 10, 20), miss('a', 5_000)]
    const together: Array<Fault> = [
      { at: 100, kind: 'kill', nodes: ['n1'] },
      { at: 300, kind: 'kill', nodes: ['n2'] }
    ]
    expect(promises(history(ops, together))).toEqual([])
    const apart: Array<Fault> = [
      { at: 100, kind: 'kill', nodes: ['n1'] },
      { at: 2_500, kind: 'kill', nodes: ['n2'] }
    ]
    // the read starts 2.5 s after the second kill: settled
    expect(promises(history(ops, apart))).toEqual(['P1'])
    expect(killsExcuse(together, 2, 1_000, 0, 5_000)).toBe(true)
    expect(killsExcuse(apart, 2, 1_000, 0, 5_000)).toBe(false)
  })

  it('reads near a partition, kill or membership change are not held to promises 1, 2 and 5; final reads always are', () => {
    const faults: Array<Fault> = [{ at: 400, kind: 'partition', nodes: ['n1'], detail: '| n2,n3' }]
    expect(promises(history([put('a', 'A1', 10, 20), miss('a', 500)], faults))).toEqual([])
    expect(promises(history([put('a', 'A1', 10, 20), miss('a', 500, 'n2', true)], faults))).toEqual(['P1'])
  })

  it('reads made while a partition or pause is open are not held to promises 1, 2 and 5 (each side answers from what it has); the same read once healed and settled is', () => {
    // a put acknowledged on one side; n2, cut off on the other side since t=50, misses it at t=3_000
    const during = [put('a', 'A1', 100, 110), miss('a', 3_000)]
    const cut: Array<Fault> = [
      { at: 50, kind: 'partition', nodes: ['n2'], detail: '| n1,n3' },
      { at: 8_000, kind: 'heal', nodes: [] }
    ]
    expect(promises(history(during, cut))).toEqual([])
    const pause: Array<Fault> = [
      { at: 50, kind: 'pause', nodes: ['n2'] },
      { at: 8_000, kind: 'resume', nodes: ['n2'] }
    ]
    expect(promises(history(during, pause))).toEqual([])
    // the same miss after the heal and the settle time is a violation
    expect(promises(history([put('a', 'A1', 100, 110), miss('a', 9_500)], cut))).toEqual(['P1'])
    // and without any cut it is one too
    expect(promises(history(during))).toEqual(['P1'])
  })

  it('P2: a read returns a value that a later acknowledged put superseded', () => {
    expect(promises(history([put('a', 'A1', 10, 20), put('a', 'A2', 30, 40, 'n2'), hit('a', 'A1', 500)]))).toEqual(['P2'])
  })

  it('P2 holds for the final state: the write acknowledged last must win on every node', () => {
    const h = history([put('a', 'A1', 10, 20, 'n3'), put('a', 'A2', 30, 40), hit('a', 'A1', 5_000, 'n1', true), hit('a', 'A1', 5_000, 'n2', true)])
    expect(promises(h)).toEqual(['P2', 'P2'])
  })

  it('writes on two sides of a partition with a clock skewed are not ordered by real time; without the skew they are', () => {
    const ops = [put('a', 'A1', 10, 20), put('a', 'A2', 30, 40, 'n2'), hit('a', 'A1', 5_000, 'n1', true)]
    const partition: Array<Fault> = [
      { at: 5, kind: 'partition', nodes: ['n1'], detail: '| n2,n3' },
      { at: 100, kind: 'heal', nodes: [] }
    ]
    const skew: Fault = { at: 1, kind: 'skew', nodes: ['n2'], detail: '-5000 ms', offsetMs: -5_000 }
    expect(promises(history(ops, [skew, ...partition]))).toEqual([])
    expect(promises(history(ops, partition))).toEqual(['P2'])
    expect(promises(history(ops, [skew]))).toEqual(['P2'])
  })

  it('with a clock skewed, writes within settleMs after the heal are not ordered either (the sides have not found each other yet, seeds 433, 481); later ones are', () => {
    const partition: Array<Fault> = [
      { at: 5, kind: 'partition', nodes: ['n1'], detail: '| n2,n3' },
      { at: 100, kind: 'heal', nodes: [] }
    ]
    const skew: Fault = { at: 1, kind: 'skew', nodes: ['n2'], detail: '-5000 ms', offsetMs: -5_000 }
    // 500 ms after the heal (settleMs is 1,000 here)
    const soon = [put('a', 'A1', 600, 610), put('a', 'A2', 620, 630, 'n2'), hit('a', 'A1', 5_000, 'n1', true)]
    expect(promises(history(soon, [skew, ...partition]))).toEqual([])
    expect(promises(history(soon, partition))).toEqual(['P2'])
    // 2 s after it: held
    const later = [put('a', 'A1', 2_100, 2_110), put('a', 'A2', 2_120, 2_130, 'n2'), hit('a', 'A1', 5_000, 'n1', true)]
    expect(promises(history(later, [skew, ...partition]))).toEqual(['P2'])
  })

  it('a read right after its node\'s clock stepped past the failure timeout is not checked (the node is cut off for a moment, seed 57); a smaller step is', () => {
    const ops = [put('a', 'A1', 10, 20), miss('a', 2_015, 'n1')]
    const withTimeout = (faults: Array<Fault>): History => ({ ...history(ops, faults), config: { ...config, failureTimeoutMs: 1_000 } })
    const step: Fault = { at: 2_000, kind: 'skew', nodes: ['n1'], detail: '+18797 ms', offsetMs: 18_797 }
    expect(promises(withTimeout([step]))).toEqual([])
    // a step within the failure timeout leaves the failure detector alone: the miss is a lost write
    expect(promises(withTimeout([{ ...step, offsetMs: 500, detail: '+500 ms' }]))).toEqual(['P1'])
    // and once settled after the step, reads are checked again
    expect(promises({ ...withTimeout([step]), ops: [put('a', 'A1', 10, 20), miss('a', 4_000, 'n1')] })).toEqual(['P1'])
  })

  it('writes within settleMs after a clock step past the failure timeout are not ordered (the node acts alone, as behind a cut; seed 7 at --gap 2, skew,delay); later ones and smaller steps are', () => {
    const withTimeout = (ops: Array<Op>, faults: Array<Fault>): History => ({ ...history(ops, faults), config: { ...config, failureTimeoutMs: 1_000 } })
    const step: Fault = { at: 2_000, kind: 'skew', nodes: ['n2'], detail: '-186982 ms', offsetMs: -186_982 }
    // n1's put completed before n2's began, yet n2's (stamped on a clock far behind) lost
    const soon = [put('a', 'A1', 2_100, 2_110), put('a', 'A2', 2_120, 2_130, 'n2'), hit('a', 'A1', 9_000, 'n1', true)]
    expect(promises(withTimeout(soon, [step]))).toEqual([])
    expect(promises(withTimeout(soon, [{ ...step, offsetMs: 500, detail: '+500 ms' }]))).toEqual(['P2'])
    const later = [put('a', 'A1', 3_100, 3_110), put('a', 'A2', 3_120, 3_130, 'n2'), hit('a', 'A1', 9_000, 'n1', true)]
    expect(promises(withTimeout(later, [step]))).toEqual(['P2'])
  })

  it('P3: a read returns a value no put wrote, or one written only after the read ended', () => {
    expect(promises(history([put('a', 'A1', 10, 20), hit('a', 'TORN', 500)]))).toEqual(['P3'])
    // a value written to another key is invented for this one
    expect(promises(history([put('b', 'B1', 10, 20), hit('a', 'B1', 500)]))).toEqual(['P3'])
    expect(promises(history([hit('a', 'A1', 5), put('a', 'A1', 10, 20)]))).toEqual(['P3'])
    // in an evicting bucket too
    expect(promises(history([op({ node: 'n1', kind: 'get', bucket: 'tight', key: 't', inv: 5, comp: 6, res: 'hit', got: 'X' })]))).toEqual(['P3'])
  })

  it('P4: after the heal and the quiet period the nodes answer differently (or cannot answer)', () => {
    expect(promises(history([put('a', 'A1', 10, 20), failedPut('a', 'A2', 30, 40), hit('a', 'A1', 5_000, 'n1', true), hit('a', 'A2', 5_000, 'n2', true)]))).toEqual(['P4'])
    const error = op({ node: 'n3', kind: 'get', key: 'a', inv: 5_000, comp: 6_000, res: 'error', err: 'Timeout', final: true })
    expect(promises(history([put('a', 'A1', 10, 20), hit('a', 'A1', 5_000, 'n1', true), error]))).toEqual(['P4'])
  })

  it('P5: a value comes back after an acknowledged delete', () => {
    expect(promises(history([put('a', 'A1', 10, 20), del('a', 30, 40, 'n2'), hit('a', 'A1', 500)]))).toEqual(['P5'])
    // a delete that failed may have landed or not: no promise broken either way
    const failedDelete = op({ node: 'n2', kind: 'delete', key: 'a', inv: 30, comp: 40, res: 'error', err: 'Timeout' })
    expect(promises(history([put('a', 'A1', 10, 20), failedDelete, hit('a', 'A1', 500), miss('a', 600)]))).toEqual([])
  })

  it('P6: a node holds more keys or bytes than the bucket allows', () => {
    const within: Array<Sample> = [{ at: 1_000, node: 'n1', bucket: 'tight', keys: 2, bytes: 1_000 }]
    expect(promises(history([], [], within))).toEqual([])
    expect(promises(history([], [], [{ at: 1_000, node: 'n1', bucket: 'tight', keys: 3, bytes: 10 }]))).toEqual(['P6'])
    expect(promises(history([], [], [{ at: 1_000, node: 'n1', bucket: 'tight', keys: 1, bytes: 1_001 }]))).toEqual(['P6'])
  })

  describe('P8: locks', () => {
    const locks: RunConfig = { ...config, lockSkewMs: 1_000 }
    const grant = (name: string, token: number, inv: number, comp: number, leaseMs: number, releasedAt?: number, node = 'n1'): Op =>
      op({ bucket: 'system.locks', node, kind: 'lock', key: name, inv, comp, res: 'ok', token: String(token), leaseEnd: comp + leaseMs, ...(releasedAt === undefined ? {} : { releasedAt }) })
    const lockHistory = (ops: Array<Op>, faults: Array<Fault> = []): History => ({ config: locks, ops, faults, samples: [] })
    const p8 = (h: History) => check(h).map((v) => `${v.promise}: ${v.message}`)

    it('a clean history passes: rising tokens, each hold after the previous one ended (released or lease passed)', () => {
      expect(p8(lockHistory([grant('l', 1, 0, 10, 500, 100), grant('l', 2, 150, 160, 500, undefined, 'n2'), grant('l', 3, 1_600, 1_700, 500, 1_750, 'n3'), grant('m', 1, 0, 5, 500)]))).toEqual([])
    })

    it('a token granted twice, a token going backwards, or overlapping holds are violations', () => {
      expect(p8(lockHistory([grant('l', 1, 0, 10, 500, 100), grant('l', 1, 200, 210, 500, undefined, 'n2')])).some((m) => m.includes('granted to #'))).toBe(true)
      expect(p8(lockHistory([grant('l', 5, 0, 10, 500, 100), grant('l', 4, 200, 210, 500, undefined, 'n2')])).some((m) => m.includes('yet got token'))).toBe(true)
      expect(p8(lockHistory([grant('l', 1, 0, 10, 500, 300), grant('l', 2, 200, 210, 500, undefined, 'n2')])).some((m) => m.includes('while #'))).toBe(true)
    })

    it("kills of the lock bucket's R owners (lockReplicas, not the cache's R) within the kill window excuse a token starting over (seed 322)", () => {
      const repeat = [grant('l', 1, 0, 10, 500, 100), grant('l', 1, 2_000, 2_010, 500, undefined, 'n2')]
      const twoKills: Array<Fault> = [
        { at: 1_000, kind: 'kill', nodes: ['n3'] },
        { at: 1_800, kind: 'kill', nodes: ['n1'] }
      ]
      // the cache's R is 3 here: two kills would not take a cache key, but they take a lock record (R = 2)
      const r3 = { ...locks, replicas: 3 }
      expect(p8({ ...lockHistory(repeat, twoKills), config: { ...r3, lockReplicas: 2 } })).toEqual([])
      expect(p8({ ...lockHistory(repeat, twoKills), config: { ...r3, lockReplicas: 3 } }).some((m) => m.includes('granted to #'))).toBe(true)
      // one kill does not
      expect(p8({ ...lockHistory(repeat, twoKills.slice(0, 1)), config: { ...r3, lockReplicas: 2 } }).some((m) => m.includes('granted to #'))).toBe(true)
    })

    it('a cut excuses every lock violation; a clock ahead by more than the allowance excuses only an overlap', () => {
      const overlap = [grant('l', 1, 0, 10, 500, 300), grant('l', 2, 200, 210, 500, undefined, 'n2')]
      const cut: Array<Fault> = [
        { at: 5, kind: 'partition', nodes: ['n1'], detail: '| n2' },
        { at: 100, kind: 'heal', nodes: [] }
      ]
      expect(p8(lockHistory(overlap, cut))).toEqual([])
      const skew: Array<Fault> = [{ at: 1, kind: 'skew', nodes: ['n2'], offsetMs: 5_000, detail: '+5000 ms' }]
      expect(p8(lockHistory(overlap, skew))).toEqual([])
      // the skew does not excuse a repeated token
      expect(p8(lockHistory([grant('l', 1, 0, 10, 500, 100), grant('l', 1, 200, 210, 500, undefined, 'n2')], skew)).some((m) => m.includes('granted to #'))).toBe(true)
      expect(p8(lockHistory(overlap)).some((m) => m.includes('while #'))).toBe(true)
      // the skewed node took it and released it: the next holder's overlap with the first is excused too
      const chain = [grant('l', 1, 0, 10, 500, 400), grant('l', 2, 100, 110, 500, 150, 'n2'), grant('l', 3, 200, 210, 500, undefined, 'n3')]
      expect(p8(lockHistory(chain, skew))).toEqual([])
      expect(p8(lockHistory(chain)).filter((m) => m.includes('while #'))).toHaveLength(2)
      // a clock step beyond the failure timeout cuts the node off for a moment: a repeated token is excused there
      const repeat = [grant('l', 1, 0, 10, 500, 100), grant('l', 1, 2_000, 2_010, 500, undefined, 'n2')]
      expect(p8(lockHistory(repeat)).some((m) => m.includes('granted to #'))).toBe(true)
      const step: Array<Fault> = [{ at: 1_990, kind: 'skew', nodes: ['n2'], offsetMs: 20_000, detail: '+20000 ms' }]
      expect(p8({ ...lockHistory(repeat, step), config: { ...locks, failureTimeoutMs: 1_000 } })).toEqual([])
      // equal grant times: the lower token is the earlier holder
      expect(p8(lockHistory([grant('l', 2, 5, 10, 500, undefined, 'n2'), grant('l', 1, 0, 10, 500, 300)])).some((m) => m.includes('#') && m.includes('(token 2) at 10 while'))).toBe(true)
    })
  })

  describe('P7: counters', () => {
    const counters: RunConfig = { ...config, buckets: [...config.buckets, { name: 'counters', ttlMs: 3_600_000, maxSize: 100, maxBytes: 0, strict: false, counters: true }] }
    const incr = (key: string, delta: number, inv: number, comp: number | undefined, count?: number, node = 'n1'): Op =>
      op({
        bucket: 'counters',
        node,
        kind: 'incr',
        key,
        delta,
        inv,
        ...(comp === undefined ? { res: 'lost' as const } : count === undefined ? { comp, res: 'error' as const, err: 'Timeout' } : { comp, res: 'ok' as const, count })
      })
    const final = (key: string, count: number, inv: number, node = 'n2'): Op =>
      op({ bucket: 'counters', node, kind: 'get', key, inv, comp: inv + 1, res: count === 0 ? 'miss' : 'hit', got: 'x', count, final: true })
    const counterHistory = (ops: Array<Op>, faults: Array<Fault> = []): History => ({ config: counters, ops, faults, samples: [] })
    const p7 = (h: History) => check(h).map((v) => `${v.promise}: ${v.message}`)

    it('a clean history passes: acknowledged increments all counted, a failed one counted or not, counts rising in real-time order', () => {
      const ops = [incr('c', 1, 10, 20, 1), incr('c', 2, 30, 40, 3), incr('c', 3, 50, 60), incr('c', 1, 70, 80, 4, 'n2'), incr('c', 1, 75, 85, 5, 'n3')]
      expect(p7(counterHistory([...ops, final('c', 5, 1_000)]))).toEqual([])
      // the failed increment (delta 3) took effect after all
      expect(p7(counterHistory([...ops.slice(0, 3), incr('c', 1, 70, 80, 7, 'n2'), incr('c', 1, 75, 85, 8, 'n3'), final('c', 8, 1_000)]))).toEqual([])
    })

    it('an acknowledged increment lost, or one applied twice, is a violation', () => {
      const ops = [incr('c', 1, 10, 20, 1), incr('c', 2, 30, 40, 3)]
      expect(p7(counterHistory([...ops, final('c', 1, 1_000)]))).toHaveLength(1)
      expect(p7(counterHistory([...ops, final('c', 4, 1_000)]))).toHaveLength(1)
      // a kill of R nodes at once excuses a loss, never a double
      const kills: Array<Fault> = [
        { at: 500, kind: 'kill', nodes: ['n1'] },
        { at: 600, kind: 'kill', nodes: ['n2'] }
      ]
      expect(p7(counterHistory([...ops, final('c', 1, 1_000)], kills))).toEqual([])
      expect(p7(counterHistory([...ops, final('c', 4, 1_000)], kills))).toHaveLength(1)
    })

    it('an increment acknowledged within settleMs after its node\'s clock stepped past the failure timeout may be lost (the node acted alone); one acknowledged later may not', () => {
      const withTimeout = (ops: Array<Op>, faults: Array<Fault>): History => ({ ...counterHistory(ops, faults), config: { ...counters, failureTimeoutMs: 1_000 } })
      const step: Fault = { at: 2_000, kind: 'skew', nodes: ['n1'], detail: '+131529 ms', offsetMs: 131_529 }
      expect(p7(withTimeout([incr('c', 1, 10, 20, 1), incr('c', 2, 2_100, 2_110, 3), final('c', 1, 9_000)], [step]))).toEqual([])
      expect(p7(withTimeout([incr('c', 1, 10, 20, 1), incr('c', 2, 3_100, 3_110, 3), final('c', 1, 9_000)], [step]))).toHaveLength(1)
      expect(p7(withTimeout([incr('c', 1, 10, 20, 1), incr('c', 2, 2_100, 2_110, 3), final('c', 1, 9_000)], [{ ...step, offsetMs: 500 }]))).toHaveLength(1)
    })

    it('an increment that began after another was acknowledged answering a count not above it, or two answering the same count, is a violation', () => {
      expect(p7(counterHistory([incr('c', 1, 10, 20, 2), incr('c', 1, 30, 40, 1, 'n2'), final('c', 2, 1_000)])).some((m) => m.includes('began after'))).toBe(true)
      expect(p7(counterHistory([incr('c', 1, 10, 20, 1), incr('c', 1, 12, 22, 1, 'n2'), final('c', 2, 1_000)])).some((m) => m.includes('both answered'))).toBe(true)
      // across a partition each side has a primary: not held there
      const cut: Array<Fault> = [
        { at: 5, kind: 'partition', nodes: ['n1'], detail: '| n2' },
        { at: 100, kind: 'heal', nodes: [] }
      ]
      expect(p7(counterHistory([incr('c', 1, 10, 20, 1), incr('c', 1, 12, 22, 1, 'n2'), final('c', 1, 10_000)], cut))).toEqual([])
    })
  })
})

describe('checker: near cache (P9)', () => {
  const nearConfig: RunConfig = { ...config, buckets: [{ name: 'main', ttlMs: 3_600_000, maxSize: 100, maxBytes: 0, strict: true, near: { maxSize: 10, ttlMs: 1_000, trackedKeys: 10 } }] }
  const nearHistory = (ops: Array<Op>, faults: Array<Fault> = []): History => ({ config: nearConfig, ops, faults, samples: [] })
  const nearPromises = (h: History) => check(h).map((v) => v.promise)

  it('a near read may be as old as the near ttl (plus staleMs), not older', () => {
    // A2 completed at 1,020; a read at 1,500 may still see A1 (within staleMs + ttl = 1,100)
    expect(nearPromises(nearHistory([put('a', 'A1', 10, 20), put('a', 'A2', 1_000, 1_020), hit('a', 'A1', 1_500)]))).toEqual([])
    // the same read without a near cache breaks P2
    expect(promises(history([put('a', 'A1', 10, 20), put('a', 'A2', 1_000, 1_020), hit('a', 'A1', 1_500)]))).toEqual(['P2'])
    // at 2,200 the copy would be older than the window
    expect(nearPromises(nearHistory([put('a', 'A1', 10, 20), put('a', 'A2', 1_000, 1_020), hit('a', 'A1', 2_200)]))).toEqual(['P2'])
  })

  it("a near read is never older than the node's own last acknowledged write", () => {
    // n2 wrote A2 (acknowledged at 1,020), then read A1 at 1,100: within the ttl window, but older than its own write
    const v = check(nearHistory([put('a', 'A1', 10, 20), put('a', 'A2', 1_000, 1_020, 'n2'), hit('a', 'A1', 1_100, 'n2')]))
    expect(v.map((x) => x.promise)).toEqual(['P9'])
    expect(v[0]!.message).toMatch(/older than put #\d+ that n2 wrote/)
    // a miss after its own put, and a value after its own delete, too
    expect(nearPromises(nearHistory([put('a', 'A1', 1_000, 1_020, 'n2'), miss('a', 1_100, 'n2')]))).toEqual(['P9'])
    expect(nearPromises(nearHistory([put('a', 'A1', 10, 20), del('a', 1_000, 1_020, 'n2'), hit('a', 'A1', 1_100, 'n2')]))).toEqual(['P9'])
    // another node may still read the older value within the window; a write concurrent with n2's may win
    expect(nearPromises(nearHistory([put('a', 'A1', 10, 20), put('a', 'A2', 1_000, 1_020, 'n2'), hit('a', 'A1', 1_100, 'n3')]))).toEqual([])
    expect(nearPromises(nearHistory([put('a', 'A2', 1_000, 1_020, 'n2'), put('a', 'A3', 1_010, 1_030, 'n3'), hit('a', 'A3', 1_100, 'n2')]))).toEqual([])
    // a clock jump on the way (seed 21: n2 jumped 5 minutes ahead, dropped its peers and read alone) excuses it
    const skew: Fault = { at: 1_050, kind: 'skew', nodes: ['n2'], offsetMs: 292_836 }
    expect(nearPromises(nearHistory([put('a', 'A1', 1_000, 1_020, 'n2'), miss('a', 1_100, 'n2')], [skew]))).toEqual([])
    expect(nearPromises(nearHistory([put('a', 'A1', 1_000, 1_020, 'n2'), miss('a', 5_000, 'n2')], [skew]))).toEqual(['P9', 'P1'])
  })

  it('near reads are checked only when no disturbance fell within settleMs + the near ttl before them', () => {
    const ops = [put('a', 'A1', 10, 20), put('a', 'A2', 100, 120), hit('a', 'A1', 3_000)]
    // a kill at 1,500: the read at 3,000 is 1,500 after it, within settleMs + ttl = 2,000
    expect(nearPromises(nearHistory(ops, [{ at: 1_500, kind: 'kill', nodes: ['n3'] }]))).toEqual([])
    expect(nearPromises(nearHistory(ops, [{ at: 500, kind: 'kill', nodes: ['n3'] }]))).toEqual(['P2'])
  })
})
