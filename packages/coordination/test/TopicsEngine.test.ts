import { describe, expect, it } from '@effect/vitest'
import { TopicMessage } from '@mycorrizal/wire'
import { TopicsEngine, type Output } from '../src/internal/topics.js'

/** Engines wired together in memory: each output is carried out when `run` is called, in order. */
class Net {
  readonly engines = new Map<string, TopicsEngine>()
  readonly delivered: Array<{ node: string; topic: string; from: string; text: string }> = []
  readonly done = new Map<string, Array<number>>()
  readonly failed = new Map<string, Array<{ op: number; reason: string; nodes: ReadonlyArray<string> | undefined }>>()
  /** Messages not carried (a node that does not answer). */
  readonly mute = new Set<string>()
  now = 0

  add(id: string, options: Partial<{ publishTimeoutMs: number; subscribeTimeoutMs: number; maxTopics: number; epoch: number }> = {}) {
    const e = new TopicsEngine(
      { self: id, epoch: options.epoch ?? id.charCodeAt(0), publishTimeoutMs: options.publishTimeoutMs ?? 1_000, subscribeTimeoutMs: options.subscribeTimeoutMs ?? 1_000, maxTopics: options.maxTopics ?? 10 },
      [...this.engines.keys(), id]
    )
    this.engines.set(id, e)
    e.start()
    return e
  }

  /** Every engine sees these members. */
  members(ids: ReadonlyArray<string>) {
    for (const id of ids) this.engines.get(id)!.membership(ids, this.now)
  }

  run(rounds = 20) {
    for (let r = 0; r < rounds; r++) {
      let any = false
      for (const [id, e] of this.engines) {
        if (e.hasUnacked()) e.flushDelivered()
        const out = e.out.splice(0)
        for (const o of out) {
          any = true
          this.carry(id, o)
        }
      }
      if (!any) return
    }
  }

  private carry(from: string, o: Output) {
    switch (o._tag) {
      case 'Send': {
        if (this.mute.has(o.to)) return
        // through the codec, as on the wire
        this.engines.get(o.to)?.receive(from, TopicMessage.decode(TopicMessage.encode(o.message)), this.now)
        return
      }
      case 'Publish':
        for (const to of o.to) {
          if (this.mute.has(to)) continue
          const m = TopicMessage.decode(TopicMessage.encode(o.message))
          this.engines.get(to)?.receivePublish(from, o.topic, m as TopicMessage.Publish)
        }
        return
      case 'Deliver':
        this.delivered.push({ node: from, topic: o.topic, from: o.from, text: new TextDecoder().decode(o.payload) })
        return
      case 'Done':
        this.done.set(from, [...(this.done.get(from) ?? []), o.op])
        return
      case 'Fail':
        this.failed.set(from, [...(this.failed.get(from) ?? []), { op: o.op, reason: o.error.reason, nodes: o.error.nodes }])
        return
    }
  }

  tick(ms: number) {
    this.now += ms
    for (const e of this.engines.values()) e.tick(this.now)
    this.run()
  }

  at(node: string) {
    return this.delivered.filter((d) => d.node === node).map((d) => `${d.topic}/${d.from}/${d.text}`)
  }
}

const bytes = (s: string) => new TextEncoder().encode(s)

const three = () => {
  const net = new Net()
  const a = net.add('a')
  const b = net.add('b')
  const c = net.add('c')
  net.members(['a', 'b', 'c'])
  net.run()
  return { net, a, b, c }
}

describe('TopicsEngine', () => {
  it('a subscribe completes once every member acknowledged it; publishes reach subscribers on every node, this one included, in order', () => {
    const { net, a, b, c } = three()
    expect(b.subscribe(1, 'orders', net.now)).toBe(1)
    expect(net.done.get('b')).toBeUndefined()
    net.run()
    expect(net.done.get('b')).toEqual([1])
    c.subscribe(1, 'orders', net.now)
    a.subscribe(1, 'orders', net.now)
    net.run()
    for (let i = 0; i < 5; i++) expect(a.publish(10 + i, 'orders', bytes(`m${i}`), net.now)).toBeUndefined()
    expect(net.done.get('a')).toEqual([1])
    net.run()
    expect(net.done.get('a')).toEqual([1, 10, 11, 12, 13, 14])
    for (const n of ['a', 'b', 'c']) expect(net.at(n)).toEqual([0, 1, 2, 3, 4].map((i) => `orders/a/m${i}`))
    expect(a.stats()).toEqual([{ topic: 'orders', localSubscribers: 1, subscriberNodes: ['b', 'c'], published: 5, delivered: 5, pending: 0, failedPublishes: 0 }])
  })

  it('a publish goes only to the nodes with a subscriber and completes at once when there is none', () => {
    const { net, a, c } = three()
    c.subscribe(1, 'orders', net.now)
    net.run()
    expect(a.publish(2, 'other', bytes('x'), net.now)).toBeUndefined()
    expect(a.out.filter((o) => o._tag === 'Publish')).toEqual([])
    net.run()
    expect(net.done.get('a')).toEqual([2])
    a.publish(3, 'orders', bytes('y'), net.now)
    const sent = a.out.filter((o) => o._tag === 'Publish')
    expect(sent.map((o) => (o._tag === 'Publish' ? o.to : []))).toEqual([['c']])
    net.run()
    expect(net.at('c')).toEqual(['orders/a/y'])
    expect(net.at('b')).toEqual([])
  })

  it('a publish waits until every member told its topics: a node that just joined does not miss a subscriber', () => {
    const net = new Net()
    const a = net.add('a')
    net.members(['a'])
    a.subscribe(1, 'orders', net.now)
    net.run()
    expect(net.done.get('a')).toEqual([1])
    // d joins: it knows a is a member before a's Interest reached it
    const d = net.add('d')
    d.publish(5, 'orders', bytes('early'), net.now)
    expect(d.out.filter((o) => o._tag === 'Publish')).toEqual([])
    net.members(['a', 'd'])
    net.run()
    expect(net.at('a')).toEqual(['orders/d/early'])
    expect(net.done.get('d')).toEqual([5])
  })

  it('a node that leaves or fails is not waited for', () => {
    const { net, a, b, c } = three()
    b.subscribe(1, 'orders', net.now)
    c.subscribe(1, 'orders', net.now)
    net.run()
    net.mute.add('c')
    a.publish(7, 'orders', bytes('x'), net.now)
    net.run()
    expect(net.done.get('a')).toBeUndefined()
    net.members(['a', 'b'])
    net.run()
    expect(net.done.get('a')).toEqual([7])
    // a subscribe waiting for a silent member completes when that member fails
    const again = three()
    again.net.mute.add('c')
    again.a.subscribe(8, 'audit', again.net.now)
    again.net.run()
    expect(again.net.done.get('a')).toBeUndefined()
    again.a.membership(['a', 'b'], again.net.now)
    again.net.run()
    expect(again.net.done.get('a')).toEqual([8])
  })

  it('timeouts name the nodes: a publish no subscriber node took, a subscribe a member never learned (withdrawn)', () => {
    const { net, a, b, c } = three()
    b.subscribe(1, 'orders', net.now)
    net.run()
    net.mute.add('b')
    a.publish(2, 'orders', bytes('x'), net.now)
    net.run()
    expect(a.nextWake()).toBe(1_000)
    net.tick(999)
    expect(net.failed.get('a')).toBeUndefined()
    net.tick(1)
    expect(net.failed.get('a')).toEqual([{ op: 2, reason: 'Timeout', nodes: ['b'] }])
    expect(a.stats()[0]!.failedPublishes).toBe(1)
    // c subscribes while b is mute: it fails and the subscription is withdrawn everywhere
    const sub = c.subscribe(3, 'audit', net.now) as number
    net.run()
    net.tick(1_000)
    expect(net.failed.get('c')).toEqual([{ op: 3, reason: 'Timeout', nodes: ['b'] }])
    expect(c.subscribed('audit', sub)).toBe(false)
    expect(c.localTopics()).toEqual([])
    net.mute.clear()
    a.publish(4, 'audit', bytes('y'), net.now)
    net.run()
    expect(net.at('c')).toEqual([])
    expect(net.done.get('a')).toContain(4)
  })

  it('a failed send fails the publish naming the node while it is a member; a gone node completes it', () => {
    const { net, a, b, c } = three()
    b.subscribe(1, 'orders', net.now)
    c.subscribe(1, 'orders', net.now)
    net.run()
    a.publish(2, 'orders', bytes('x'), net.now)
    a.out.length = 0
    a.publishFailed(2, 'orders', ['b'], 'b: Overloaded')
    expect(a.out).toEqual([expect.objectContaining({ _tag: 'Fail', op: 2 })])
    const fail = a.out[0]
    expect(fail?._tag === 'Fail' && fail.error.reason).toBe('PublishFailed')
    expect(fail?._tag === 'Fail' && fail.error.nodes).toEqual(['b'])
    a.out.length = 0
    a.publish(3, 'orders', bytes('y'), net.now)
    a.out.length = 0
    a.membership(['a', 'c'], net.now)
    a.publishFailed(3, 'orders', ['b'], 'ConnectionLost')
    expect(a.out).toEqual([])
    a.receive('c', { _tag: 'Delivered', topic: 'orders', seq: 2 }, net.now)
    expect(a.out).toEqual([{ _tag: 'Done', op: 3 }])
  })

  it('unsubscribe stops delivery here at once and at the publishers once they know; late publishes are still acknowledged', () => {
    const { net, a, b } = three()
    const sub = b.subscribe(1, 'orders', net.now) as number
    net.run()
    a.publish(2, 'orders', bytes('in-flight'), net.now)
    const inFlight = a.out.filter((o) => o._tag === 'Publish')
    a.out.length = 0
    b.unsubscribe(3, 'orders', sub, net.now)
    net.run()
    expect(net.done.get('b')).toEqual([1, 3])
    // the publish sent before a learned of it arrives now: not delivered, but acknowledged
    for (const o of inFlight) if (o._tag === 'Publish') b.receivePublish('a', 'orders', o.message)
    net.run()
    expect(net.at('b')).toEqual([])
    expect(net.done.get('a')).toEqual([2])
    a.publish(4, 'orders', bytes('after'), net.now)
    expect(a.out.filter((o) => o._tag === 'Publish')).toEqual([])
  })

  it('a Delivered report covers every earlier publish of the topic; out-of-order completions stay exact', () => {
    const { net, a, b, c } = three()
    b.subscribe(1, 'orders', net.now)
    c.subscribe(1, 'orders', net.now)
    net.run()
    for (let i = 0; i < 3; i++) a.publish(10 + i, 'orders', bytes(`${i}`), net.now)
    a.out.length = 0
    a.receive('b', { _tag: 'Delivered', topic: 'orders', seq: 3 }, net.now)
    expect(a.out).toEqual([])
    a.receive('c', { _tag: 'Delivered', topic: 'orders', seq: 2 }, net.now)
    expect(a.out).toEqual([
      { _tag: 'Done', op: 10 },
      { _tag: 'Done', op: 11 }
    ])
    a.out.length = 0
    a.receive('c', { _tag: 'Delivered', topic: 'orders', seq: 3 }, net.now)
    expect(a.out).toEqual([{ _tag: 'Done', op: 12 }])
    expect(a.stats()[0]!.pending).toBe(0)
  })

  it('a receiver reports the first Publish of a turn at once and the rest of the turn with one cumulative Delivered', () => {
    const { net, a, b } = three()
    b.subscribe(1, 'orders', net.now)
    net.run()
    for (let i = 0; i < 4; i++) a.publish(10 + i, 'orders', bytes(`m${i}`), net.now)
    const sent = a.out.flatMap((o) => (o._tag === 'Publish' ? [o.message] : []))
    a.out.length = 0
    expect(sent.map((m) => m.seq)).toEqual([1, 2, 3, 4])
    const reports = () => b.out.splice(0).flatMap((o) => (o._tag === 'Send' && o.message._tag === 'Delivered' ? [`${o.to}:${o.message.topic}:${o.message.seq}`] : []))
    // one turn: seq 1 is reported at once, handed to the subscriber before the report
    b.receivePublish('a', 'orders', sent[0]!)
    expect(b.out.map((o) => o._tag)).toEqual(['Deliver', 'Send'])
    expect(reports()).toEqual(['a:orders:1'])
    b.receivePublish('a', 'orders', sent[1]!)
    b.receivePublish('a', 'orders', sent[2]!)
    expect(reports()).toEqual([])
    expect(b.hasUnacked()).toBe(true)
    // the turn ends: one report for both
    b.flushDelivered()
    expect(reports()).toEqual(['a:orders:3'])
    expect(b.hasUnacked()).toBe(false)
    b.flushDelivered()
    expect(reports()).toEqual([])
    // the next turn starts with a report at once again
    b.receivePublish('a', 'orders', sent[3]!)
    expect(reports()).toEqual(['a:orders:4'])
    b.flushDelivered()
    expect(reports()).toEqual([])
    a.receive('b', { _tag: 'Delivered', topic: 'orders', seq: 1 }, net.now)
    expect(a.out).toEqual([{ _tag: 'Done', op: 10 }])
    a.out.length = 0
    a.receive('b', { _tag: 'Delivered', topic: 'orders', seq: 3 }, net.now)
    expect(a.out).toEqual([
      { _tag: 'Done', op: 11 },
      { _tag: 'Done', op: 12 }
    ])
    a.out.length = 0
    // a late or repeated report completes nothing twice
    a.receive('b', { _tag: 'Delivered', topic: 'orders', seq: 2 }, net.now)
    expect(a.out).toEqual([])
    a.receive('b', { _tag: 'Delivered', topic: 'orders', seq: 4 }, net.now)
    expect(a.out).toEqual([{ _tag: 'Done', op: 13 }])
    expect(a.nextWake()).toBeUndefined()
  })

  it('a lost report is covered by the next one; a lost message times out naming the node; a failed node completes the rest', () => {
    const { net, a, b, c } = three()
    b.subscribe(1, 'orders', net.now)
    c.subscribe(1, 'orders', net.now)
    net.run()
    for (let i = 0; i < 2; i++) a.publish(10 + i, 'orders', bytes(`m${i}`), net.now)
    const sent = a.out.flatMap((o) => (o._tag === 'Publish' ? [o.message] : []))
    a.out.length = 0
    // b's report at once (seq 1) is lost; its turn-end report (seq 2) covers both
    b.receivePublish('a', 'orders', sent[0]!)
    b.receivePublish('a', 'orders', sent[1]!)
    b.out.length = 0
    b.flushDelivered()
    for (const o of b.out.splice(0)) if (o._tag === 'Send') a.receive('b', o.message, net.now)
    // c took both in one turn each: its reports arrive
    for (const m of sent) {
      c.receivePublish('a', 'orders', m)
      c.flushDelivered()
    }
    for (const o of c.out.splice(0)) if (o._tag === 'Send') a.receive('c', o.message, net.now)
    expect(a.out).toEqual([
      { _tag: 'Done', op: 10 },
      { _tag: 'Done', op: 11 }
    ])
    a.out.length = 0
    // a message to b is lost (nothing is reported): the publish times out naming b, c took it
    a.publish(12, 'orders', bytes('lost'), net.now)
    const third = a.out.flatMap((o) => (o._tag === 'Publish' ? [o.message] : []))[0]!
    a.out.length = 0
    c.receivePublish('a', 'orders', third)
    c.flushDelivered()
    for (const o of c.out.splice(0)) if (o._tag === 'Send') a.receive('c', o.message, net.now)
    expect(a.out).toEqual([])
    expect(a.nextWake()).toBe(net.now + 1_000)
    a.tick(net.now + 1_000)
    expect(a.out).toEqual([expect.objectContaining({ _tag: 'Fail', op: 12 })])
    const fail = a.out[0]
    expect(fail?._tag === 'Fail' && fail.error.reason).toBe('Timeout')
    expect(fail?._tag === 'Fail' && fail.error.nodes).toEqual(['b'])
    a.out.length = 0
    // b fails while a publish waits for it and c reported it: the publish completes without b
    a.publish(13, 'orders', bytes('x'), net.now + 1_000)
    const fourth = a.out.flatMap((o) => (o._tag === 'Publish' ? [o.message] : []))[0]!
    a.out.length = 0
    c.receivePublish('a', 'orders', fourth)
    for (const o of c.out.splice(0)) if (o._tag === 'Send') a.receive('c', o.message, net.now)
    expect(a.out).toEqual([])
    a.membership(['a', 'c'], net.now + 1_000)
    expect(a.out).toEqual([{ _tag: 'Done', op: 13 }])
    expect(a.stats()[0]).toMatchObject({ pending: 0, failedPublishes: 1 })
    expect(a.nextWake()).toBeUndefined()
    // and b forgets its open turn for a node that failed
    b.receivePublish('a', 'orders', fourth)
    b.membership(['b', 'c'], net.now + 1_000)
    expect(b.hasUnacked()).toBe(false)
  })

  it('a restarted node (new epoch) replaces what it subscribed to before', () => {
    const { net, a, b } = three()
    b.subscribe(1, 'orders', net.now)
    net.run()
    expect(a.stats()).toEqual([])
    a.publish(2, 'orders', bytes('x'), net.now)
    expect(a.stats()[0]!.subscriberNodes).toEqual(['b', 'c'].filter((n) => n === 'b'))
    net.run()
    // b restarts with a new epoch and nothing subscribed; its Interest has seq 0
    a.receive('b', { _tag: 'Interest', epoch: 999, seq: 0, topics: [] }, net.now)
    expect(a.stats()[0]!.subscriberNodes).toEqual([])
    // an old Interest of the same epoch does not undo a newer one
    a.receive('b', { _tag: 'Interest', epoch: 999, seq: 2, topics: ['orders'] }, net.now)
    a.receive('b', { _tag: 'Interest', epoch: 999, seq: 1, topics: [] }, net.now)
    expect(a.stats()[0]!.subscriberNodes).toEqual(['b'])
  })

  it('refuses invalid topic names and more topics than allowed, with typed errors', () => {
    const net = new Net()
    const a = net.add('a', { maxTopics: 2 })
    expect(a.publish(1, '', bytes('x'), 0)).toMatchObject({ _tag: 'CoordinationError', reason: 'InvalidTopic' })
    expect(a.subscribe(2, 'x'.repeat(250), 0)).toMatchObject({ reason: 'InvalidTopic' })
    expect(a.subscribe(3, '\ud800', 0)).toMatchObject({ reason: 'InvalidTopic' })
    expect(a.subscribe(4, 'ü'.repeat(124), 0)).toBe(1)
    expect(a.publish(5, 'two', bytes('x'), 0)).toBeUndefined()
    expect(a.publish(6, 'three', bytes('x'), 0)).toMatchObject({ reason: 'TooManyTopics' })
  })

  it('close fails everything that waits and takes no more input', () => {
    const { net, a, b } = three()
    b.subscribe(1, 'orders', net.now)
    net.run()
    net.mute.add('b')
    a.publish(2, 'orders', bytes('x'), net.now)
    a.subscribe(3, 'audit', net.now)
    a.out.length = 0
    a.close()
    expect(a.out.map((o) => (o._tag === 'Fail' ? `${o.op}:${o.error.reason}` : o._tag)).sort()).toEqual(['2:Closed', '3:Closed'])
    expect(a.publish(4, 'orders', bytes('y'), net.now)).toMatchObject({ reason: 'Closed' })
    expect(a.nextWake()).toBeUndefined()
  })
})
