// the `native` subpath only: the package's main entry loads its whole high-level API (~30 MB)
import * as native from '@matrixai/quic/native/index.js'
import { TransportError } from '../../NodosumError.js'
import { isStreamPriority, type StreamHandler, type StreamPriority, type TransportConnection, type TransportLimits, type TransportStream } from '../../Transport.js'
import { Outbox } from '../outbox.js'

const quiche = native.quiche

/** Reset code a stream gets when a handler of ours throws. */
export const HANDLER_FAILED = 0x0fff
/** Bytes read from one stream per event-loop turn before the others get their turn. */
export const READ_BUDGET = 256 * 1024
/**
 * Bytes read from each readable stream in a turn's first pass: a small message (a request,
 * a heartbeat) is whole in it, and is delivered and answered before any stream's bulk.
 */
export const FIRST_READ = 16 * 1024

/** Parses quiche's thrown strings such as `StreamReset(42)`. */
export const errorCode = (e: unknown): number | undefined => {
  const match = /\((\d+)\)/.exec(String(e))
  return match === null ? undefined : Number(match[1])
}

/** Handler events are delivered through this, so a throwing handler resets its own stream only. */
export const guard = (stream: TransportStream | undefined, f: () => void): void => {
  try {
    f()
  } catch {
    if (stream !== undefined && !stream.isClosed()) stream.reset(HANDLER_FAILED)
  }
}

/** What a stream needs of its connection (`connection.ts` implements it). */
export interface StreamHost extends TransportConnection {
  readonly qc: native.Connection
  readonly limits: TransportLimits
  /** Shared read buffer: `onData` gets views into it, valid only during the call. */
  readonly readBuf: Buffer
  /** Flush this connection at the end of the event-loop turn. */
  markDirty(): void
  /** Read this stream (with the others) at the end of the event-loop turn, though no packet came. */
  wantRead(): void
  /** This stream's urgency changed. */
  reorder(): void
  /** Call `pump` once quiche has capacity for this stream again. */
  block(s: QuicStream): void
  /** True when a stream more urgent than `urgency` has bytes waiting for room in quiche. */
  moreUrgentWaiting(urgency: number): boolean
  dropStream(s: QuicStream): void
}

/** One QUIC stream: writes go to quiche while it has capacity, the rest waits in the outbox. */
export class QuicStream implements TransportStream {
  private handler: StreamHandler | undefined
  private readonly out: Outbox
  private readDone = false
  private paused = false
  private closed = false

  constructor(
    readonly connection: StreamHost,
    readonly id: number,
    handler: StreamHandler | undefined
  ) {
    this.handler = handler
    this.out = new Outbox(connection.limits.writeHighWaterMark)
  }

  setHandler = (handler: StreamHandler): void => {
    this.handler = handler
    if (!this.paused) this.connection.wantRead()
  }

  /** The priority set on this side, if any (quiche's own default otherwise). */
  priority: StreamPriority | undefined

  /** Its urgency; a stream nobody set one for comes after every set one, as in quiche. */
  get urgency(): number {
    return this.priority === undefined ? 8 : this.priority.urgency
  }

  setPriority = (priority: StreamPriority): void => {
    if (!isStreamPriority(priority)) throw new RangeError('a stream priority is an urgency from 0 to 7 and a boolean incremental')
    this.priority = priority
    this.connection.reorder()
    if (this.closed) return
    try {
      this.connection.qc.streamPriority(this.id, priority.urgency, priority.incremental)
    } catch {
      // quiche refuses a stream it already collected (finished both ways): nothing left to order
    }
    this.connection.markDirty()
  }

  write = (chunk: Uint8Array, owned = false, onRelease?: () => void): boolean => {
    const out = this.out
    if (this.closed || out.finQueued) {
      onRelease?.()
      throw new TransportError({ reason: 'StreamClosed', message: `stream ${this.id} is closed` })
    }
    let offset = 0
    // straight into quiche unless bytes of a more urgent stream wait for room (they go first)
    if (out.isEmpty() && chunk.byteLength > 0 && !this.connection.moreUrgentWaiting(this.urgency)) {
      let n: number | null
      try {
        n = this.connection.qc.streamSend(this.id, chunk, false)
      } catch (e) {
        onRelease?.()
        this.peerStopped(e)
        throw new TransportError({ reason: 'StreamReset', message: `stream ${this.id}: ${String(e)}`, code: errorCode(e) })
      }
      offset = n ?? 0
      if (offset > 0) this.connection.markDirty()
    }
    if (offset < chunk.byteLength) {
      out.push(chunk, offset, owned, onRelease)
      this.connection.block(this)
      this.connection.markDirty()
    } else {
      onRelease?.()
    }
    return out.accepts()
  }

  writableLength = (): number => this.out.bytes

  /** Moves queued bytes into quiche as capacity allows; then FIN; then drain. */
  pump(): void {
    if (this.closed) return
    const qc = this.connection.qc
    const out = this.out
    while (!out.isEmpty()) {
      let n: number | null
      try {
        n = qc.streamSend(this.id, out.head(), false)
      } catch (e) {
        this.peerStopped(e)
        return
      }
      if (!out.consume(n ?? 0)) {
        this.connection.block(this)
        break
      }
    }
    this.connection.markDirty()
    if (out.finDue()) this.sendFin()
    if (out.drainDue()) {
      const handler = this.handler
      if (handler?.onDrain !== undefined) guard(this, handler.onDrain)
    }
  }

  private sendFin(): void {
    let r: number | null
    try {
      r = this.connection.qc.streamSend(this.id, new Uint8Array(0), true)
    } catch (e) {
      this.peerStopped(e)
      return
    }
    if (r === null) {
      this.connection.block(this)
      return
    }
    this.out.finSent = true
    this.connection.markDirty()
    this.maybeFinish()
  }

  end = (): void => {
    if (this.closed || this.out.finQueued) return
    this.out.finQueued = true
    if (this.out.isEmpty()) this.sendFin()
  }

  reset = (code: number): void => {
    if (this.closed) return
    const qc = this.connection.qc
    try {
      qc.streamShutdown(this.id, quiche.Shutdown.Write, code)
    } catch {
      // already finished
    }
    try {
      qc.streamShutdown(this.id, quiche.Shutdown.Read, code)
    } catch {
      // already finished
    }
    this.connection.markDirty()
    this.close(undefined)
  }

  pause = (): void => {
    this.paused = true
  }

  resume = (): void => {
    if (!this.paused) return
    this.paused = false
    this.connection.wantRead()
  }

  isClosed = (): boolean => this.closed

  /**
   * Reads what quiche holds for this stream, at most `budget` bytes (a small message is whole
   * in the first read), unless paused or unclaimed. True when bytes remain for a later read.
   */
  read(budget: number = READ_BUDGET): boolean {
    const handler = this.handler
    if (handler === undefined || this.paused || this.closed || this.readDone) return false
    const qc = this.connection.qc
    const full = this.connection.readBuf
    for (let i = 0; i < 10_000 && budget > 0 && !this.paused && !this.closed; i++) {
      const buf = budget < full.byteLength ? full.subarray(0, budget) : full
      let r: [number, boolean] | null
      try {
        r = qc.streamRecv(this.id, buf)
      } catch (e) {
        this.close(new TransportError({ reason: 'StreamReset', message: `stream ${this.id} reset by peer with code ${errorCode(e) ?? '?'}`, code: errorCode(e) }))
        return false
      }
      if (r === null) return false
      const [n, fin] = r
      budget -= n
      if (n > 0) guard(this, () => this.handler!.onData(buf.subarray(0, n)))
      if (fin && !this.closed) {
        this.readDone = true
        const h = this.handler
        if (h?.onEnd !== undefined) guard(this, h.onEnd)
        this.maybeFinish()
        return false
      }
      // quiche fills the buffer while it has contiguous bytes: a short read drained the stream
      // (asking again only to be told so costs a trip through the binding)
      if (n < buf.byteLength) return false
    }
    return !this.paused && !this.closed
  }

  peerStopped(e: unknown): void {
    this.close(new TransportError({ reason: 'StreamReset', message: `stream ${this.id} stopped by peer with code ${errorCode(e) ?? '?'}`, code: errorCode(e) }))
  }

  private maybeFinish(): void {
    if (!this.closed && this.out.finSent && this.readDone) this.close(undefined)
  }

  close(error: TransportError | undefined): void {
    if (this.closed) return
    this.closed = true
    this.out.clear()
    this.connection.dropStream(this)
    const handler = this.handler
    if (handler?.onClose !== undefined) guard(undefined, () => handler.onClose!(error))
  }
}
