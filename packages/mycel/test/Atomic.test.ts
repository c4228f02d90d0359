import { describe, expect, it } from '@effect/vitest'
import { CacheMessage } from '@mycorrizal/wire'
import fc from 'fast-check'
import { recordRetainMs } from '../src/internal/atomic.js'
import { OpLog } from '../src/internal/oplog.js'
import { Placement } from '../src/internal/placement.js'
import { bytes, Net, text } from './harness.js'

const owners = (nodes: ReadonlyArray<string>, bucket: string, key: string, replicas = 2) => {
  const p = new Placement()
  p.setNodes(nodes)
  return p.owners(bucket, key, replicas)
}

const cluster = (ids: ReadonlyArray<string>, defaults = {}) => {
  const net = new Net(defaults)
  for (const id of ids) net.add(id)
  net.members(ids)
  net.createBucket('c')
  net.advance(11_000) // ready, past the rebalance window
  return net
}

describe('atomic operations (engine)', () => {
  it('increment counts from every node at the primary, stored as decimal text that get reads', () => {
    const net = cluster(['a', 'b', 'c'])
    const ops: Array<number> = []
    for (let i = 0; i < 30; i++) ops.push(net.increment(['a', 'b', 'c'][i % 3]!, 'c', 'hits'))
    const results = ops.map((op) => net.atomic(op) as number)
    expect([...results].sort((x, y) => x - y)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1))
    for (const n of ['a', 'b', 'c']) expect(text(net.must(net.get(n, 'c', 'hits')))).toBe('30')
    expect(net.atomic(net.increment('b', 'c', 'hits', -40))).toBe(-10)
    // on both owners, with the same version
    const [p, r] = owners(['a', 'b', 'c'], 'c', 'hits')
    expect(net.held(p!, 'c', 'hits')!.version).toEqual(net.held(r!, 'c', 'hits')!.version)
    expect(net.node(p!).stats('c')!.atomics).toBe(31)
  })

  it('typed errors: a value that is not an integer, a result beyond the safe integers, a delta that is not an integer', () => {
    const net = cluster(['a', 'b', 'c'])
    net.must(net.put('a', 'c', 'name', bytes('alice')))
    const notInt = net.await(net.increment('b', 'c', 'name'))
    expect(!notInt.ok && notInt.error.reason).toBe('NotInteger')
    net.must(net.put('a', 'c', 'big', bytes(String(Number.MAX_SAFE_INTEGER))))
    const over = net.await(net.increment('c', 'c', 'big'))
    expect(!over.ok && over.error.reason).toBe('Overflow')
    const frac = net.await(net.increment('c', 'c', 'x', 1.5))
    expect(!frac.ok && frac.error.reason).toBe('NotInteger')
    for (const bad of ['01', '+1', ' 1', '1e3', '']) {
      net.must(net.put('a', 'c', 'odd', bytes(bad)))
      const r = net.await(net.increment('b', 'c', 'odd'))
      expect(!r.ok && r.error.reason).toBe('NotInteger')
    }
    net.must(net.put('a', 'c', 'neg', bytes('-7')))
    expect(net.atomic(net.increment('b', 'c', 'neg', 2))).toBe(-5)
  })

  it('putIfAbsent and compareAndSet', () => {
    const net = cluster(['a', 'b', 'c'])
    expect(net.atomic(net.putIfAbsent('a', 'c', 'k', bytes('1')))).toBe(true)
    expect(net.atomic(net.putIfAbsent('b', 'c', 'k', bytes('2')))).toBe(false)
    expect(text(net.must(net.get('c', 'c', 'k')))).toBe('1')
    expect(net.atomic(net.compareAndSet('c', 'c', 'k', bytes('2'), bytes('3')))).toBe(false)
    expect(net.atomic(net.compareAndSet('c', 'c', 'k', bytes('1'), bytes('3')))).toBe(true)
    expect(net.atomic(net.compareAndSet('a', 'c', 'k', undefined, bytes('4')))).toBe(false)
    net.must(net.del('b', 'c', 'k'))
    expect(net.atomic(net.compareAndSet('a', 'c', 'k', undefined, bytes('5')))).toBe(true)
    expect(text(net.must(net.get('b', 'c', 'k')))).toBe('5')
    net.must(net.del('b', 'c', 'k'))
    expect(net.atomic(net.putIfAbsent('c', 'c', 'k', bytes('6')))).toBe(true)
  })

  it('the primary fails after it replicated increments whose answers were lost: the retries get the recorded results, none is applied twice', () => {
    for (const withRecords of [true, false]) {
      const net = cluster(['a', 'b', 'c'])
      const [p, r] = owners(['a', 'b', 'c'], 'c', 'n')
      const caller = ['a', 'b', 'c'].find((n) => n !== p && n !== r)!
      expect(net.atomic(net.increment(caller, 'c', 'n'))).toBe(1)
      // the primary applies and replicates, but its answers never reach the caller
      net.drop = ({ from, message }) => (from === p && message._tag === 'AtomicResponse') || (!withRecords && message._tag === 'AtomicOps')
      const ops = [net.increment(caller, 'c', 'n'), net.increment(caller, 'c', 'n'), net.increment(caller, 'c', 'n')]
      net.run()
      expect(text(net.held(r!, 'c', 'n')?.value)).toBe('4')
      // the primary fails: the caller asks the next owner with the same operation ids
      net.drop = () => false
      net.members(['a', 'b', 'c'].filter((n) => n !== p))
      const results = ops.map((op) => net.atomic(op))
      if (withRecords) {
        expect(results).toEqual([2, 3, 4])
        expect(text(net.must(net.get(caller, 'c', 'n')))).toBe('4')
        expect(net.node(r!).stats('c')!.atomicReplays).toBe(3)
        expect(net.atomic(net.increment(caller, 'c', 'n'))).toBe(5)
      } else {
        // what the records prevent: each retry applied again
        expect(results).toEqual([5, 6, 7])
      }
    }
  })

  it('a failed-over key continues from the last acknowledged value; the answer waits for the next owner', () => {
    const net = cluster(['a', 'b', 'c'])
    const [p, r] = owners(['a', 'b', 'c'], 'c', 'm')
    const caller = ['a', 'b', 'c'].find((n) => n !== p && n !== r)!
    for (let i = 1; i <= 10; i++) expect(net.atomic(net.increment(caller, 'c', 'm'))).toBe(i)
    // while the replica does not acknowledge, the caller gets no answer
    net.hold = ({ from, message }) => from === r && message._tag === 'Ack'
    const op = net.increment(caller, 'c', 'm')
    net.run()
    expect(net.results.has(op)).toBe(false)
    net.hold = undefined
    net.run()
    expect(net.atomic(op)).toBe(11)
    net.members(['a', 'b', 'c'].filter((n) => n !== p))
    expect(net.atomic(net.increment(caller, 'c', 'm'))).toBe(12)
    expect(net.atomic(net.increment(r!, 'c', 'm'))).toBe(13)
  })

  it('a node that just became the primary fetches the key from the other owners before applying', () => {
    const net = cluster(['a', 'b', 'c'])
    // a key that d, joining, will be the primary of, with the old primary still an owner
    const key = Array.from({ length: 10_000 }, (_, i) => `q${i}`).find((k) => {
      const before = owners(['a', 'b', 'c'], 'c', k)
      const after = owners(['a', 'b', 'c', 'd'], 'c', k)
      return after[0] === 'd' && after.includes(before[0]!)
    })!
    for (let i = 1; i <= 5; i++) net.atomic(net.increment('a', 'c', key))
    // d joins; no handoff reaches it before the next increment
    net.add('d')
    net.createBucket('c', {}, ['d'])
    net.drop = ({ message }) => message._tag === 'HandoffBatch'
    net.members(['a', 'b', 'c', 'd'])
    expect(net.atomic(net.increment('b', 'c', key))).toBe(6)
    net.drop = () => false
    expect(net.atomic(net.increment('d', 'c', key))).toBe(7)
  })

  it('putIfAbsent from two nodes at once: exactly one stores', () => {
    const net = cluster(['a', 'b', 'c'])
    for (let i = 0; i < 20; i++) {
      const x = net.putIfAbsent('a', 'c', `once${i}`, bytes('a'))
      const y = net.putIfAbsent('b', 'c', `once${i}`, bytes('b'))
      const answers = [net.atomic(x), net.atomic(y)]
      expect(answers.filter((v) => v === true)).toHaveLength(1)
      expect(text(net.must(net.get('c', 'c', `once${i}`)))).toBe(answers[0] === true ? 'a' : 'b')
    }
  })

  it('an answer that changes nothing waits until the operations applied before it are acknowledged', () => {
    const net = cluster(['a', 'b', 'c'])
    const [p, r] = owners(['a', 'b', 'c'], 'c', 'lock')
    net.hold = ({ from, message }) => from === r && message._tag === 'Ack'
    const first = net.putIfAbsent(p!, 'c', 'lock', bytes('1'))
    const second = net.putIfAbsent(p!, 'c', 'lock', bytes('2'))
    net.run()
    expect(net.results.has(first) || net.results.has(second)).toBe(false)
    net.hold = undefined
    net.run()
    expect([net.atomic(first), net.atomic(second)]).toEqual([true, false])
  })

  it('the wire: an Atomic asks the primary, an AtomicOps goes ahead of every replica Put', () => {
    const net = cluster(['a', 'b', 'c'])
    const [p, r] = owners(['a', 'b', 'c'], 'c', 'w')
    const caller = ['a', 'b', 'c'].find((n) => n !== p && n !== r)!
    const seen: Array<string> = []
    net.drop = ({ from, to, message }) => {
      seen.push(`${from}>${to}:${message._tag}`)
      return false
    }
    expect(net.atomic(net.increment(caller, 'c', 'w'))).toBe(1)
    expect(seen).toEqual([`${caller}>${p}:Atomic`, `${p}>${r}:AtomicOps`, `${p}>${r}:Put`, `${r}>${p}:Ack`, `${p}>${caller}:AtomicResponse`])
  })

  it('a caller that is the owner the primary waits for answers itself once it stores the Put: no AtomicResponse', () => {
    const net = cluster(['a', 'b', 'c'])
    const [p, r] = owners(['a', 'b', 'c'], 'c', 'w')
    const seen: Array<string> = []
    const finals: Array<boolean | undefined> = []
    net.drop = ({ from, to, message }) => {
      seen.push(`${from}>${to}:${message._tag}`)
      if (message._tag === 'AtomicOps') finals.push(message.final)
      return false
    }
    expect(net.atomic(net.increment(r!, 'c', 'w', 5))).toBe(5)
    expect(net.atomic(net.compareAndSet(r!, 'c', 'w', bytes('5'), bytes('6')))).toBe(true)
    const x = Array.from({ length: 100 }, (_, i) => `x${i}`).find((k) => owners(['a', 'b', 'c'], 'c', k).join() === [p, r].join())!
    expect(net.atomic(net.putIfAbsent(r!, 'c', x, bytes('1')))).toBe(true)
    const one = [`${r}>${p}:Atomic`, `${p}>${r}:AtomicOps`, `${p}>${r}:Put`, `${r}>${p}:Ack`]
    expect(seen).toEqual([...one, ...one, ...one])
    expect(finals).toEqual([true, true, true])
    // an answer that changes nothing still comes from the primary
    seen.length = 0
    expect(net.atomic(net.compareAndSet(r!, 'c', 'w', bytes('5'), bytes('7')))).toBe(false)
    expect(seen).toEqual([`${r}>${p}:Atomic`, `${p}>${r}:AtomicResponse`])
    for (const n of [p!, r!]) expect(text(net.held(n, 'c', 'w')?.value)).toBe('6')
  })

  it('answered by its replication: the primary fails before the Ack reaches it, the caller goes on from its answer and no increment is applied twice', () => {
    const net = cluster(['a', 'b', 'c'])
    const [p, r] = owners(['a', 'b', 'c'], 'c', 'f')
    for (let i = 1; i <= 3; i++) expect(net.atomic(net.increment(r!, 'c', 'f'))).toBe(i)
    // the caller's acknowledgements never reach the primary: the caller has its answers all the same
    net.drop = ({ from, message }) => from === r && message._tag === 'Ack'
    const ops = [net.increment(r!, 'c', 'f'), net.increment(r!, 'c', 'f')]
    net.run()
    expect(ops.map((op) => net.atomic(op))).toEqual([4, 5])
    net.drop = () => false
    // the primary fails: the caller is now an owner of the survivors and continues from its answers
    net.members(['a', 'b', 'c'].filter((n) => n !== p))
    expect(net.atomic(net.increment(r!, 'c', 'f'))).toBe(6)
    const third = ['a', 'b', 'c'].find((n) => n !== p && n !== r)!
    expect(net.atomic(net.increment(third, 'c', 'f'))).toBe(7)
    expect(text(net.must(net.get(third, 'c', 'f')))).toBe('7')
  })

  it('a final Put the caller holds a newer version of is no answer: the AtomicResponse answers', () => {
    const net = cluster(['a', 'b', 'c'])
    const [p, r] = owners(['a', 'b', 'c'], 'c', 'o')
    expect(net.atomic(net.increment(r!, 'c', 'o'))).toBe(1)
    const seen: Array<string> = []
    net.drop = ({ from, to, message }) => {
      seen.push(`${from}>${to}:${message._tag}`)
      // a newer version reaches the caller (the replica) ahead of the primary's replication
      if (message._tag === 'Put' && to === r && text(message.value) === '2') net.node(r!).buckets.get('c')!.store.put('o', bytes('99'), { ts: message.ts + 1, node: 'zz' }, undefined)
      return false
    }
    const op = net.increment(r!, 'c', 'o')
    net.run()
    // the caller answered AckOlder, so it did not answer itself; the primary's answer came
    expect(seen).toContain(`${r}>${p}:AckOlder`)
    expect(seen.at(-1)).toBe(`${p}>${r}:AtomicResponse`)
    // the primary's view: an owner holds a version it has not seen, the outcome is unknown
    const outcome = net.await(op)
    expect(!outcome.ok && outcome.error.reason).toBe('Conflict')
  })

  it('with writeConcern all and three owners no owner answers itself: the primary answers once every one acknowledged', () => {
    const net = new Net({})
    for (const id of ['a', 'b', 'c']) net.add(id)
    net.members(['a', 'b', 'c'])
    net.createBucket('all3', { replicas: 3, writeConcern: 'all' })
    net.advance(11_000)
    const [p, r, s] = owners(['a', 'b', 'c'], 'all3', 'k', 3)
    const finals: Array<boolean | undefined> = []
    net.drop = ({ message }) => {
      if (message._tag === 'AtomicOps') finals.push(message.final)
      return false
    }
    // the last owner's acknowledgement held back: the caller, an owner that stored, has no answer yet
    net.hold = ({ from, message }) => from === s && message._tag === 'Ack'
    const op = net.increment(r!, 'all3', 'k')
    net.run()
    expect(net.results.has(op)).toBe(false)
    net.hold = undefined
    expect(net.atomic(op)).toBe(1)
    expect(finals).toEqual([false, false])
    expect(p).not.toBe(r)
  })

  it('the operations applied to a key before the outputs are read replicate as one AtomicOps and one Put of the last value', () => {
    const net = cluster(['a', 'b', 'c'])
    const [p, r] = owners(['a', 'b', 'c'], 'c', 'hot')
    const seen: Array<string> = []
    let records = 0
    net.drop = ({ from, to, message }) => {
      seen.push(`${from}>${to}:${message._tag}`)
      if (message._tag === 'AtomicOps') records += message.ops.length
      return false
    }
    const engine = net.node(p!)
    const increment = (op: number, delta: number) =>
      engine.atomic(op, 'c', { op: CacheMessage.AtomicOp.Increment, key: 'hot', expected: undefined, value: new Uint8Array(0), delta, ttlMs: undefined }, net.clock(p!))
    // in one go, as the shell runs a batch of inputs before it reads the outputs: increments of
    // another sign go apart, a compareAndSet after them, then two increments that go as one
    increment(9001, 2)
    increment(9002, -1)
    engine.atomic(9003, 'c', { op: CacheMessage.AtomicOp.CompareAndSet, key: 'hot', expected: bytes('1'), value: bytes('10'), delta: 0, ttlMs: undefined }, net.clock(p!))
    increment(9004, 5)
    increment(9005, 5)
    net.run()
    expect([9001, 9002, 9003, 9004, 9005].map((op) => net.atomic(op))).toEqual([2, 1, true, 15, 20])
    expect(seen).toEqual([`${p}>${r}:AtomicOps`, `${p}>${r}:Put`, `${r}>${p}:Ack`])
    expect(records).toBe(4)
    expect(text(net.held(r!, 'c', 'hot')?.value)).toBe('20')
    // the replica knows every operation's record: a retry of any of them after a failover is not applied again
    expect(net.node(r!).buckets.get('c')!.records.size).toBe(4)
    expect(engine.stats('c')!.incrementsGathered).toBe(2)
  })

  it('increments of a key started in one turn go to its primary as one operation; each answers the count after its own delta', () => {
    const net = cluster(['a', 'b', 'c'])
    const [p, r] = owners(['a', 'b', 'c'], 'c', 'many')
    const caller = ['a', 'b', 'c'].find((n) => n !== p && n !== r)!
    const requests: Array<number> = []
    net.drop = ({ message }) => {
      if (message._tag === 'Atomic') requests.push(message.delta)
      return false
    }
    const engine = net.node(caller)
    const deltas = [1, 2, 3, 4]
    deltas.forEach((delta, i) => engine.atomic(9201 + i, 'c', { op: CacheMessage.AtomicOp.Increment, key: 'many', expected: undefined, value: new Uint8Array(0), delta, ttlMs: undefined }, net.clock(caller)))
    net.run()
    expect(deltas.map((_, i) => net.atomic(9201 + i))).toEqual([1, 3, 6, 10])
    expect(requests).toEqual([10])
    expect(net.node(p!).buckets.get('c')!.records.size).toBe(1)
    expect(engine.stats('c')!.incrementsGathered).toBe(4)
    // a get started after them in the same turn reads them
    net.increment(caller, 'c', 'many', 1)
    const get = net.get(caller, 'c', 'many')
    expect(text(net.must(get))).toBe('11')
  })

  it('the owner a primary answers through (R = 2) answers gathered increments itself, once their value is stored', () => {
    const net = cluster(['a', 'b'])
    const [p, r] = owners(['a', 'b'], 'c', 'pair')
    const tags: Array<string> = []
    net.drop = ({ from, message }) => {
      tags.push(`${from === p ? 'p' : 'r'}:${message._tag}`)
      return false
    }
    const engine = net.node(r!)
    for (let i = 0; i < 3; i++) engine.atomic(9301 + i, 'c', { op: CacheMessage.AtomicOp.Increment, key: 'pair', expected: undefined, value: new Uint8Array(0), delta: 7, ttlMs: undefined }, net.clock(r!))
    net.run()
    expect([9301, 9302, 9303].map((op) => net.atomic(op))).toEqual([7, 14, 21])
    expect(tags).toEqual(['r:Atomic', 'p:AtomicOps', 'p:Put', 'r:Ack'])
  })

  it('gathered increments whose sum leaves the safe integers go again one by one: those that fit are applied', () => {
    const net = cluster(['a', 'b', 'c'])
    const [p] = owners(['a', 'b', 'c'], 'c', 'edge')
    net.must(net.put(p!, 'c', 'edge', bytes(String(Number.MAX_SAFE_INTEGER - 3))))
    const engine = net.node(p!)
    for (let i = 0; i < 3; i++) engine.atomic(9401 + i, 'c', { op: CacheMessage.AtomicOp.Increment, key: 'edge', expected: undefined, value: new Uint8Array(0), delta: 2, ttlMs: undefined }, net.clock(p!))
    net.run()
    expect(net.atomic(9401)).toBe(Number.MAX_SAFE_INTEGER - 1)
    for (const op of [9402, 9403]) {
      const r = net.await(op)
      expect(r.ok ? 'ok' : r.error.reason).toBe('Overflow')
    }
    expect(text(net.held(p!, 'c', 'edge')?.value)).toBe(String(Number.MAX_SAFE_INTEGER - 1))
  })

  it('gathered increments fail together, and a retry after their primary failed is applied once', () => {
    const net = cluster(['a', 'b', 'c'])
    const [p, r] = owners(['a', 'b', 'c'], 'c', 'retry')
    const caller = ['a', 'b', 'c'].find((n) => n !== p && n !== r)!
    // the primary applies and replicates them; its answer is lost, and it fails
    net.drop = ({ from, to, message }) => from === p && to === caller && message._tag === 'AtomicResponse'
    const engine = net.node(caller)
    for (let i = 0; i < 3; i++) engine.atomic(9501 + i, 'c', { op: CacheMessage.AtomicOp.Increment, key: 'retry', expected: undefined, value: new Uint8Array(0), delta: 1, ttlMs: undefined }, net.clock(caller))
    net.run()
    expect(text(net.held(r!, 'c', 'retry')?.value)).toBe('3')
    net.drop = () => false
    net.members(['a', 'b', 'c'].filter((n) => n !== p))
    // asked again with the same id at the new primary: the recorded count, not three more
    expect([9501, 9502, 9503].map((op) => net.atomic(op))).toEqual([1, 2, 3])
    expect(text(net.must(net.get(caller, 'c', 'retry')))).toBe('3')
    // with no primary that answers, each of them fails with the same error
    net.drop = ({ message }) => message._tag === 'Atomic'
    for (let i = 0; i < 2; i++) engine.atomic(9601 + i, 'c', { op: CacheMessage.AtomicOp.Increment, key: 'retry', expected: undefined, value: new Uint8Array(0), delta: 1, ttlMs: undefined }, net.clock(caller))
    net.run()
    const failed = [9601, 9602].map((op) => net.await(op, 30_000))
    expect(failed.map((f) => (f.ok ? 'ok' : f.error.reason))).toEqual(['Timeout', 'Timeout'])
  })

  it('no answer of a gathered operation before its replication is acknowledged', () => {
    const net = cluster(['a', 'b', 'c'])
    const [p, r] = owners(['a', 'b', 'c'], 'c', 'held')
    net.hold = ({ from, message }) => from === r && message._tag === 'Ack'
    const engine = net.node(p!)
    for (const op of [9101, 9102, 9103]) engine.atomic(op, 'c', { op: CacheMessage.AtomicOp.Increment, key: 'held', expected: undefined, value: new Uint8Array(0), delta: 1, ttlMs: undefined }, net.clock(p!))
    // a putIfAbsent that changes nothing waits for them too
    engine.atomic(9104, 'c', { op: CacheMessage.AtomicOp.PutIfAbsent, key: 'held', expected: undefined, value: bytes('x'), delta: 0, ttlMs: undefined }, net.clock(p!))
    net.run()
    for (const op of [9101, 9102, 9103, 9104]) expect(net.results.has(op)).toBe(false)
    net.hold = undefined
    net.run()
    expect([9101, 9102, 9103, 9104].map((op) => net.atomic(op))).toEqual([1, 2, 3, false])
  })

  it('a retry is recognised after thousands of later operations on the key (a burst), while its caller may still retry', () => {
    const net = cluster(['a', 'b', 'c'])
    const [p, r] = owners(['a', 'b', 'c'], 'c', 'burst')
    const caller = ['a', 'b', 'c'].find((n) => n !== p && n !== r)!
    net.drop = ({ from, to, message }) => from === p && to === caller && message._tag === 'AtomicResponse'
    const first = net.increment(caller, 'c', 'burst')
    net.drop = () => false
    for (let i = 0; i < 40; i++) {
      const ops = Array.from({ length: 100 }, () => net.increment(r!, 'c', 'burst'))
      for (const op of ops) net.atomic(op)
    }
    net.members(['a', 'b', 'c'].filter((n) => n !== p))
    expect(net.atomic(first)).toBe(1)
    expect(text(net.must(net.get(caller, 'c', 'burst')))).toBe('4001')
  })

  it('records are bounded: kept for their retention, and past the bucket limit the least recently used key goes first', () => {
    let now = 0
    const log = new OpLog(1_000, () => now, 5)
    log.add('k', { origin: 'a', seq: 1, result: 1 })
    now = 500
    log.add('k', { origin: 'a', seq: 2, result: 2 })
    now = 1_200
    log.add('k', { origin: 'a', seq: 3, result: 3 })
    expect(log.find('k', 'a', 1)).toBeUndefined()
    expect(log.find('k', 'a', 2)?.result).toBe(2)
    expect(log.list('k')?.map((x) => x.seq)).toEqual([2, 3])
    for (let i = 0; i < 3; i++) log.add(`other${i}`, { origin: 'b', seq: i, result: 0 })
    log.add('k', { origin: 'a', seq: 4, result: 4 })
    expect(log.size).toBe(5)
    expect(log.find('other0', 'b', 0)).toBeUndefined()
    expect(log.find('k', 'a', 4)?.result).toBe(4)
    for (let i = 5; i < 12; i++) log.add('k', { origin: 'a', seq: i, result: i })
    expect(log.size).toBe(5)
    expect(log.list('k')?.map((x) => x.seq)).toEqual([7, 8, 9, 10, 11])
  })

  it('a clock that steps forward by minutes does not expire the records a retry still needs (npm run sim -- --seed 2 --ops 2000 --gap 2 --faults skew,delay: an increment applied twice)', () => {
    let now = 0
    const retainMs = recordRetainMs(2_000)
    const log = new OpLog(retainMs, () => now)
    log.add('k', { origin: 'a', seq: 1, result: 1 })
    now = 200
    log.add('k', { origin: 'a', seq: 2, result: 2 })
    // the clock steps by two minutes; a retry of seq 1 comes right after
    now = 200 + 131_529
    log.add('k', { origin: 'b', seq: 1, result: 3 })
    expect(log.find('k', 'a', 1)?.result).toBe(1)
    expect(log.list('k')?.map((r) => `${r.origin}${r.seq}`)).toEqual(['a1', 'a2', 'b1'])
    // time that passes after the step still expires them
    for (let t = 1; now < 131_729 + retainMs; t++) {
      now += 100
      log.add('k', { origin: 'c', seq: t, result: 0 })
    }
    expect(log.find('k', 'a', 1)).toBeUndefined()
    expect(log.find('k', 'b', 1)).toBeUndefined()
  })

  it('records of two origins with the same seq are told apart, expire and are evicted one by one', () => {
    let now = 0
    const log = new OpLog(1_000, () => now, 4)
    log.add('k', { origin: 'a', seq: 7, result: 1 })
    now = 600
    log.add('k', { origin: 'b', seq: 7, result: 2 })
    log.add('k', { origin: 'b', seq: 7, result: 2 })
    expect(log.size).toBe(2)
    expect([log.find('k', 'a', 7)?.result, log.find('k', 'b', 7)?.result, log.find('k', 'c', 7)]).toEqual([1, 2, undefined])
    // a's record expires, b's (learned later) stays
    now = 1_200
    log.add('k', { origin: 'a', seq: 8, result: 3 })
    expect([log.find('k', 'a', 7), log.find('k', 'b', 7)?.result, log.size]).toEqual([undefined, 2, 2])
    expect(log.list('k')?.map((r) => `${r.origin}${r.seq}`)).toEqual(['b7', 'a8'])
    // past the limit the key's oldest go first, the same-seq one included
    log.add('k', { origin: 'c', seq: 8, result: 4 })
    log.add('k', { origin: 'a', seq: 9, result: 5 })
    log.add('k', { origin: 'a', seq: 10, result: 6 })
    expect(log.size).toBe(4)
    expect(log.find('k', 'b', 7)).toBeUndefined()
    expect(log.list('k')?.map((r) => `${r.origin}${r.seq}`)).toEqual(['a8', 'c8', 'a9', 'a10'])
    log.add('k', { origin: 'a', seq: 11, result: 7 })
    expect(log.list('k')?.map((r) => `${r.origin}${r.seq}`)).toEqual(['c8', 'a9', 'a10', 'a11'])
  })

  it('records expiring by the thousand are dropped from the front, and the ones kept are still found', () => {
    let now = 0
    const log = new OpLog(1_000, () => now)
    // 10 records a ms from two origins for 5 s: everything older than 1 s goes as new ones come
    for (let t = 0; t < 5_000; t++) {
      now = t
      for (let i = 0; i < 5; i++) log.add('k', { origin: 'a', seq: t * 10 + i, result: t })
      for (let i = 0; i < 5; i++) log.add('k', { origin: 'b', seq: t * 10 + i, result: -t })
    }
    expect(log.size).toBeLessThanOrEqual(10 * 1_001)
    expect(log.size).toBeGreaterThanOrEqual(10 * 1_000)
    expect(log.find('k', 'a', 49_994)?.result).toBe(4_999)
    expect(log.find('k', 'b', 40_000)?.result).toBe(-4_000)
    expect(log.find('k', 'a', 39_990)).toBeUndefined()
    expect(log.find('k', 'a', 49_995)).toBeUndefined()
    expect(log.list('k')).toHaveLength(10 * 1_000)
    // a retried record learned out of order, below others of its origin, is found in its place
    log.add('k', { origin: 'a', seq: 45_000.5, result: 7 })
    expect([log.find('k', 'a', 45_000.5)?.result, log.find('k', 'a', 45_000)?.result, log.find('k', 'a', 45_001)?.result]).toEqual([7, 4_500, 4_500])
  })

  it('keys whose records expired keep no more slots than records, however many they had', () => {
    let now = 0
    const log = new OpLog(1_000, () => now)
    for (let k = 0; k < 200; k++) for (let i = 0; i < 1_000; i++) log.add(`k${k}`, { origin: 'a', seq: i, result: i })
    // long after: one more on each key sweeps what expired
    now = 5_000
    for (let k = 0; k < 200; k++) log.add(`k${k}`, { origin: 'a', seq: 5_000, result: 0 })
    expect(log.size).toBe(200)
    expect(log.slots).toBeLessThanOrEqual(2 * log.size)
    expect(log.find('k7', 'a', 5_000)?.result).toBe(0)
    expect(log.find('k7', 'a', 999)).toBeUndefined()
  })

  it('finds every record added and none other, whatever order the seqs of several origins come in', () => {
    const record = fc.record({ key: fc.constantFrom('k', 'l'), origin: fc.constantFrom('a', 'b', 'c'), seq: fc.integer({ min: 0, max: 40 }) })
    fc.assert(
      fc.property(fc.array(record, { maxLength: 60 }), fc.array(record, { maxLength: 30 }), (adds, probes) => {
        const log = new OpLog(1_000_000, () => 0)
        const added = new Map<string, number>()
        adds.forEach(({ key, origin, seq }, i) => {
          // a retried operation's record comes again with the result it had
          const id = `${key}/${origin}/${seq}`
          if (added.has(id) && i % 2 === 0) log.add(key, { origin, seq, result: added.get(id)! })
          else if (!added.has(id)) {
            added.set(id, i)
            log.add(key, { origin, seq, result: i })
          }
          for (const p of [...probes, { key, origin, seq }]) expect(log.find(p.key, p.origin, p.seq)?.result).toBe(added.get(`${p.key}/${p.origin}/${p.seq}`))
        })
        expect(log.size).toBe(added.size)
      })
    )
  })
})
