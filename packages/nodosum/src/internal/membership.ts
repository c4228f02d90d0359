/**
 * The membership table: every member this node knows and the link (the connection that
 * finished its handshake) to each connected one. Pure and synchronous: time comes in as
 * `now`; the outputs say what the shell does — publish an event, close a connection, dial
 * again, tell the other peers, set a timer. Every transition is written here once:
 *
 * | from            | input                                   | to      | event  |
 * | --------------- | --------------------------------------- | ------- | ------ |
 * | (unknown)/failed/left | `connected` (a handshake kept)     | alive   | Joined |
 * | alive           | `connected`, another instance, old link heard within `failureTimeout` | alive (old kept) | — (newcomer dropped) |
 * | alive           | `connected`, another instance, old link silent past `failureTimeout` | alive | Failed (old), Joined (new) |
 * | alive           | `left` (the peer announced Leave)       | left    | Left   |
 * | alive           | `lost` (connection closed or failed)    | failed  | Failed |
 * | alive           | `lost` after losing a duplicate tie-break | suspect | —    |
 * | suspect         | `connected` (the kept connection)       | alive   | —      |
 * | suspect         | `tick` past its deadline                | failed  | Failed |
 * | alive           | `tick`: no control message for `failureTimeout` | failed | Failed |
 * | any             | `leave` (this node leaves)              | links dropped, no events |
 *
 * "Failed" is decided in one place (`fail`). A suspect member is still reported alive: it
 * only lost a duplicate connection and its other one is expected.
 *
 * A stalled node judges no one: when a tick comes more than two `tickIntervalMs` after the one
 * before, this node's own event loop was blocked meanwhile — and Node runs due timers before it
 * reads its sockets, so the heartbeats that arrived during the stall are not yet heard. That
 * tick fails no link and no suspect; the next one judges (a tick late again right after a
 * deferred one judges anyway, so a node late on every tick still fails a silent peer).
 */
import type { ControlMessage } from '@mycorrizal/wire'
import type { Member, MembershipEvent, MemberState } from '../Nodosum.js'
import { ErrorCode } from '../PeerStream.js'
import type { Address } from '../Transport.js'
import { keepNewer } from './handshake.js'

/** A member's state inside the table; `suspect` shows as `alive` outside. */
export type TableState = MemberState | 'suspect'

interface Record {
  readonly id: string
  readonly instanceId: string
  readonly address: Address
  state: TableState
  since: number
  /** While suspect: when it becomes failed. */
  deadline: number
}

/** A connection that finished its handshake. */
export interface LinkInfo {
  readonly id: string
  readonly instanceId: string
  readonly address: Address
  readonly connectionId: string
  readonly dialedByUs: boolean
}

interface Link extends LinkInfo {
  lastSeen: number
}

/** What the shell does after an input. */
export type Output =
  | { readonly _tag: 'Event'; readonly event: MembershipEvent }
  /** Close this connection with the code and forget it. */
  | { readonly _tag: 'Drop'; readonly id: string; readonly connectionId: string; readonly code: number; readonly reason: string }
  /** Dial this member again (it failed while we are running). */
  | { readonly _tag: 'Reconnect'; readonly id: string; readonly address: Address }
  /** Tell the other connected peers of this member, so the mesh closes without waiting for discovery. */
  | { readonly _tag: 'Announce'; readonly member: ControlMessage.MemberInfo }
  /** Send a heartbeat on this member's link. */
  | { readonly _tag: 'Ping'; readonly id: string }
  /** Call `tick` at this time (ms). */
  | { readonly _tag: 'Timer'; readonly at: number }

export interface MembershipOptions {
  readonly self: { readonly id: string; readonly instanceId: string; readonly address: Address }
  /** Silence on a link longer than this fails the member (ms). */
  readonly failureTimeoutMs: number
  /** How long a member that lost a duplicate connection waits for the kept one (ms). */
  readonly suspectTimeoutMs: number
  /**
   * How often the shell calls `tick` (the heartbeat interval, ms). Given, a tick later than
   * twice this after the one before is a stall of this node, and defers the verdict one tick.
   */
  readonly tickIntervalMs?: number
  readonly now: number
}

export class MembershipTable {
  private readonly records = new Map<string, Record>()
  private readonly links = new Map<string, Link>()
  private leaving = false
  private lastTick: number
  private deferred = false

  constructor(readonly options: MembershipOptions) {
    this.lastTick = options.now
    const self = options.self
    this.records.set(self.id, { ...self, state: 'alive', since: options.now, deadline: 0 })
  }

  /** Every member, self included, as the public API shows it. */
  members(): Array<Member> {
    return [...this.records.values()].map(toMember)
  }

  /** Ids of the alive members (suspects included), self included, sorted. */
  alive(): Array<string> {
    const ids: Array<string> = []
    for (const r of this.records.values()) if (r.state === 'alive' || r.state === 'suspect') ids.push(r.id)
    return ids.sort()
  }

  /** The state as the table holds it (`suspect` included); undefined for an unknown id. */
  stateOf(id: string): TableState | undefined {
    return this.records.get(id)?.state
  }

  addressOf(id: string): Address | undefined {
    return this.records.get(id)?.address
  }

  /** The connection id of the member's link, if connected. */
  linkOf(id: string): string | undefined {
    return this.links.get(id)?.connectionId
  }

  isLeaving(): boolean {
    return this.leaving
  }

  /** Alive members as the control stream describes them (for `Members`). */
  memberInfos(): Array<ControlMessage.MemberInfo> {
    const infos: Array<ControlMessage.MemberInfo> = []
    for (const r of this.records.values()) {
      if (r.state === 'alive' || r.state === 'suspect') infos.push({ nodeId: r.id, instanceId: r.instanceId, host: r.address.host, port: r.address.port })
    }
    return infos
  }

  /** True when this instance of the member is linked. */
  isLinked(id: string, instanceId: string): boolean {
    return this.links.get(id)?.instanceId === instanceId
  }

  counts(): { alive: number; failed: number; left: number } {
    const counts = { alive: 0, failed: 0, left: 0 }
    for (const r of this.records.values()) counts[publicState(r.state)]++
    return counts
  }

  /**
   * A handshake finished on a connection. Returns whether the table keeps it (`false`: it
   * lost a simultaneous-dial tie-break and is dropped).
   */
  connected(now: number, info: LinkInfo): { readonly kept: boolean; readonly outputs: Array<Output> } {
    const outputs: Array<Output> = []
    const existing = this.links.get(info.id)
    if (existing !== undefined) {
      if (existing.instanceId === info.instanceId) {
        const keep = keepNewer(this.options.self.id, info.id, existing, info)
        const loser = keep ? existing : info
        outputs.push({ _tag: 'Drop', id: info.id, connectionId: loser.connectionId, code: ErrorCode.DuplicateConnection, reason: 'duplicate connection' })
        if (!keep) return { kept: false, outputs }
        this.links.set(info.id, { ...info, lastSeen: now })
        return { kept: true, outputs }
      }
      // another instance claims a live member's id: the live session stays; the newcomer is
      // taken only once the old holder is proven gone (silent past failureTimeout, or its
      // connection closed, which removes its link)
      if (now - existing.lastSeen <= this.options.failureTimeoutMs) {
        outputs.push({ _tag: 'Drop', id: info.id, connectionId: info.connectionId, code: ErrorCode.HandshakeRefused, reason: 'node id held by a live member' })
        return { kept: false, outputs }
      }
      this.fail(now, info.id, 'replaced by a restarted instance', outputs, false)
    }
    this.links.set(info.id, { ...info, lastSeen: now })
    const record = this.records.get(info.id)
    const wasUp = record !== undefined && record.instanceId === info.instanceId && (record.state === 'alive' || record.state === 'suspect')
    const next: Record = { id: info.id, instanceId: info.instanceId, address: info.address, state: 'alive', since: now, deadline: 0 }
    this.records.set(info.id, next)
    if (!wasUp) {
      outputs.push({ _tag: 'Event', event: { _tag: 'Joined', member: toMember(next) } })
      outputs.push({ _tag: 'Announce', member: { nodeId: info.id, instanceId: info.instanceId, host: info.address.host, port: info.address.port } })
    }
    return { kept: true, outputs }
  }

  /** A control message arrived on the member's link: it is alive. */
  heard(now: number, id: string, connectionId: string): void {
    const link = this.links.get(id)
    if (link !== undefined && link.connectionId === connectionId) link.lastSeen = now
  }

  /** The member announced `Leave` on this connection. */
  left(now: number, id: string, connectionId: string): Array<Output> {
    const link = this.links.get(id)
    if (link === undefined || link.connectionId !== connectionId) return []
    this.links.delete(id)
    const outputs: Array<Output> = [{ _tag: 'Drop', id, connectionId, code: ErrorCode.Leaving, reason: 'announced leave' }]
    const record = this.records.get(id)
    if (record !== undefined && record.instanceId === link.instanceId) {
      this.transition(record, 'left', now)
      outputs.push({ _tag: 'Event', event: { _tag: 'Left', member: toMember(record) } })
    }
    return outputs
  }

  /**
   * The connection closed or its control stream ended. `duplicate`: the peer closed it as
   * the loser of a simultaneous dial — it keeps the other connection, which is expected here.
   */
  lost(now: number, id: string, connectionId: string, reason: string, duplicate: boolean): Array<Output> {
    const link = this.links.get(id)
    if (link === undefined || link.connectionId !== connectionId) return []
    const outputs: Array<Output> = []
    if (this.leaving) {
      // while leaving, peers closing their side is the expected end, not a failure
      this.links.delete(id)
      return outputs
    }
    if (duplicate) {
      this.links.delete(id)
      const record = this.records.get(id)
      if (record !== undefined && record.instanceId === link.instanceId && record.state === 'alive') {
        record.state = 'suspect'
        record.deadline = now + this.options.suspectTimeoutMs
        outputs.push({ _tag: 'Timer', at: record.deadline })
      }
      return outputs
    }
    this.fail(now, id, reason, outputs, true)
    return outputs
  }

  /**
   * The clock moved (heartbeat or timer): a silent link or an expired suspect fails; every
   * remaining link gets a heartbeat when `ping` is set. A tick right after a stall of this
   * node fails no one (see the module's comment).
   */
  tick(now: number, ping: boolean): Array<Output> {
    const outputs: Array<Output> = []
    const interval = this.options.tickIntervalMs
    const stalled = interval !== undefined && !this.deferred && now - this.lastTick > 2 * interval
    this.lastTick = now
    this.deferred = stalled
    if (this.leaving) return outputs
    for (const link of [...this.links.values()]) {
      const silence = now - link.lastSeen
      if (silence > this.options.failureTimeoutMs && !stalled) this.fail(now, link.id, `no heartbeat for ${silence} ms`, outputs, true)
      else if (ping) outputs.push({ _tag: 'Ping', id: link.id })
    }
    for (const record of this.records.values()) {
      if (!stalled && record.state === 'suspect' && now >= record.deadline && !this.links.has(record.id)) {
        this.fail(now, record.id, 'duplicate connection closed and no other came', outputs, true)
      }
    }
    return outputs
  }

  /** This node leaves: every link is dropped (after the shell sent `Leave`), no member fails from now on. */
  leave(now: number): Array<Extract<Output, { _tag: 'Drop' }>> {
    if (this.leaving) return []
    this.leaving = true
    const outputs: Array<Extract<Output, { _tag: 'Drop' }>> = []
    for (const link of this.links.values()) outputs.push({ _tag: 'Drop', id: link.id, connectionId: link.connectionId, code: ErrorCode.Leaving, reason: 'leaving' })
    this.links.clear()
    this.transition(this.records.get(this.options.self.id)!, 'left', now)
    return outputs
  }

  /** The one place a member becomes failed. */
  private fail(now: number, id: string, reason: string, outputs: Array<Output>, reconnect: boolean): void {
    const link = this.links.get(id)
    const record = this.records.get(id)
    if (link !== undefined) {
      this.links.delete(id)
      outputs.push({ _tag: 'Drop', id, connectionId: link.connectionId, code: ErrorCode.PeerFailed, reason })
    }
    const instanceId = link?.instanceId ?? record?.instanceId
    if (record !== undefined && record.instanceId === instanceId && record.state !== 'failed' && record.state !== 'left') {
      this.transition(record, 'failed', now)
      outputs.push({ _tag: 'Event', event: { _tag: 'Failed', member: toMember(record), reason } })
    }
    const address = link?.address ?? record?.address
    if (reconnect && !this.leaving && address !== undefined) outputs.push({ _tag: 'Reconnect', id, address })
  }

  private transition(record: Record, state: TableState, now: number): void {
    record.state = state
    record.since = now
    record.deadline = 0
  }
}

const publicState = (state: TableState): MemberState => (state === 'suspect' ? 'alive' : state)

const toMember = (r: Record): Member => ({ id: r.id, address: r.address, state: publicState(r.state), instanceId: r.instanceId, since: r.since })
