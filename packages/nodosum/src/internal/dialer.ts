/**
 * Who to dial and when. Pure and synchronous: time comes in as `now`, and the outputs are
 * dials to start and timers to set. It decides
 *
 * - whether a dial may start (not ourselves, not leaving, not already dialing that address);
 * - which seeds to dial after discovery resolved them, and when to resolve them again;
 * - which members heard of through gossip to dial: of two nodes that learn of each other,
 *   the smaller id dials at once, the other only if no connection came within
 *   `lateDialMs` (halves the handshakes while a cluster forms);
 * - reconnects of a failed member: first after `initialMs`, then after each failed attempt
 *   with the delay doubled up to `maxMs`, until `giveUpMs` have passed since the failure.
 *
 * Timers carry a key; a timer that fires after its reason went away (the member came back,
 * the node is leaving) does nothing, so the shell never has to cancel one.
 */
import type { ControlMessage } from '@mycorrizal/wire'
import { type Address, formatAddress } from '../Transport.js'

export interface DialerOptions {
  readonly selfId: string
  /** Addresses that are this node (advertised and bound). */
  readonly selfAddresses: ReadonlyArray<Address>
  /** No cluster: nothing is ever dialed again. */
  readonly single: boolean
  readonly reconnect: { readonly initialMs: number; readonly maxMs: number; readonly giveUpMs: number }
  readonly lateDialMs: number
  readonly discoveryIntervalMs: number
  /**
   * Dials that gossip may start per second (default 64: a 100-node mesh forms without waiting on it); members beyond wait for the next
   * second. Gossip comes only from authenticated peers and names only members the sender holds
   * an authenticated session with (or itself), and this budget keeps a peer from turning the
   * node into a dialing reflector.
   */
  readonly gossipDialsPerSecond?: number
}

/** Members waiting for gossip dial budget, at most (more are dropped: gossip names them again). */
const MAX_DEFERRED_DIALS = 1024

/** What a timer is for. */
export type TimerKey =
  | { readonly _tag: 'Reconnect'; readonly id: string; readonly generation: number }
  | { readonly _tag: 'LateDial'; readonly member: ControlMessage.MemberInfo }
  /** A gossip dial over the budget, tried again in the next second. */
  | { readonly _tag: 'DeferredDial'; readonly member: ControlMessage.MemberInfo }

export type Output =
  /** Dial this address; report the end with `dialEnded`. `reconnect` names the member a reconnect is for. */
  | { readonly _tag: 'Dial'; readonly address: Address; readonly reconnect: string | undefined }
  | { readonly _tag: 'Timer'; readonly at: number; readonly key: TimerKey }
  /** Reconnecting to this member stopped after `giveUpMs`. */
  | { readonly _tag: 'GaveUp'; readonly id: string }

/** Why a dial may not start. */
export type DialRefusal = 'Self' | 'Leaving' | 'AlreadyDialing'

/** What the dialer asks about the membership (read-only). */
export interface MembershipView {
  /** Linked to this instance (or, without an instance, to any instance) of the member. */
  readonly isLinked: (id: string, instanceId?: string) => boolean
  readonly isLeft: (id: string) => boolean
  readonly addressOf: (id: string) => Address | undefined
}

interface Reconnect {
  readonly generation: number
  readonly startedAt: number
  address: Address
  attempt: number
}

export class Dialer {
  private readonly self = new Set<string>()
  private readonly dialing = new Set<string>()
  private readonly reconnects = new Map<string, Reconnect>()
  private generation = 0
  private leaving = false
  private gossipWindow = -1
  private gossipDials = 0
  private readonly deferred = new Set<string>()

  constructor(readonly options: DialerOptions) {
    for (const a of options.selfAddresses) this.self.add(formatAddress(a))
  }

  isSelf(address: Address): boolean {
    return this.self.has(formatAddress(address))
  }

  isDialing(address: Address): boolean {
    return this.dialing.has(formatAddress(address))
  }

  isReconnecting(id: string): boolean {
    return this.reconnects.has(id)
  }

  /** A dial is about to start: refused, or recorded as in flight until `dialEnded`. */
  dialStarting(address: Address): DialRefusal | undefined {
    const key = formatAddress(address)
    if (this.self.has(key)) return 'Self'
    if (this.leaving) return 'Leaving'
    if (this.dialing.has(key)) return 'AlreadyDialing'
    this.dialing.add(key)
    return undefined
  }

  /**
   * A dial ended. `selfConnection`: the peer turned out to be this node (an address we did
   * not know as ours). A failed reconnect attempt is retried after the backoff.
   */
  dialEnded(now: number, address: Address, result: { readonly ok: boolean; readonly selfConnection: boolean; readonly reconnect: string | undefined }): Array<Output> {
    this.dialing.delete(formatAddress(address))
    if (result.selfConnection) this.self.add(formatAddress(address))
    const id = result.reconnect
    if (id === undefined) return []
    if (result.ok) {
      this.reconnects.delete(id)
      return []
    }
    return this.retry(now, id)
  }

  /** A reconnect attempt failed (or could not start): try again after the backoff, or give up. */
  retry(now: number, id: string): Array<Output> {
    const entry = this.reconnects.get(id)
    if (entry === undefined) return []
    const { initialMs, maxMs, giveUpMs } = this.options.reconnect
    const delay = Math.min(initialMs * 2 ** entry.attempt, maxMs)
    entry.attempt++
    if (now - entry.startedAt + delay > giveUpMs) {
      this.reconnects.delete(id)
      return [{ _tag: 'GaveUp', id }]
    }
    return [{ _tag: 'Timer', at: now + delay, key: { _tag: 'Reconnect', id, generation: entry.generation } }]
  }

  /** Discovery resolved the seeds: dial those not ours, not linked and not in flight. Returns when to resolve again. */
  discovered(now: number, seeds: ReadonlyArray<Address>, linkedAddresses: ReadonlySet<string>): { readonly dial: Array<Output>; readonly next: number } {
    const dial: Array<Output> = []
    if (!this.leaving) {
      for (const address of seeds) {
        const key = formatAddress(address)
        if (!this.self.has(key) && !this.dialing.has(key) && !linkedAddresses.has(key)) dial.push({ _tag: 'Dial', address, reconnect: undefined })
      }
    }
    return { dial, next: now + this.options.discoveryIntervalMs }
  }

  /** Members heard of through gossip. */
  learned(now: number, members: ReadonlyArray<ControlMessage.MemberInfo>, view: MembershipView): Array<Output> {
    const outputs: Array<Output> = []
    if (this.leaving) return outputs
    for (const member of members) {
      if (member.nodeId === this.options.selfId || this.knows(member, view)) continue
      if (this.options.selfId < member.nodeId) {
        const dial = this.gossipDial(now, member)
        if (dial !== undefined) outputs.push(dial)
      } else outputs.push({ _tag: 'Timer', at: now + this.options.lateDialMs, key: { _tag: 'LateDial', member } })
    }
    return outputs
  }

  /** A member failed: dial it again after `initialMs`, unless a reconnect is already running. */
  reconnect(now: number, id: string, address: Address): Array<Output> {
    if (this.options.single || this.leaving || this.reconnects.has(id)) return []
    const generation = ++this.generation
    this.reconnects.set(id, { generation, startedAt: now, address, attempt: 0 })
    return [{ _tag: 'Timer', at: now + this.options.reconnect.initialMs, key: { _tag: 'Reconnect', id, generation } }]
  }

  /** The member is linked again: its reconnect (if any) ends. */
  linked(id: string): void {
    this.reconnects.delete(id)
  }

  /** A timer set earlier fired. */
  fire(now: number, key: TimerKey, view: MembershipView): Array<Output> {
    if (this.leaving) return []
    if (key._tag === 'LateDial' || key._tag === 'DeferredDial') {
      if (key._tag === 'DeferredDial') this.deferred.delete(formatAddress({ host: key.member.host, port: key.member.port }))
      if (this.knows(key.member, view)) return []
      const dial = this.gossipDial(now, key.member)
      return dial === undefined ? [] : [dial]
    }
    const entry = this.reconnects.get(key.id)
    if (entry === undefined || entry.generation !== key.generation) return []
    if (view.isLinked(key.id) || view.isLeft(key.id)) {
      this.reconnects.delete(key.id)
      return []
    }
    entry.address = view.addressOf(key.id) ?? entry.address
    return [{ _tag: 'Dial', address: entry.address, reconnect: key.id }]
  }

  /** This node leaves: nothing is dialed from now on. */
  leave(): void {
    this.leaving = true
    this.reconnects.clear()
  }

  /** A dial because gossip named the member: within this second's budget, else deferred to the next second (once per address, bounded). */
  private gossipDial(now: number, member: ControlMessage.MemberInfo): Output | undefined {
    const window = Math.floor(now / 1000)
    if (window !== this.gossipWindow) {
      this.gossipWindow = window
      this.gossipDials = 0
    }
    const address = { host: member.host, port: member.port }
    if (this.gossipDials < (this.options.gossipDialsPerSecond ?? 64)) {
      this.gossipDials++
      return { _tag: 'Dial', address, reconnect: undefined }
    }
    const key = formatAddress(address)
    const at = (window + 1) * 1000
    if (this.deferred.has(key) || this.deferred.size >= MAX_DEFERRED_DIALS) return undefined
    this.deferred.add(key)
    return { _tag: 'Timer', at, key: { _tag: 'DeferredDial', member } }
  }

  private knows(member: ControlMessage.MemberInfo, view: MembershipView): boolean {
    return view.isLinked(member.nodeId, member.instanceId) || this.dialing.has(formatAddress({ host: member.host, port: member.port }))
  }
}
