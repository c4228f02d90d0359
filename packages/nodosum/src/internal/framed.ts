import { Decoder, Frame, StreamInit, type WireError } from '@mycorrizal/wire'
import { copyBytes } from './bytes.js'
import type { TransportError } from '../NodosumError.js'
import { ErrorCode, type PeerStream, type PeerStreamError, type PeerStreamHandler } from '../PeerStream.js'
import type { TransportStream } from '../Transport.js'

const wireError = (e: WireError): PeerStreamError => ({ _tag: 'WireError', reason: e.reason, message: e.message })

/**
 * A `PeerStream` over a transport stream. Messages arriving before a handler is set, or
 * while paused, stay in the transport (its flow control holds the sender back).
 */
export class FramedStream implements PeerStream {
  private handler: PeerStreamHandler | undefined
  /** Messages of the chunk that carried STREAM_INIT, when nobody took the stream at once. */
  private readonly pending: Array<Uint8Array> = []
  private paused = false
  private closed = false
  private readonly decoder: Decoder.Decoder
  /** Set while an incoming stream waits for its STREAM_INIT. */
  private onInit: ((init: StreamInit.StreamInit) => void) | undefined
  appId: string
  streamName: string

  private readonly sink = {
    onStreamInit: (init: StreamInit.StreamInit) => {
      this.appId = init.appId
      this.streamName = init.streamName
      const route = this.onInit
      this.onInit = undefined
      route?.(init)
    },
    onMessage: (payload: Uint8Array) => {
      const handler = this.handler
      if (handler === undefined) this.pending.push(copyBytes(payload))
      else handler.onMessage(payload)
    }
  }

  constructor(
    readonly stream: TransportStream,
    readonly peer: string,
    readonly incoming: boolean,
    readonly maxMessageSize: number,
    init: StreamInit.StreamInit | undefined,
    onInit: ((init: StreamInit.StreamInit) => void) | undefined
  ) {
    this.appId = init?.appId ?? ''
    this.streamName = init?.streamName ?? ''
    this.onInit = onInit
    this.decoder = Decoder.make({ maxMessageSize, streamInit: incoming })
    stream.setHandler({
      onData: (chunk) => this.onData(chunk),
      onEnd: () => this.onEnd(),
      onDrain: () => this.handler?.onDrain?.(),
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
    for (const payload of this.pending.splice(0)) handler.onMessage(payload)
    if (!this.paused) this.stream.resume()
  }

  send = (payload: Uint8Array): boolean => this.stream.write(Frame.encodeMessage(payload, this.maxMessageSize))

  sendMany = (payloads: ReadonlyArray<Uint8Array>): boolean => this.stream.write(Frame.encodeMessages(payloads, this.maxMessageSize))

  writableLength = (): number => this.stream.writableLength()

  pause = (): void => {
    this.paused = true
    this.stream.pause()
  }

  resume = (): void => {
    this.paused = false
    if (this.handler !== undefined) this.stream.resume()
  }

  end = (): void => this.stream.end()

  reset = (code: number): void => {
    if (this.closed) return
    this.closed = true
    this.stream.reset(code)
  }

  isClosed = (): boolean => this.closed || this.stream.isClosed()
}
