import { describe, expect, it } from 'vitest'
import { type LinkInfo, MembershipTable, type Output } from '../src/internal/membership.js'
import { ErrorCode } from '../src/PeerStream.js'

const table = (now = 0) =>
  new MembershipTable({ self: { id: 'a', instanceId: 'a-1', address: { host: 'a', port: 1 } }, failureTimeoutMs: 2_000, suspectTimeoutMs: 5_000, now })

const link = (id: string, connectionId: string, overrides: Partial<LinkInfo> = {}): LinkInfo => ({
  id,
  instanceId: `${id}-1`,
  address: { host: id, port: 1 },
  connectionId,
  dialedByUs: true,
  ...overrides
})

/** The outputs as short strings, for readable assertions. */
const brief = (outputs: ReadonlyArray<Output>) =>
  outputs.map((o) => {
    switch (o._tag) {
      case 'Event':
        return `${o.event._tag}:${o.event.member.id}`
      case 'Drop':
        return `Drop:${o.connectionId}:${o.code}`
      case 'Reconnect':
        return `Reconnect:${o.id}`
      case 'Announce':
        return `Announce:${o.member.nodeId}`
      case 'Ping':
        return `Ping:${o.id}`
      case 'Timer':
        return `Timer:${o.at}`
    }
  })

describe('MembershipTable', () => {
  it('a kept connection joins the member once and announces it to the others', () => {
    const t = table()
    const first = t.connected(10, link('b', 'c1'))
    expect(first.kept).toBe(true)
    expect(brief(first.outputs)).toEqual(['Joined:b', 'Announce:b'])
    expect(t.alive()).toEqual(['a', 'b'])
    expect(t.members().find((m) => m.id === 'b')).toMatchObject({ state: 'alive', since: 10 })
  })

  it('heartbeats: a silent link fails after the failure timeout, in one transition, with a reconnect', () => {
    const t = table()
    t.connected(0, link('b', 'c1'))
    t.connected(0, link('c', 'c2'))
    expect(brief(t.tick(1_000, true))).toEqual(['Ping:b', 'Ping:c'])
    t.heard(1_500, 'c', 'c2')
    expect(brief(t.tick(2_000, true))).toEqual(['Ping:b', 'Ping:c'])
    expect(brief(t.tick(2_001, true))).toEqual([`Drop:c1:${ErrorCode.PeerFailed}`, 'Failed:b', 'Reconnect:b', 'Ping:c'])
    expect(t.alive()).toEqual(['a', 'c'])
    expect(t.counts()).toEqual({ alive: 2, failed: 1, left: 0 })
    // failed once: later ticks and a late close of the same connection change nothing
    expect(brief(t.tick(3_000, false))).toEqual([])
    expect(brief(t.lost(3_000, 'b', 'c1', 'closed', false))).toEqual([])
  })

  it('a tick late by more than two heartbeat intervals (this node stalled) fails no one; the next tick judges', () => {
    // Node runs due timers before it reads sockets: after this node's own event loop was
    // blocked, the first tick comes before the heartbeats that sat in the socket meanwhile
    const stalling = () =>
      new MembershipTable({ self: { id: 'a', instanceId: 'a-1', address: { host: 'a', port: 1 } }, failureTimeoutMs: 2_000, suspectTimeoutMs: 5_000, tickIntervalMs: 500, now: 0 })
    const t = stalling()
    t.connected(0, link('b', 'c1'))
    t.connected(0, link('c', 'c2'))
    expect(brief(t.tick(500, true))).toEqual(['Ping:b', 'Ping:c'])
    // blocked from 500 to 3,500: both links look silent for 3.5 s
    expect(brief(t.tick(3_500, true))).toEqual(['Ping:b', 'Ping:c'])
    // the socket is read: c's heartbeat was there, b's was not
    t.heard(3_501, 'c', 'c2')
    expect(brief(t.tick(4_000, true))).toEqual([`Drop:c1:${ErrorCode.PeerFailed}`, 'Failed:b', 'Reconnect:b', 'Ping:c'])
    expect(t.alive()).toEqual(['a', 'c'])
  })

  it('a stall defers the verdict once: a node late on every tick still fails a silent peer', () => {
    const t = new MembershipTable({ self: { id: 'a', instanceId: 'a-1', address: { host: 'a', port: 1 } }, failureTimeoutMs: 2_000, suspectTimeoutMs: 5_000, tickIntervalMs: 500, now: 0 })
    t.connected(0, link('b', 'c1'))
    expect(brief(t.tick(3_000, true))).toEqual(['Ping:b'])
    expect(brief(t.tick(6_000, true))).toEqual([`Drop:c1:${ErrorCode.PeerFailed}`, 'Failed:b', 'Reconnect:b'])
  })

  it('a suspect past its deadline is judged after a stall too, one tick later', () => {
    const t = new MembershipTable({ self: { id: 'a', instanceId: 'a-1', address: { host: 'a', port: 1 } }, failureTimeoutMs: 2_000, suspectTimeoutMs: 1_000, tickIntervalMs: 500, now: 0 })
    t.connected(0, link('b', 'c1'))
    t.tick(500, true)
    expect(brief(t.lost(600, 'b', 'c1', 'duplicate', true))).toEqual(['Timer:1600'])
    expect(brief(t.tick(5_000, false))).toEqual([])
    expect(brief(t.tick(5_500, true))).toEqual(['Failed:b', 'Reconnect:b'])
  })

  it('a heartbeat on a connection that is not the link does not keep the member alive', () => {
    const t = table()
    t.connected(0, link('b', 'c1'))
    t.heard(1_900, 'b', 'other')
    expect(brief(t.tick(2_001, false))).toContain('Failed:b')
  })

  it('a lost connection fails the member at once', () => {
    const t = table()
    t.connected(0, link('b', 'c1'))
    const out = t.lost(5, 'b', 'c1', 'control stream closed', false)
    expect(brief(out)).toEqual([`Drop:c1:${ErrorCode.PeerFailed}`, 'Failed:b', 'Reconnect:b'])
    const failed = out.find((o) => o._tag === 'Event')
    expect(failed?._tag === 'Event' && failed.event._tag === 'Failed' && failed.event.reason).toBe('control stream closed')
  })

  it('Leave: the member is left, not failed, and is not dialed again', () => {
    const t = table()
    t.connected(0, link('b', 'c1'))
    expect(brief(t.left(7, 'b', 'c1'))).toEqual([`Drop:c1:${ErrorCode.Leaving}`, 'Left:b'])
    expect(t.members().find((m) => m.id === 'b')).toMatchObject({ state: 'left', since: 7 })
    expect(brief(t.lost(8, 'b', 'c1', 'closed', false))).toEqual([])
  })

  it('simultaneous dial: the tie-break loser is dropped, one Joined only', () => {
    const t = table()
    // b dialed us first; then our own dial to b finished: a < b, so ours is kept
    expect(brief(t.connected(0, link('b', 'c1', { dialedByUs: false })).outputs)).toEqual(['Joined:b', 'Announce:b'])
    const second = t.connected(1, link('b', 'c2', { dialedByUs: true }))
    expect(second.kept).toBe(true)
    expect(brief(second.outputs)).toEqual([`Drop:c1:${ErrorCode.DuplicateConnection}`])
    expect(t.linkOf('b')).toBe('c2')
    // the other order of arrival: the newer one loses
    const u = table()
    u.connected(0, link('b', 'c2', { dialedByUs: true }))
    const late = u.connected(1, link('b', 'c1', { dialedByUs: false }))
    expect(late.kept).toBe(false)
    expect(brief(late.outputs)).toEqual([`Drop:c1:${ErrorCode.DuplicateConnection}`])
    expect(u.linkOf('b')).toBe('c2')
  })

  it('suspect: the peer closed our link as a duplicate; its other connection must come within the grace, else failed', () => {
    const t = table()
    t.connected(0, link('b', 'c1'))
    expect(brief(t.lost(100, 'b', 'c1', 'duplicate', true))).toEqual(['Timer:5100'])
    expect(t.stateOf('b')).toBe('suspect')
    // still reported alive, no event yet
    expect(t.alive()).toEqual(['a', 'b'])
    expect(t.members().find((m) => m.id === 'b')?.state).toBe('alive')
    expect(brief(t.tick(5_099, false))).toEqual([])
    expect(brief(t.tick(5_100, false))).toEqual(['Failed:b', 'Reconnect:b'])
  })

  it('suspect: the kept connection comes in time, no event at all', () => {
    const t = table()
    t.connected(0, link('b', 'c1'))
    t.lost(100, 'b', 'c1', 'duplicate', true)
    expect(brief(t.connected(200, link('b', 'c2', { dialedByUs: false })).outputs)).toEqual([])
    expect(t.stateOf('b')).toBe('alive')
    t.heard(5_500, 'b', 'c2')
    // past the suspect deadline (5100) and heard from within the failure timeout: nothing happens
    expect(brief(t.tick(6_000, false))).toEqual([])
  })

  it('another instance claiming a live member id is dropped: the live session stays (finding 6)', () => {
    const t = table()
    t.connected(0, link('b', 'c1'))
    t.heard(1_500, 'b', 'c1')
    const out = t.connected(2_000, link('b', 'c2', { instanceId: 'b-2' }))
    expect(out.kept).toBe(false)
    expect(brief(out.outputs)).toEqual([`Drop:c2:${ErrorCode.HandshakeRefused}`])
    expect(t.members().find((m) => m.id === 'b')?.instanceId).toBe('b-1')
    expect(t.linkOf('b')).toBe('c1')
  })

  it('once the old holder closed, the new instance joins', () => {
    const t = table()
    t.connected(0, link('b', 'c1'))
    t.lost(100, 'b', 'c1', 'closed', false)
    expect(t.connected(200, link('b', 'c2', { instanceId: 'b-2' })).kept).toBe(true)
    expect(t.members().find((m) => m.id === 'b')?.instanceId).toBe('b-2')
  })

  it('a restarted instance replaces an old one silent past the failure timeout: Failed (old) then Joined (new), no reconnect', () => {
    const t = table()
    t.connected(0, link('b', 'c1'))
    const out = t.connected(2_001, link('b', 'c2', { instanceId: 'b-2' }))
    expect(out.kept).toBe(true)
    expect(brief(out.outputs)).toEqual([`Drop:c1:${ErrorCode.PeerFailed}`, 'Failed:b', 'Joined:b', 'Announce:b'])
    expect(t.members().find((m) => m.id === 'b')?.instanceId).toBe('b-2')
  })

  it('a failed member that comes back joins again', () => {
    const t = table()
    t.connected(0, link('b', 'c1'))
    t.lost(1, 'b', 'c1', 'gone', false)
    expect(brief(t.connected(2, link('b', 'c3')).outputs)).toEqual(['Joined:b', 'Announce:b'])
  })

  it('leaving: every link is dropped with Leaving, self is left, later losses are no failures', () => {
    const t = table()
    t.connected(0, link('b', 'c1'))
    t.connected(0, link('c', 'c2'))
    expect(brief(t.leave(50))).toEqual([`Drop:c1:${ErrorCode.Leaving}`, `Drop:c2:${ErrorCode.Leaving}`])
    expect(t.members().find((m) => m.id === 'a')).toMatchObject({ state: 'left', since: 50 })
    expect(brief(t.lost(60, 'b', 'c1', 'closed', false))).toEqual([])
    expect(brief(t.tick(10_000, true))).toEqual([])
    expect(t.leave(70)).toEqual([])
  })
})
