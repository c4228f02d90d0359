import { describe, expect, it } from 'vitest'
import { Dialer, type DialerOptions, type MembershipView, type Output } from '../src/internal/dialer.js'

const options = (overrides: Partial<DialerOptions> = {}): DialerOptions => ({
  selfId: 'b',
  selfAddresses: [{ host: 'b', port: 1 }],
  single: false,
  reconnect: { initialMs: 100, maxMs: 400, giveUpMs: 2_000 },
  lateDialMs: 1_000,
  discoveryIntervalMs: 5_000,
  ...overrides
})

const view = (linked: ReadonlyArray<string> = [], left: ReadonlyArray<string> = []): MembershipView => ({
  isLinked: (id) => linked.includes(id),
  isLeft: (id) => left.includes(id),
  addressOf: () => undefined
})

const brief = (outputs: ReadonlyArray<Output>) =>
  outputs.map((o) => (o._tag === 'Dial' ? `Dial:${o.address.host}:${o.address.port}` : o._tag === 'Timer' ? `Timer:${o.at}:${o.key._tag}` : `GaveUp:${o.id}`))

const member = (nodeId: string) => ({ nodeId, instanceId: `${nodeId}-1`, host: nodeId, port: 1 })

describe('Dialer', () => {
  it('a dial is refused for ourselves, while one to the same address runs, and while leaving', () => {
    const d = new Dialer(options())
    expect(d.dialStarting({ host: 'b', port: 1 })).toBe('Self')
    expect(d.dialStarting({ host: 'c', port: 1 })).toBeUndefined()
    expect(d.dialStarting({ host: 'c', port: 1 })).toBe('AlreadyDialing')
    d.dialEnded(0, { host: 'c', port: 1 }, { ok: false, selfConnection: false, reconnect: undefined })
    expect(d.dialStarting({ host: 'c', port: 1 })).toBeUndefined()
    d.leave()
    expect(d.dialStarting({ host: 'e', port: 1 })).toBe('Leaving')
  })

  it('an address that turned out to be this node is never dialed again', () => {
    const d = new Dialer(options())
    d.dialStarting({ host: '10.0.0.2', port: 1 })
    d.dialEnded(0, { host: '10.0.0.2', port: 1 }, { ok: false, selfConnection: true, reconnect: undefined })
    expect(d.dialStarting({ host: '10.0.0.2', port: 1 })).toBe('Self')
    expect(brief(d.discovered(0, [{ host: '10.0.0.2', port: 1 }], new Set()).dial)).toEqual([])
  })

  it('seeds: dials the ones not ours, not linked, not in flight; resolves again after the interval', () => {
    const d = new Dialer(options())
    d.dialStarting({ host: 'd', port: 1 })
    const { dial, next } = d.discovered(1_000, [{ host: 'b', port: 1 }, { host: 'c', port: 1 }, { host: 'd', port: 1 }, { host: 'e', port: 1 }], new Set(['e:1']))
    expect(brief(dial)).toEqual(['Dial:c:1'])
    expect(next).toBe(6_000)
  })

  it('gossip dials are bounded per second: the rest waits for the next second, each address once, however often gossip repeats it (finding 6)', () => {
    const d = new Dialer(options({ gossipDialsPerSecond: 4 }))
    const many = Array.from({ length: 10 }, (_, i) => member(`m${String(i).padStart(2, '0')}`))
    const out = d.learned(500, many, view())
    // the shell starts each dial at once
    for (const o of out) if (o._tag === 'Dial') d.dialStarting(o.address)
    const first = brief(out)
    expect(first.filter((o) => o.startsWith('Dial:'))).toHaveLength(4)
    expect(first.filter((o) => o === 'Timer:1000:DeferredDial')).toHaveLength(6)
    // the same gossip again within the second: no dial, no second timer per address
    expect(brief(d.learned(600, many, view()))).toEqual([])
    // the next second: four more, the others deferred again
    const timers = d.learned(500, [], view())
    expect(timers).toEqual([])
    const again = many.slice(4).flatMap((m) => brief(d.fire(1_000, { _tag: 'DeferredDial', member: m }, view())))
    expect(again.filter((o) => o.startsWith('Dial:'))).toHaveLength(4)
    expect(again.filter((o) => o === 'Timer:2000:DeferredDial')).toHaveLength(2)
  })

  it('gossip: the smaller id dials at once, the larger waits and dials only if nothing came', () => {
    const d = new Dialer(options())
    // b < c: dial c now; a < b: wait for a to dial us
    expect(brief(d.learned(0, [member('a'), member('b'), member('c')], view()))).toEqual(['Timer:1000:LateDial', 'Dial:c:1'])
    const timer = d.learned(0, [member('a')], view())[0]
    if (timer?._tag !== 'Timer') throw new Error('expected a timer')
    expect(brief(d.fire(1_000, timer.key, { ...view(), isLinked: (id, instance) => id === 'a' && instance === 'a-1' }))).toEqual([])
    expect(brief(d.fire(1_000, timer.key, view()))).toEqual(['Dial:a:1'])
  })

  it('reconnect: after the initial delay, then doubling up to the maximum, until the give-up time', () => {
    const d = new Dialer(options())
    const times: Array<number> = []
    let outputs = d.reconnect(0, 'c', { host: 'c', port: 1 })
    let now = 0
    for (let i = 0; i < 20; i++) {
      const timer = outputs.find((o) => o._tag === 'Timer')
      if (timer === undefined || timer._tag !== 'Timer') break
      now = timer.at
      times.push(now)
      const dial = d.fire(now, timer.key, view())
      expect(brief(dial)).toEqual(['Dial:c:1'])
      outputs = d.dialEnded(now, { host: 'c', port: 1 }, { ok: false, selfConnection: false, reconnect: 'c' })
    }
    // 100, then +100, +200, +400 (max), +400 ... while the next try is within 2 s of the failure
    expect(times).toEqual([100, 200, 400, 800, 1_200, 1_600, 2_000])
    expect(brief(outputs)).toEqual(['GaveUp:c'])
    expect(d.isReconnecting('c')).toBe(false)
  })

  it('reconnect: one per member; a member linked again or left ends it; a stale timer does nothing', () => {
    const d = new Dialer(options())
    const [timer] = d.reconnect(0, 'c', { host: 'c', port: 1 })
    expect(d.reconnect(0, 'c', { host: 'c', port: 1 })).toEqual([])
    if (timer?._tag !== 'Timer') throw new Error('expected a timer')
    expect(brief(d.fire(100, timer.key, view(['c'])))).toEqual([])
    expect(d.isReconnecting('c')).toBe(false)
    d.reconnect(200, 'c', { host: 'c', port: 1 })
    // the old timer's generation is gone
    expect(brief(d.fire(300, timer.key, view()))).toEqual([])
    const [again] = d.reconnect(200, 'e', { host: 'e', port: 1 })
    if (again?._tag !== 'Timer') throw new Error('expected a timer')
    expect(brief(d.fire(300, again.key, view([], ['e'])))).toEqual([])
  })

  it('a successful reconnect dial ends the reconnect; single mode never reconnects', () => {
    const d = new Dialer(options())
    d.reconnect(0, 'c', { host: 'c', port: 1 })
    d.dialEnded(100, { host: 'c', port: 1 }, { ok: true, selfConnection: false, reconnect: 'c' })
    expect(d.isReconnecting('c')).toBe(false)
    expect(new Dialer(options({ single: true })).reconnect(0, 'c', { host: 'c', port: 1 })).toEqual([])
  })
})
