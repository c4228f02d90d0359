/**
 * The incremental decoder of one QUIC stream: STREAM_INIT first (when asked), then framed
 * messages, from chunks split anywhere. An explicit state machine with its limits given at
 * construction; plain synchronous code over `Uint8Array` (no Effect per chunk or message).
 *
 * - A message wholly inside a chunk is handed out as a view of that chunk: zero copy, valid
 *   only during the callback (transports reuse their read buffers). Copy what you keep.
 * - A message split across chunks is assembled with what arrived, not with what its length
 *   header claims. Its bytes go into blocks (the first of the bytes at hand, at least
 *   `INITIAL_BODY_BYTES`; each next one as large as what is held, up to `MAX_BLOCK_BYTES`),
 *   never copied again while they fill. Once a sixteenth of it (`RESERVE_FRACTION`) is in and
 *   the connection's `budget` allows, or once half of it is in, one buffer of exactly its
 *   declared length takes the blocks and every later byte. So a peer that sends a 16 MiB header
 *   and then nothing costs 16 KiB, not 16 MiB; what is allocated is at most 16 times what
 *   arrived with a budget and twice without; and a real message costs a sixteenth of a copy
 *   more than a buffer allocated at its header (half a copy past the budget). Gathering half
 *   first doubled the small-request tail of `bench:hol` beside 10 MiB transfers, and growing
 *   one buffer by doubling (a whole copy more, dead intermediate buffers) made the garbage
 *   collector run six times as often. Header and STREAM_INIT bytes split across chunks go to a
 *   small fixed scratch. Nothing else is kept between chunks.
 * - Short input means "wait for more". Anything else is a `WireError`; after one the decoder
 *   is poisoned and throws the same error again.
 *
 * @since 0.1.0
 */
import { DEFAULT_MAX_MESSAGE_SIZE, HEADER_BYTES } from './Frame.js'
import * as StreamInit from './StreamInit.js'
import { WireError } from './WireError.js'

/** Where decoded frames go. */
export interface Sink {
  /** The stream's STREAM_INIT (first, once, when the decoder expects one). */
  readonly onStreamInit?: (init: StreamInit.StreamInit) => void
  /**
   * One whole message. `owned` is false for a view into the pushed chunk (valid only during
   * this call: copy what you keep) and true for a message assembled across chunks in a buffer
   * of its own, which the sink may keep without copying.
   */
  readonly onMessage: (payload: Uint8Array, owned: boolean) => void
}

/** Limits and mode of a decoder. */
export interface DecoderOptions {
  /** Largest message accepted (default 16 MiB). A larger length prefix fails at once, before buffering. */
  readonly maxMessageSize?: number
  /** The stream starts with STREAM_INIT (default true). */
  readonly streamInit?: boolean
  /**
   * Memory a split message may take at its declared length once `1 / RESERVE_FRACTION` of it
   * arrived, shared by the decoders of one connection (see `ReserveBudget`). While the budget
   * allows, such a message moves into one buffer of its declared length then (one copy of each
   * later byte); past it, or without a budget, it is gathered until half of it arrived.
   */
  readonly budget?: ReserveBudget
}

/**
 * A shared allowance of bytes reserved ahead of their arrival: `take` says whether `bytes`
 * more may be reserved (and counts them if so), `give` returns them.
 */
export interface ReserveBudget {
  readonly take: (bytes: number) => boolean
  readonly give: (bytes: number) => void
}

/** A budget of `limit` bytes. */
export const makeBudget = (limit: number): ReserveBudget & { readonly reserved: () => number } => {
  let reserved = 0
  return {
    take: (bytes) => {
      if (reserved + bytes > limit) return false
      reserved += bytes
      return true
    },
    give: (bytes) => {
      reserved = Math.max(0, reserved - bytes)
    },
    reserved: () => reserved
  }
}

/**
 * The smallest buffer a split message starts in (or its whole length, when smaller). Below
 * this a message is allocated at its declared length at once.
 */
export const INITIAL_BODY_BYTES = 16 * 1024

/**
 * A split message may take a buffer of its declared length from the budget once this fraction
 * of it arrived (1/16): memory at most 16 times what arrived, whoever sends it.
 */
export const RESERVE_FRACTION = 16

/** The largest block the first half of a split message is gathered in. */
export const MAX_BLOCK_BYTES = 1024 * 1024

enum State {
  Init,
  Header,
  Body,
  Failed
}

/** An incremental decoder; see the module comment. */
export class Decoder {
  readonly maxMessageSize: number
  private state: State
  /** Bytes of a STREAM_INIT or header split across chunks. */
  private readonly scratch = new Uint8Array(StreamInit.MAX_ENCODED_LENGTH)
  private scratchLen = 0
  /**
   * The message being assembled across chunks: `bodyLen` of `bodyTotal` bytes in. Before half
   * of it arrived, in `blocks` (all full but the last, `blockLen` bytes into it); after, in
   * `body`, allocated at `bodyTotal`.
   */
  private body: Uint8Array | undefined
  private blocks: Array<Uint8Array> = []
  private blockLen = 0
  private reserved = 0
  /** Bytes of the current message taken from the budget (0 when it is gathered as it arrives). */
  private fromBudget = 0
  private readonly budget: ReserveBudget | undefined
  private bodyLen = 0
  private bodyTotal = 0
  private error: WireError | undefined
  /** Messages decoded so far. */
  messages = 0

  constructor(options: DecoderOptions = {}) {
    this.maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE
    if (!Number.isInteger(this.maxMessageSize) || this.maxMessageSize < 0 || this.maxMessageSize > 0xffff_ffff) {
      throw new RangeError('maxMessageSize must be an integer from 0 to 2^32 - 1')
    }
    this.state = (options.streamInit ?? true) ? State.Init : State.Header
    this.budget = options.budget
  }

  /** Bytes held across chunks right now (at most maxMessageSize, or a STREAM_INIT). */
  get bufferedBytes(): number {
    return this.state === State.Body ? this.bodyLen : this.scratchLen
  }

  /**
   * Bytes allocated for the message being assembled (0 between messages): at most
   * max(`INITIAL_BODY_BYTES`, 2 × `bufferedBytes`) without a budget and
   * max(`INITIAL_BODY_BYTES`, `RESERVE_FRACTION` × `bufferedBytes`) with one, never more than
   * its declared length.
   */
  get reservedBytes(): number {
    return this.state === State.Body ? this.reserved : 0
  }

  /** True between frames: no partial frame held. */
  get atBoundary(): boolean {
    return this.scratchLen === 0 && this.state !== State.Body
  }

  private fail(error: WireError): never {
    this.state = State.Failed
    this.error = error
    this.scratchLen = 0
    this.clearBody()
    throw error
  }

  /** Feeds one chunk; every complete frame in it reaches the sink before this returns. */
  push(chunk: Uint8Array, sink: Sink): void {
    if (this.state === State.Failed) throw this.error!
    let pos = 0
    const end = chunk.length
    while (pos < end) {
      switch (this.state) {
        case State.Init: {
          let parsed
          if (this.scratchLen === 0) {
            try {
              parsed = StreamInit.parse(chunk, pos)
            } catch (e) {
              return this.fail(e as WireError)
            }
            if (parsed === undefined) {
              // keep the prefix; a STREAM_INIT is at most MAX_ENCODED_LENGTH bytes
              this.scratch.set(chunk.subarray(pos, end), 0)
              this.scratchLen = end - pos
              return
            }
            pos += parsed.length
          } else {
            // complete the held prefix one chunk at a time, bounded by the frame's maximum size
            const take = Math.min(end - pos, StreamInit.MAX_ENCODED_LENGTH - this.scratchLen)
            this.scratch.set(chunk.subarray(pos, pos + take), this.scratchLen)
            const have = this.scratchLen + take
            try {
              parsed = StreamInit.parse(this.scratch.subarray(0, have))
            } catch (e) {
              return this.fail(e as WireError)
            }
            if (parsed === undefined) {
              this.scratchLen = have
              pos += take
              continue
            }
            pos += parsed.length - this.scratchLen
            this.scratchLen = 0
          }
          this.state = State.Header
          sink.onStreamInit?.(parsed.init)
          break
        }
        case State.Header: {
          let length: number
          if (this.scratchLen === 0 && end - pos >= HEADER_BYTES) {
            length = ((chunk[pos]! << 24) | (chunk[pos + 1]! << 16) | (chunk[pos + 2]! << 8) | chunk[pos + 3]!) >>> 0
            pos += HEADER_BYTES
          } else {
            while (this.scratchLen < HEADER_BYTES && pos < end) this.scratch[this.scratchLen++] = chunk[pos++]!
            if (this.scratchLen < HEADER_BYTES) return
            const s = this.scratch
            length = ((s[0]! << 24) | (s[1]! << 16) | (s[2]! << 8) | s[3]!) >>> 0
            this.scratchLen = 0
          }
          if (length > this.maxMessageSize) {
            return this.fail(new WireError({ reason: 'FrameTooLarge', message: `message of ${length} bytes exceeds the maximum of ${this.maxMessageSize} bytes` }))
          }
          if (end - pos >= length) {
            // wholly inside this chunk: a view, no copy
            const payload = chunk.subarray(pos, pos + length)
            pos += length
            this.messages++
            sink.onMessage(payload, false)
          } else {
            // split: reserve for what is here, not for what the header claims
            this.bodyLen = 0
            this.bodyTotal = length
            this.state = State.Body
            if (length <= INITIAL_BODY_BYTES) {
              this.body = new Uint8Array(length)
              this.reserved = length
            }
          }
          break
        }
        case State.Body: {
          const take = Math.min(end - pos, this.bodyTotal - this.bodyLen)
          const need = this.bodyLen + take
          if (this.body === undefined && (2 * need >= this.bodyTotal || this.reserve(need))) {
            // half of it is here, or a sixteenth and the budget allows: one buffer of the declared length takes the blocks
            const body = new Uint8Array(this.bodyTotal)
            let at = 0
            for (const block of this.blocks) {
              const n = Math.min(block.length, this.bodyLen - at)
              body.set(n === block.length ? block : block.subarray(0, n), at)
              at += n
            }
            this.blocks = []
            this.blockLen = 0
            this.body = body
            this.reserved = this.bodyTotal
          }
          if (this.body !== undefined) {
            this.body.set(chunk.subarray(pos, pos + take), this.bodyLen)
          } else {
            this.gather(chunk, pos, take)
          }
          this.bodyLen = need
          pos += take
          if (need === this.bodyTotal) {
            const body = this.body!
            this.clearBody()
            this.state = State.Header
            this.messages++
            sink.onMessage(body, true)
          }
          break
        }
        default:
          throw this.error!
      }
    }
  }

  /** With `need` bytes of the message in: a sixteenth of it or more, and the budget allows its declared length. */
  private reserve(need: number): boolean {
    if (this.budget === undefined || RESERVE_FRACTION * need < this.bodyTotal || !this.budget.take(this.bodyTotal)) return false
    this.fromBudget = this.bodyTotal
    return true
  }

  /** Copies `take` bytes at `pos` into the blocks, adding one when the last is full. */
  private gather(chunk: Uint8Array, pos: number, take: number): void {
    while (take > 0) {
      let block = this.blocks[this.blocks.length - 1]
      if (block === undefined || this.blockLen === block.length) {
        const size = Math.max(take, Math.min(MAX_BLOCK_BYTES, Math.max(INITIAL_BODY_BYTES, this.bodyLen)))
        block = new Uint8Array(Math.min(size, this.bodyTotal - this.bodyLen))
        this.blocks.push(block)
        this.blockLen = 0
        this.reserved += block.length
      }
      const n = Math.min(take, block.length - this.blockLen)
      block.set(chunk.subarray(pos, pos + n), this.blockLen)
      this.blockLen += n
      this.bodyLen += n
      pos += n
      take -= n
    }
  }

  private clearBody(): void {
    if (this.fromBudget > 0) {
      this.budget!.give(this.fromBudget)
      this.fromBudget = 0
    }
    this.body = undefined
    this.blocks = []
    this.blockLen = 0
    this.reserved = 0
    this.bodyLen = 0
    this.bodyTotal = 0
  }

  /** The stream is gone (reset, closed): what a partial message holds is let go and its budget returned. */
  dispose(): void {
    this.clearBody()
    this.scratchLen = 0
    if (this.state !== State.Failed) this.state = State.Header
  }

  /** The stream ended: a partial frame is `UnexpectedEof`; a missing STREAM_INIT too. */
  end(): void {
    if (this.state === State.Failed) throw this.error!
    if (this.state === State.Init) {
      return this.fail(new WireError({ reason: 'UnexpectedEof', message: 'stream ended before its STREAM_INIT' }))
    }
    if (!this.atBoundary) {
      return this.fail(new WireError({ reason: 'UnexpectedEof', message: `stream ended inside a frame (${this.bufferedBytes} bytes held)` }))
    }
  }
}

/** A decoder with the given limits. */
export const make = (options: DecoderOptions = {}): Decoder => new Decoder(options)
