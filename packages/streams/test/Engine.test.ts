/**
 * The stream engine's rules, driven as plain state without a transport or a clock.
 */
import { describe, expect, it } from '@effect/vitest'
import { Either } from 'effect'
import { resolveConfig } from '../src/internal/config.js'
import { Inbox } from '../src/internal/inbox.js'
import { Outbox } from '../src/internal/outbox.js'
import { Held, routeStream } from '../src/internal/routing.js'
import { SendWait } from '../src/internal/sendWait.js'
import { applicationStats, BACKLOG_WARNING_BYTES, StreamCounters } from '../src/internal/stats.js'

const bytes = (n: number, fill = 0) => new Uint8Array(n).fill(fill)

describe('outbox: buffering and backpressure', () => {
  it('writes while the transport takes more, buffers once it is blocked, then waits, then refuses', () => {
    const o = new Outbox<string>({ messages: 2, bytes: 1_000, waitingBytes: 300 })
    expect(o.admit(100)._tag).toBe('Write')
    o.wrote(100, false) // the transport asks to wait for drain
    expect(o.admit(100)._tag).toBe('Buffer')
    o.buffer(bytes(100))
    expect(o.admit(100)._tag).toBe('Buffer')
    o.buffer(bytes(100))
    // two messages buffered: full
    expect(o.admit(100)._tag).toBe('Wait')
    o.wait(bytes(200), 'w1')
    expect(o.admit(100)._tag).toBe('Wait')
    o.wait(bytes(100), 'w2')
    expect(o.admit(1)).toEqual({ _tag: 'Overloaded', waitingBytes: 300 })
    expect(o.queuedMessages).toBe(4)
    expect(o.queuedBytes).toBe(500)
    expect(o.next()).toBeUndefined() // still blocked
    o.drained()
    expect(o.next()?.byteLength).toBe(100)
    // one slot free: the first waiting send is let in, its copy buffered
    expect(o.admitWaiting()).toEqual(['w1'])
    expect(o.waitingBytes).toBe(100)
    expect(o.pendingBytes).toBe(300)
  })

  it('one send may always wait, even a message larger than the limit; 0 means sends never wait', () => {
    const o = new Outbox<string>({ messages: 1, bytes: 1_000, waitingBytes: 100 })
    o.wrote(10, false)
    o.buffer(bytes(10))
    expect(o.admit(5_000)._tag).toBe('Wait')
    o.wait(bytes(5_000), 'big')
    expect(o.admit(1)._tag).toBe('Overloaded')
    const never = new Outbox<string>({ messages: 1, bytes: 1_000, waitingBytes: 0 })
    never.wrote(10, false)
    never.buffer(bytes(10))
    expect(never.admit(1)._tag).toBe('Overloaded')
  })

  it('an empty buffer takes any message; the byte limit bounds a non-empty one', () => {
    const o = new Outbox<string>({ messages: 100, bytes: 1_000, waitingBytes: 1_000 })
    o.wrote(1, false)
    expect(o.admit(50_000)._tag).toBe('Buffer')
    o.buffer(bytes(50_000))
    expect(o.admit(1)._tag).toBe('Wait')
  })

  it('clear hands back what was buffered, waiting and written', () => {
    const o = new Outbox<string>({ messages: 1, bytes: 1_000, waitingBytes: 1_000 })
    o.wrote(7, false)
    o.buffer(bytes(10))
    o.wait(bytes(20), 'w')
    const cleared = o.clear()
    expect(cleared.pending.map((p) => p.byteLength)).toEqual([10])
    expect(cleared.waiting.map((w) => w.waiter)).toEqual(['w'])
    expect([cleared.written, cleared.writtenBytes]).toEqual([1, 7])
    expect([o.queuedMessages, o.queuedBytes]).toEqual([0, 0])
  })
})

describe('inbox: ordered delivery', () => {
  it('delivers at once when idle, queues behind a busy handler in order, asks to pause when full', () => {
    const i = new Inbox({ messages: 2, bytes: 1_000 })
    expect(i.arrive(bytes(1, 1), true)._tag).toBe('Deliver')
    i.busy = true
    expect(i.arrive(bytes(1, 2), true)).toEqual({ _tag: 'Queued', pause: false })
    expect(i.arrive(bytes(1, 3), true)).toEqual({ _tag: 'Queued', pause: true })
    expect(i.next(true)).toBeUndefined() // busy
    i.busy = false
    expect(i.next(true)?.[0]).toBe(2)
    expect(i.isFull()).toBe(false)
    expect(i.next(true)?.[0]).toBe(3)
  })

  it('keeps messages until a receive function is set', () => {
    const i = new Inbox({ messages: 10, bytes: 1_000 })
    expect(i.arrive(bytes(1), false)._tag).toBe('Queued')
    expect(i.next(false)).toBeUndefined()
    expect(i.next(true)).toBeDefined()
  })
})

describe('send waits', () => {
  it('settles once every waiting target is done, with the failures as a SendError', () => {
    const w = new SendWait('app/s', ['a'])
    w.waitFor()
    w.waitFor()
    let settled = false
    w.whenSettled(() => (settled = true))
    w.done('b')
    expect(settled).toBe(false)
    w.done('c', { node: 'c', reason: 'Overloaded', message: 'full' })
    expect(settled).toBe(true)
    const error = w.error()
    expect(error?.accepted).toEqual(['a', 'b'])
    expect(error?.failures.map((f) => f.reason)).toEqual(['Overloaded'])
    expect(error?.message).toBe("send on 'app/s' failed for c (Overloaded)")
  })
})

describe('stats and health', () => {
  it('warns once per error-rate excursion and re-arms below half the threshold', () => {
    const c = new StreamCounters(0)
    c.failedSends = 19
    expect(c.errorRateExcursion()).toBeUndefined() // fewer than 20 attempts
    c.failedSends = 20
    expect(c.errorRateExcursion()).toBe(1)
    expect(c.errorRateExcursion()).toBeUndefined()
    c.messagesOut = 1_000
    expect(c.errorRateExcursion()).toBeUndefined() // re-armed
    c.failedSends = 200
    expect(c.errorRateExcursion()).toBeGreaterThan(0.05)
  })

  it('warns once per backlog excursion per peer', () => {
    const c = new StreamCounters(0)
    expect(c.backlogExcursion('a', BACKLOG_WARNING_BYTES - 1)).toBe(false)
    expect(c.backlogExcursion('a', BACKLOG_WARNING_BYTES)).toBe(true)
    expect(c.backlogExcursion('a', BACKLOG_WARNING_BYTES * 2)).toBe(false)
    c.backlogCleared('a')
    expect(c.backlogExcursion('a', BACKLOG_WARNING_BYTES)).toBe(true)
  })

  it('a refused stream turns what was counted as sent into failures; app totals add up', () => {
    const c = new StreamCounters(5)
    c.sent(10, 6)
    c.sent(10, 7)
    c.unsent(2, 20)
    const s = c.snapshot({ messages: 0, bytes: 0, activeNodes: [] })
    expect([s.messagesOut, s.bytesSent, s.failedSends, s.errorRate, s.lastActive]).toEqual([0, 0, 2, 1, 7])
    const totals = applicationStats(s, [['x', { ...s, bytesReceived: 3 }]])
    expect([totals.totalFailedSends, totals.totalBytesReceived, totals.activeStreams]).toEqual([4, 3, 2])
  })
})

describe('routing: unclaimed incoming streams', () => {
  it('holds under a key until claimed or expired; an expired one is gone, a claimed one cannot expire', () => {
    const held = new Held<string>()
    held.hold('s', 'p1')
    held.hold('s', 'p2')
    expect(held.expire('s', 'p1')).toBe(true)
    expect(held.claim('s')).toEqual(['p2'])
    expect(held.expire('s', 'p2')).toBe(false)
    expect(held.size).toBe(0)
  })

  it('routes "" to the default stream and a name to an open named stream, else holds', () => {
    const def = { closed: false }
    const named = new Map([
      ['open', { closed: false }],
      ['shut', { closed: true }]
    ])
    expect(routeStream(def, named, '')).toEqual({ _tag: 'Attach', stream: def })
    expect(routeStream(def, named, 'open')._tag).toBe('Attach')
    expect(routeStream(def, named, 'shut')._tag).toBe('Hold')
    expect(routeStream(def, named, 'nope')._tag).toBe('Hold')
  })
})

describe('application settings', () => {
  const node = { graceMs: 5_000, maxMessageSize: 16 * 1024 * 1024 }
  it('maxWaitingBytes defaults to the larger of streamBufferBytes and the largest message, and is validated', () => {
    const dflt = Either.getOrThrow(resolveConfig({ id: 'a' }, node))
    expect(dflt.maxWaitingBytes).toBe(16 * 1024 * 1024)
    expect(Either.getOrThrow(resolveConfig({ id: 'a', streamBufferBytes: 32 * 1024 * 1024 }, node)).maxWaitingBytes).toBe(32 * 1024 * 1024)
    expect(Either.getOrThrow(resolveConfig({ id: 'a', maxWaitingBytes: 0 }, node)).maxWaitingBytes).toBe(0)
    const bad = resolveConfig({ id: 'a', maxWaitingBytes: -1 }, node)
    expect(Either.isLeft(bad) && bad.left.reason).toBe('InvalidConfig')
  })
})
