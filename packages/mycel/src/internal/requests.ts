/**
 * The request table: every request this node waits an answer for (a remote get, an
 * acknowledged write, a handoff batch), by id, with one deadline structure for all of them.
 *
 * Ids are u32 on the wire. They count up from `first` and wrap from 2^32 - 1 to 1 (0 means "no
 * answer wanted"), skipping ids still waiting, so they never run out. Every request waits the
 * same time, so deadlines grow with insertion order: the table is one `Map` in insertion order,
 * and expiring requests is popping its front. (A wall clock stepping back delays expiry by the
 * step; it never expires one early.) The table also keeps, per peer, the bytes of the requests
 * waiting on it, for the per-peer byte budget.
 */
import { ChurnMap } from './churn.js'

/** The largest request id; the next one after it is 1. */
export const MAX_REQUEST_ID = 0xffffffff

export interface RequestBase {
  readonly id: number
  readonly peer: string
  readonly deadline: number
  /** Bytes charged to the peer's budget while the request waits. */
  readonly bytes: number
}

export class RequestTable<R extends RequestBase> {
  private readonly byId = new ChurnMap<number, R>()
  private readonly bytesByPeer = new Map<string, number>()
  private next: number

  constructor(first = 1) {
    if (!Number.isInteger(first) || first < 1 || first > MAX_REQUEST_ID) throw new RangeError(`a first request id is from 1 to ${MAX_REQUEST_ID}, got ${first}`)
    this.next = first
  }

  /** A free id: the next one, wrapping after 2^32 - 1 and skipping ids in use. */
  allocate(): number {
    if (this.byId.size >= MAX_REQUEST_ID) throw new RangeError('every request id is in use')
    for (;;) {
      const id = this.next
      this.next = id >= MAX_REQUEST_ID ? 1 : id + 1
      if (!this.byId.has(id)) return id
    }
  }

  add(request: R): R {
    this.byId.set(request.id, request)
    this.bytesByPeer.set(request.peer, (this.bytesByPeer.get(request.peer) ?? 0) + request.bytes)
    return request
  }

  get(id: number): R | undefined {
    return this.byId.get(id)
  }

  /** Removes and returns the request (undefined when it already ended). */
  take(id: number): R | undefined {
    const request = this.byId.get(id)
    if (request === undefined) return undefined
    this.byId.delete(id)
    const left = (this.bytesByPeer.get(request.peer) ?? 0) - request.bytes
    if (left <= 0) this.bytesByPeer.delete(request.peer)
    else this.bytesByPeer.set(request.peer, left)
    return request
  }

  /** Removes and returns the requests whose deadline passed. */
  expire(now: number): Array<R> {
    const out: Array<R> = []
    for (const request of this.byId.values()) {
      if (request.deadline > now) break
      out.push(request)
    }
    for (const request of out) this.take(request.id)
    return out
  }

  /** The earliest deadline, if any request waits. */
  nextDeadline(): number | undefined {
    // no iterator built when nothing waits (asked after every operation)
    if (this.byId.size === 0) return undefined
    for (const request of this.byId.values()) return request.deadline
    return undefined
  }

  /** Removes and returns the requests matching `f`. */
  takeWhere(f: (request: R) => boolean): Array<R> {
    const out: Array<R> = []
    for (const request of this.byId.values()) if (f(request)) out.push(request)
    for (const request of out) this.take(request.id)
    return out
  }

  /** Bytes of the requests waiting on `peer`. */
  bytesFor(peer: string): number {
    return this.bytesByPeer.get(peer) ?? 0
  }

  get size(): number {
    return this.byId.size
  }

  /** The id the next `allocate` tries first. */
  get nextId(): number {
    return this.next
  }
}
