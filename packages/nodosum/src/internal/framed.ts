import { Decoder, Frame, StreamInit, type WireError } from '@mycorrizal/wire'
import { copyBytes } from './bytes.js'
import type { TransportError } from '../NodosumError.js'
import { ErrorCode, type PeerStream, type PeerStreamError, type PeerStreamHandler } from '../PeerStream.js'
import type { StreamPriority, TransportStream } from '../Transport.js'

/** Bytes framed into one transport write at most. */
const BATCH_BYTES = 64 * 1024

const wireError = (e: WireError): PeerStreamError => ({ _tag: 'WireError', reason: e.reason, message: e.message })

/**
 * A `PeerStream` over a transport stream. Messages arriving before a handler is set, or
 * while paused, stay in the transport (its flow control holds the sender back).
 */
export class FramedStream implements PeerStream {
  private handler: PeerStreamHandler | undefined
  /** Framed messages waiting for the next flush. */
  private readonly batch = new Uint8Array(BATCH_BYTES)
  private batchLen = 0
  private flushQueued = false
  /** What the transport said at the last write: false until it drains. */
  private writable = true
  /** Messages of the chunk that carried STREAM_INIT, when nobody took the stream at once. */
  private readonly pending: Array<Uint8Array> = []
  private paused = false
  private closed = false
  private readonly decoder: Decoder.Decoder
  /** Set while an incoming stream waits for its STREAM_INIT. */
  private onInit: ((init: StreamInit.StreamInit, self: FramedStream) => void) | undefined
  appId: string
  streamName: string

  private readonly sink = {
    onStreamInit: (init: StreamInit.StreamInit) => {
      this.appId = init.appId
      this.streamName = init.streamName
      const route = this.onInit
      this.onInit = undefined
      // the stream itself is passed: the constructor may still be running (a transport can deliver at once)
      route?.(init, this)
    },
    onMessage: (payload: Uint8Array, owned: boolean) => {
      const handler = this.handler
      if (handler === undefined) this.pending.push(owned ? payload : copyBytes(payload))
      else handler.onMessage(payload, owned)
    }
  }

  constructor(
    readonly stream: TransportStream,
    readonly peer: string,
    readonly incoming: boolean,
    readonly maxMessageSize: number,
    init: StreamInit.StreamInit | undefined,
    onInit: ((init: StreamInit.StreamInit, self: FramedStream) => void) | undefined,
    /** The connection's allowance for messages reserved at their declared length (see `Decoder.ReserveBudget`). */
    budget?: Decoder.ReserveBudget
  ) {
    this.appId = init?.appId ?? ''
    this.streamName = init?.streamName ?? ''
    this.onInit = onInit
    this.decoder = Decoder.make(budget === undefined ? { maxMessageSize, streamInit: incoming } : { maxMessageSize, streamInit: incoming, budget })
    stream.setHandler({
      onData: (chunk) => this.onData(chunk),
      onEnd: () => this.onEnd(),
      onDrain: () => {
        this.writable = true
        this.handler?.onDrain?.()
      },
      onClose: (error) => this.onClose(error)
    })
    if (!incoming && init !== undefined) stream.write(StreamInit.encode(init))
  }

  private onData(chunk: Uint8Array): void {
    try {
      this.decoder.push(chunk, this.sink)
    } catch (e) {
      this.fail(e as WireError)
      return
    }
    // a handler set from inside onStreamInit may pause us; an unrouted stream waits here
    if (this.handler === undefined || this.paused) this.stream.pause()
  }

  private onEnd(): void {
    try {
      this.decoder.end()
    } catch (e) {
      this.fail(e as WireError)
      return
    }
    this.handler?.onEnd?.()
  }

  private onClose(error: TransportError | undefined): void {
    if (this.closed) return
    this.closed = true
    this.decoder.dispose()
    this.handler?.onClose?.(error)
  }

  private fail(error: WireError): void {
    if (this.closed) return
    this.closed = true
    this.stream.reset(ErrorCode.ProtocolError)
    this.handler?.onClose?.(wireError(error))
  }

  setHandler = (handler: PeerStreamHandler): void => {
    this.handler = handler
    for (const payload of this.pending.splice(0)) handler.onMessage(payload, true)
    if (!this.paused) this.stream.resume()
  }

  /**
   * Small messages are framed into one reused batch buffer and written to the transport once
   * per microtask (or when the batch is full): one transport write, not one per message.
   */
  send = (payload: Uint8Array, owned = false, onRelease?: () => void): boolean => {
    const need = Frame.HEADER_BYTES + payload.byteLength
    if (need > BATCH_BYTES) {
      // large: flush what is batched, then the header and the payload as two writes (order is
      // kept): no framed copy; the transport copies only what it cannot send at once, and
      // nothing of a buffer it owns
      let header: Uint8Array
      try {
        header = Frame.encodeHeader(payload.byteLength, this.maxMessageSize)
        this.flush()
        this.stream.write(header, true)
      } catch (e) {
        onRelease?.()
        throw e
      }
      this.writable = this.stream.write(payload, owned, onRelease)
      return this.writable
    }
    try {
      if (this.batchLen + need > BATCH_BYTES) this.flush()
      this.batchLen = Frame.encodeMessageInto(this.batch, this.batchLen, payload, this.maxMessageSize)
    } finally {
      // framed into the batch (a copy) or refused: the payload is free either way
      onRelease?.()
    }
    if (!this.flushQueued) {
      // the first message of a microtask goes to the transport at once (a reply written while
      // the transport hands over what it received leaves with its acknowledgement, in one
      // datagram); those after it in the same microtask are batched into one write
      this.flushQueued = true
      queueMicrotask(this.flushSoon)
      this.flush()
    }
    return this.writable
  }

  sendMany = (payloads: ReadonlyArray<Uint8Array>): boolean => {
    let ok = true
    for (const payload of payloads) ok = this.send(payload)
    return ok
  }

  private readonly flushSoon = (): void => {
    this.flushQueued = false
    this.flush()
  }

  /** Writes the batch to the transport (which copies what it keeps), then reuses the buffer. */
  private flush(): void {
    if (this.batchLen === 0 || this.closed || this.stream.isClosed()) {
      this.batchLen = 0
      return
    }
    const out = this.batch.subarray(0, this.batchLen)
    this.batchLen = 0
    this.writable = this.stream.write(out)
  }

  writableLength = (): number => this.stream.writableLength() + this.batchLen

  setPriority = (priority: StreamPriority): void => this.stream.setPriority(priority)

  pause = (): void => {
    this.paused = true
    this.stream.pause()
  }

  resume = (): void => {
    this.paused = false
    if (this.handler !== undefined) this.stream.resume()
  }

  end = (): void => {
    this.flush()
    this.stream.end()
  }

  reset = (code: number): void => {
    if (this.closed) return
    this.closed = true
    this.decoder.dispose()
    this.batchLen = 0
    this.stream.reset(code)
  }

  isClosed = (): boolean => this.closed || this.stream.isClosed()
}
