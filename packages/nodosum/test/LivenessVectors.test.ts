/**
 * `docs/protocol.md` §7 (membership and liveness) and §8 (admission and limits) as test
 * vectors, stored in `vectors/liveness.json`:
 * - §7 scenarios: timed inputs (a connection joins, a control message is heard, the heartbeat
 *   tick, Leave, a lost connection, gossip) and what the node does (close codes, events,
 *   Members announcements, Pings, dials and their times), replayed on the membership and dialer
 *   cores with the default settings;
 * - §8 limits: each limit's default as the code has it, and the document's table must show it.
 * `WRITE_VECTORS=1 npx vitest run test/LivenessVectors.test.ts` rewrites the file (only after a
 * deliberate change of the rules).
 */
import { describe, expect, it } from '@effect/vitest'
import { Duration } from 'effect'
import { readFileSync, writeFileSync } from 'node:fs'
import { Dialer } from '../src/internal/dialer.js'
import { MembershipTable, type Output } from '../src/internal/membership.js'
import { CONTROL_MAX_MESSAGE_SIZE, LATE_DIAL_HEARTBEATS, LEAVE_GRACE_MS, REFUSAL_GRACE_MS } from '../src/internal/protocol.js'
import { admissionDefaults } from '../src/internal/quic/endpoint.js'
import { NodosumConfig } from '../src/index.js'
import * as TransportConfig from '../src/TransportConfig.js'

const file = new URL('./vectors/liveness.json', import.meta.url)
const doc = readFileSync(new URL('../../../docs/protocol.md', import.meta.url), 'utf8')

const ms = Duration.toMillis
const settings = NodosumConfig.defaults
const heartbeatMs = ms(settings.heartbeatInterval)
const failureMs = ms(settings.failureTimeout)

/** One input of a scenario, at a time in ms. */
type Step =
  | { readonly at: number; readonly input: 'connected'; readonly id: string; readonly instance: string; readonly connection: string; readonly dialedBySelf: boolean }
  | { readonly at: number; readonly input: 'heard'; readonly id: string; readonly connection: string; readonly message: string }
  | { readonly at: number; readonly input: 'heartbeatTick' }
  | { readonly at: number; readonly input: 'leaveReceived'; readonly id: string; readonly connection: string }
  | { readonly at: number; readonly input: 'connectionClosed'; readonly id: string; readonly connection: string }
  | { readonly at: number; readonly input: 'membersReceived'; readonly members: ReadonlyArray<string> }

/** What the node does, in the document's words. */
const describeOutput = (o: Output): string => {
  switch (o._tag) {
    case 'Event':
      return `event ${o.event._tag} ${o.event.member.id} (${o.event.member.instanceId})`
    case 'Drop':
      return `close ${o.connectionId} with 0x${o.code.toString(16)}`
    case 'Reconnect':
      return `redial ${o.id} with backoff`
    case 'Announce':
      return `send Members [${o.member.nodeId}] to every other peer`
    case 'Ping':
      return `send Ping to ${o.id}`
    case 'Timer':
      return `check again at ${o.at}`
  }
}

const address = (id: string) => ({ host: '10.0.0.1', port: 7000 + id.charCodeAt(0) })

/** Replays one scenario on the cores of node `self` (defaults), each step's outputs in order. */
const replay = (self: string, steps: ReadonlyArray<Step>) => {
  const table = new MembershipTable({ self: { id: self, instanceId: `${self}-1`, address: address(self) }, failureTimeoutMs: failureMs, suspectTimeoutMs: ms(TransportConfig.defaults.handshakeTimeout), now: 0 })
  const dialer = new Dialer({
    selfId: self,
    selfAddresses: [address(self)],
    single: false,
    reconnect: { initialMs: ms(settings.reconnectInitial), maxMs: ms(settings.reconnectMax), giveUpMs: ms(settings.reconnectGiveUp) },
    lateDialMs: heartbeatMs * LATE_DIAL_HEARTBEATS,
    discoveryIntervalMs: ms(settings.discoveryInterval)
  })
  const view = { isLinked: (id: string, instance?: string) => (instance === undefined ? table.linkOf(id) !== undefined : table.isLinked(id, instance)), isLeft: () => false, addressOf: (id: string) => table.addressOf(id) }
  return steps.map((step) => {
    let out: Array<string>
    switch (step.input) {
      case 'connected':
        out = table.connected(step.at, { id: step.id, instanceId: step.instance, address: address(step.id), connectionId: step.connection, dialedByUs: step.dialedBySelf }).outputs.map(describeOutput)
        break
      case 'heard':
        table.heard(step.at, step.id, step.connection)
        out = []
        break
      case 'heartbeatTick':
        out = table.tick(step.at, true).map(describeOutput)
        break
      case 'leaveReceived':
        out = table.left(step.at, step.id, step.connection).map(describeOutput)
        break
      case 'connectionClosed':
        out = table.lost(step.at, step.id, step.connection, 'connection closed', false).map(describeOutput)
        break
      case 'membersReceived':
        out = dialer
          .learned(
            step.at,
            step.members.map((id) => ({ nodeId: id, instanceId: `${id}-1`, ...address(id) })),
            view
          )
          .map((o) => (o._tag === 'Dial' ? `dial ${o.address.host}:${o.address.port} now` : o._tag === 'Timer' ? `dial ${o.key._tag === 'LateDial' ? o.key.member.nodeId : '?'} at ${o.at} unless it dialed us` : o._tag))
        break
    }
    return { ...step, then: out }
  })
}

const connected = (at: number, id: string, instance: string, connection: string, dialedBySelf: boolean): Step => ({ at, input: 'connected', id, instance, connection, dialedBySelf })
const heard = (at: number, id: string, connection: string, message: string): Step => ({ at, input: 'heard', id, connection, message })
const tick = (at: number): Step => ({ at, input: 'heartbeatTick' })

const scenarios: ReadonlyArray<{ readonly name: string; readonly self: string; readonly steps: ReadonlyArray<Step> }> = [
  {
    name: 'a member joins: Joined, and every other peer gets Members with that one member',
    self: 'a',
    steps: [connected(0, 'b', 'b-1', 'c1', true)]
  },
  {
    name: `failure: no control message for more than failureTimeout (${failureMs} ms), checked at every heartbeat (${heartbeatMs} ms); a Pong counts`,
    self: 'a',
    steps: [
      connected(0, 'b', 'b-1', 'c1', false),
      tick(heartbeatMs),
      heard(2 * heartbeatMs, 'b', 'c1', 'Pong'),
      tick(2 * heartbeatMs + failureMs),
      tick(3 * heartbeatMs + failureMs)
    ]
  },
  {
    name: 'Leave: closed with 0x112, reported left, not redialed',
    self: 'a',
    steps: [connected(0, 'b', 'b-1', 'c1', false), { at: 100, input: 'leaveReceived', id: 'b', connection: 'c1' }]
  },
  {
    name: 'the connection closes without Leave: failed at once (its side closed with 0x113), redialed',
    self: 'a',
    steps: [connected(0, 'b', 'b-1', 'c1', false), { at: 100, input: 'connectionClosed', id: 'b', connection: 'c1' }]
  },
  {
    name: 'simultaneous dial between a and b: both keep the connection the smaller id (a) dialed, the other is closed with 0x111',
    self: 'a',
    steps: [connected(0, 'b', 'b-1', 'b-dialed', false), connected(5, 'b', 'b-1', 'a-dialed', true)]
  },
  {
    name: 'the same, seen from b',
    self: 'b',
    steps: [connected(0, 'a', 'a-1', 'b-dialed', true), connected(5, 'a', 'a-1', 'a-dialed', false)]
  },
  {
    name: `another instance claims a live member's id: closed with 0x110; once the holder was silent past failureTimeout, the newcomer replaces it`,
    self: 'a',
    steps: [
      connected(0, 'b', 'b-1', 'c1', false),
      heard(400, 'b', 'c1', 'Ping'),
      connected(400 + failureMs, 'b', 'b-2', 'c2', false),
      connected(401 + failureMs, 'b', 'b-3', 'c3', false)
    ]
  },
  {
    name: `gossip: of two nodes that learn of each other the smaller id dials at once, the larger after ${LATE_DIAL_HEARTBEATS} heartbeat intervals`,
    self: 'm',
    steps: [{ at: 1000, input: 'membersReceived', members: ['m', 'c', 'x'] }]
  }
]

/** §8: each limit's default as the code has it, and how docs/protocol.md writes it. */
const t = TransportConfig.defaults
const KiB = 1024
const limits = [
  { limit: 'maxPendingHandshakes', default: admissionDefaults.maxPendingHandshakes, doc: '256' },
  { limit: 'retryThreshold', default: admissionDefaults.retryThreshold, doc: '16' },
  { limit: 'maxHandshakesPerSource', default: admissionDefaults.maxHandshakesPerSource, doc: '8' },
  { limit: 'maxNewConnectionsPerSource', default: admissionDefaults.maxNewConnectionsPerSource, doc: '64' },
  { limit: 'maxUnauthenticatedConnections', default: t.maxUnauthenticatedConnections, doc: '256' },
  { limit: 'maxUnauthenticatedBytes', default: t.maxUnauthenticatedBytes, doc: `${t.maxUnauthenticatedBytes / KiB} KiB` },
  { limit: 'maxStreams', default: t.maxStreams, doc: '100' },
  { limit: 'control message payload (bytes)', default: CONTROL_MAX_MESSAGE_SIZE, doc: '1 MiB' },
  { limit: 'handshakeTimeout (ms)', default: ms(t.handshakeTimeout), doc: `${ms(t.handshakeTimeout) / 1000} s` },
  { limit: 'QUIC idle timeout (ms)', default: ms(t.idleTimeout), doc: `${ms(t.idleTimeout) / 1000} s` }
] as const

const timings = {
  heartbeatIntervalMs: heartbeatMs,
  failureTimeoutMs: failureMs,
  lateDialHeartbeats: LATE_DIAL_HEARTBEATS,
  reconnectInitialMs: ms(settings.reconnectInitial),
  reconnectMaxMs: ms(settings.reconnectMax),
  reconnectGiveUpMs: ms(settings.reconnectGiveUp),
  leaveGraceMs: LEAVE_GRACE_MS,
  refusalGraceMs: REFUSAL_GRACE_MS
}

const computed = {
  note: 'docs/protocol.md §7 (scenarios replayed on the membership and dialer cores, default settings; times in ms) and §8 (limit defaults).',
  timings,
  scenarios: scenarios.map((s) => ({ name: s.name, self: s.self, steps: replay(s.self, s.steps) })),
  limits
}

if (process.env['WRITE_VECTORS'] === '1') writeFileSync(file, `${JSON.stringify(computed, null, 2)}\n`)
const stored = JSON.parse(readFileSync(file, 'utf8')) as typeof computed

/** The lines of one section of the document. */
const section = (n: number) => doc.slice(doc.indexOf(`## ${n}.`), doc.indexOf(`## ${n + 1}.`))

describe('liveness and admission vectors (vectors/liveness.json)', () => {
  it('the stored file is what the cores compute', () => {
    expect(stored).toEqual(JSON.parse(JSON.stringify(computed)))
  })

  it('the scenarios show the close codes and timings of §7', () => {
    const all = stored.scenarios.flatMap((s) => s.steps.flatMap((st) => st.then))
    for (const code of ['0x110', '0x111', '0x112', '0x113']) expect(all.some((o) => o.includes(code))).toBe(true)
    const failure = stored.scenarios[1]!.steps
    // silence of exactly failureTimeout is not yet a failure; one heartbeat later it is
    expect(failure[3]!.then).toEqual(['send Ping to b'])
    expect(failure[4]!.then).toContain('close c1 with 0x113')
    const s7 = section(7)
    expect(s7).toContain(`default\n  500 ms`.replace('500', String(heartbeatMs)))
    expect(s7).toContain(`(default ${failureMs} ms)`)
    expect(s7).toContain(`${timings.reconnectInitialMs} ms doubling to ${timings.reconnectMaxMs / 1000} s, for up to ${timings.reconnectGiveUpMs / 60_000} minutes`)
    expect(s7).toContain(`waits ${LEAVE_GRACE_MS} ms`)
  })

  it('§8 of docs/protocol.md shows every limit with its default', () => {
    const s8 = section(8)
    for (const l of stored.limits) {
      const row = s8.split('\n').find((line) => line.startsWith('|') && (line.includes(`\`${l.limit}\``) || line.includes(l.limit.split(' (')[0]!)))
      expect(row, l.limit).toBeDefined()
      expect(row!.split('|')[2]!.trim(), l.limit).toBe(l.doc)
    }
  })
})
