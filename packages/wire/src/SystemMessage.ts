/**
 * A small toolkit for the typed messages of the system applications (`SYSTEM-NODOSUM`,
 * `SYSTEM-MYCEL`): every message is `[type u8][version u8][fields...]`, fields written by a
 * `Writer` and read back by a bounds-checked `Reader`. Integers are big-endian; strings are
 * `[u16 length][UTF-8]`; byte strings `[u32 length][bytes]`.
 *
 * @since 0.1.0
 */
import * as Effect from 'effect/Effect'
import { copyRange } from './internal/copy.js'
import { decodeUtf8Range, encoder, isWellFormed, utf8Length } from './internal/utf8.js'
import { WireError } from './WireError.js'

/** A growable buffer that fields are appended to. */
export class Writer {
  private buf: Uint8Array
  private view: DataView
  length = 0

  constructor(initialCapacity = 64) {
    this.buf = new Uint8Array(initialCapacity)
    this.view = new DataView(this.buf.buffer)
  }

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < this.length + n) size *= 2
    const next = new Uint8Array(size)
    next.set(this.buf.subarray(0, this.length))
    this.buf = next
    this.view = new DataView(next.buffer)
  }

  u8(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xff) throw invalid(`u8 out of range: ${v}`)
    this.room(1)
    this.buf[this.length++] = v
    return this
  }

  u16(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw invalid(`u16 out of range: ${v}`)
    this.room(2)
    this.view.setUint16(this.length, v)
    this.length += 2
    return this
  }

  u32(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff_ffff) throw invalid(`u32 out of range: ${v}`)
    this.room(4)
    this.view.setUint32(this.length, v)
    this.length += 4
    return this
  }

  /** Unsigned 64-bit from a safe integer (0..2^53-1). */
  u64(v: number): this {
    if (!Number.isSafeInteger(v) || v < 0) throw invalid(`u64 must be a safe non-negative integer: ${v}`)
    this.room(8)
    this.view.setBigUint64(this.length, BigInt(v))
    this.length += 8
    return this
  }

  f64(v: number): this {
    this.room(8)
    this.view.setFloat64(this.length, v)
    this.length += 8
    return this
  }

  bool(v: boolean): this {
    return this.u8(v ? 1 : 0)
  }

  /** `[u16 length][UTF-8]`, at most 65535 bytes. */
  string(s: string): this {
    if (!isWellFormed(s)) throw new WireError({ reason: 'InvalidUtf8', message: 'string is not well-formed Unicode' })
    const n = utf8Length(s)
    if (n > 0xffff) throw invalid(`string of ${n} bytes is over 65535`)
    this.u16(n)
    this.room(n)
    if (n === s.length) {
      // ASCII (ids, names, most keys): byte per character, no view or result object per string
      const buf = this.buf
      const at = this.length
      for (let i = 0; i < n; i++) buf[at + i] = s.charCodeAt(i)
      this.length += n
      return this
    }
    this.length += encoder.encodeInto(s, this.buf.subarray(this.length, this.length + n)).written
    return this
  }

  /** `[u32 length][bytes]`. */
  bytes(b: Uint8Array): this {
    this.u32(b.byteLength)
    this.room(b.byteLength)
    this.buf.set(b, this.length)
    this.length += b.byteLength
    return this
  }

  /** `[u8 0]` or `[u8 1][value]`. */
  optional<A>(value: A | undefined, write: (w: this, a: A) => void): this {
    if (value === undefined) return this.u8(0)
    this.u8(1)
    write(this, value)
    return this
  }

  /** `[u32 count][items]`. */
  array<A>(items: ReadonlyArray<A>, write: (w: this, a: A) => void): this {
    this.u32(items.length)
    for (const item of items) write(this, item)
    return this
  }

  /** Forgets what was written, keeping the buffer: one writer serves message after message. */
  reset(): this {
    this.length = 0
    return this
  }

  /** Forgets what was written after the first `length` bytes. */
  truncate(length: number): this {
    if (!Number.isInteger(length) || length < 0 || length > this.length) throw invalid(`cannot truncate ${this.length} bytes to ${length}`)
    this.length = length
    return this
  }

  /** Overwrites the u32 at `at`, inside what was written (a length known only after what follows it). */
  setU32(at: number, v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff_ffff) throw invalid(`u32 out of range: ${v}`)
    if (!Number.isInteger(at) || at < 0 || at + 4 > this.length) throw invalid(`no u32 written at ${at}`)
    this.view.setUint32(at, v)
    return this
  }

  /** Bytes the writer's buffer holds (it grows, and keeps its size across `reset`). */
  get capacity(): number {
    return this.buf.length
  }

  /** The bytes written, as a view of the writer's buffer. */
  finish(): Uint8Array {
    return this.buf.subarray(0, this.length)
  }
}

const invalid = (message: string) => new WireError({ reason: 'InvalidField', message })
const eof = (what: string) => new WireError({ reason: 'UnexpectedEof', message: `message ends inside ${what}` })

/**
 * A view of the whole buffer Readers were last made over. The messages of one payload (a batch)
 * and the payloads read into one receive buffer share a buffer, so they share this view instead
 * of building a `DataView` each (a tenth of a compare-and-set's decoding). It keeps that one
 * buffer alive until a Reader is made over another.
 */
let viewBuffer: ArrayBufferLike | undefined
let wholeView: DataView<ArrayBufferLike> = new DataView(new ArrayBuffer(0))
const viewOf = (buffer: ArrayBufferLike): DataView<ArrayBufferLike> => {
  if (buffer !== viewBuffer) {
    wholeView = new DataView(buffer)
    viewBuffer = buffer
  }
  return wholeView
}

/** Reads fields back; every read is bounds-checked and throws `WireError`. */
export class Reader {
  /** A view of all of `bytes.buffer`; `bytes` starts at `base` in it. */
  private readonly view: DataView<ArrayBufferLike>
  private readonly base: number
  offset: number

  /** Reads `bytes` from `offset` up to `end` (the whole of it by default): a message inside a larger payload needs no view of its own. */
  constructor(
    readonly bytes: Uint8Array,
    offset = 0,
    readonly end = bytes.length
  ) {
    this.view = viewOf(bytes.buffer)
    this.base = bytes.byteOffset
    this.offset = offset
  }

  get remaining(): number {
    return this.end - this.offset
  }

  private need(n: number, what: string): void {
    if (this.end - this.offset < n) throw eof(what)
  }

  u8(): number {
    this.need(1, 'a u8')
    return this.bytes[this.offset++]!
  }

  u16(): number {
    this.need(2, 'a u16')
    const v = this.view.getUint16(this.base + this.offset)
    this.offset += 2
    return v
  }

  u32(): number {
    this.need(4, 'a u32')
    const v = this.view.getUint32(this.base + this.offset)
    this.offset += 4
    return v
  }

  u64(): number {
    this.need(8, 'a u64')
    const v = this.view.getBigUint64(this.base + this.offset)
    this.offset += 8
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(`u64 ${v} is over 2^53 - 1`)
    return Number(v)
  }

  f64(): number {
    this.need(8, 'an f64')
    const v = this.view.getFloat64(this.base + this.offset)
    this.offset += 8
    return v
  }

  bool(): boolean {
    const v = this.u8()
    if (v > 1) throw invalid(`bool byte ${v} is neither 0 nor 1`)
    return v === 1
  }

  string(): string {
    const n = this.u16()
    this.need(n, 'a string')
    const s = decodeUtf8Range(this.bytes, this.offset, this.offset + n, 'string field')
    this.offset += n
    return s
  }

  /** A view of the bytes: copy what you keep (`bytesCopy`; on a Node Buffer `.slice()` is another view). */
  bytesField(): Uint8Array {
    const at = this.skipBytesField()
    return this.bytes.subarray(at, this.offset)
  }

  /** Steps over a byte string: where it starts in `bytes` (it ends at `offset`), without a view of it. */
  skipBytesField(): number {
    const n = this.u32()
    this.need(n, 'a byte string')
    const at = this.offset
    this.offset += n
    return at
  }

  /**
   * A copy of the bytes, valid after the buffer read from is reused. Copies of 65 bytes to 1 KiB
   * share 8 KiB blocks (`byteOffset` not 0, `buffer` shared, as Node's pooled Buffers).
   */
  bytesCopy(): Uint8Array {
    const at = this.skipBytesField()
    return copyRange(this.bytes, at, this.offset - at)
  }

  optional<A>(read: (r: this) => A): A | undefined {
    const tag = this.u8()
    if (tag === 0) return undefined
    if (tag !== 1) throw invalid(`optional tag ${tag} is neither 0 nor 1`)
    return read(this)
  }

  /** `[u32 count][items]`; the count is checked against the bytes left (each item takes at least `minItemBytes`). */
  array<A>(read: (r: this) => A, minItemBytes = 1): Array<A> {
    const n = this.u32()
    if (n * minItemBytes > this.remaining) throw eof(`an array of ${n} items`)
    const out: Array<A> = []
    for (let i = 0; i < n; i++) out.push(read(this))
    return out
  }

  /** Fails unless every byte was read. */
  finish(): void {
    if (this.offset !== this.end) {
      throw new WireError({ reason: 'TrailingBytes', message: `${this.end - this.offset} bytes left after the message` })
    }
  }
}

/** The codec of one message type: its type byte, version and fields. */
export interface MessageCodec<A extends { readonly _tag: string }> {
  readonly tag: A['_tag']
  readonly type: number
  readonly version: number
  // method syntax: a codec of one member is usable where the family's codec is expected
  write(w: Writer, value: A): void
  read(r: Reader): A
}

/** Declares the codec of one message type. */
export const define = <A extends { readonly _tag: string }>(codec: MessageCodec<A>): MessageCodec<A> => codec

/** A family of message types: encodes by `_tag`, decodes by type byte. */
export interface MessageSet<A extends { readonly _tag: string }> {
  readonly encode: (value: A) => Uint8Array
  /** Appends the message to `w` (no copy of its own: the writer's buffer is reused by whoever owns it). */
  readonly encodeTo: (w: Writer, value: A) => void
  /** Throws `WireError`: UnknownMessageType, UnsupportedVersion, UnexpectedEof, InvalidField, InvalidUtf8, TrailingBytes. */
  readonly decode: (bytes: Uint8Array) => A
  /** `decode` of the message in `bytes[start, end)`. */
  readonly decodeRange: (bytes: Uint8Array, start: number, end: number) => A
  readonly decodeEffect: (bytes: Uint8Array) => Effect.Effect<A, WireError>
}

/** The largest encoding buffer a message set keeps for its next `encode`. */
const KEEP_WRITER_BYTES = 64 * 1024

/** Builds a message set from codecs with distinct type bytes. */
export const messageSet = <A extends { readonly _tag: string }>(name: string, codecs: ReadonlyArray<MessageCodec<A>>): MessageSet<A> => {
  const byType = new Array<MessageCodec<A> | undefined>(256)
  const byTag = new Map<string, MessageCodec<A>>()
  for (const codec of codecs) {
    if (byType[codec.type] !== undefined) throw new Error(`${name}: type byte 0x${codec.type.toString(16)} used twice`)
    byType[codec.type] = codec
    byTag.set(codec.tag, codec)
  }
  const decodeRange = (bytes: Uint8Array, start: number, end: number): A => {
    const r = new Reader(bytes, start, end)
    const type = r.u8()
    const codec = byType[type]
    if (codec === undefined) {
      throw new WireError({ reason: 'UnknownMessageType', message: `${name}: unknown message type 0x${type.toString(16).padStart(2, '0')}` })
    }
    const version = r.u8()
    if (version !== codec.version) {
      throw new WireError({ reason: 'UnsupportedVersion', message: `${name}: ${codec.tag} version ${version} is not ${codec.version}` })
    }
    let value: A
    try {
      value = codec.read(r)
    } catch (e) {
      if (e instanceof WireError) throw e
      throw new WireError({ reason: 'InvalidField', message: `${name}: ${codec.tag}: ${String(e)}` })
    }
    r.finish()
    return value
  }
  const decode = (bytes: Uint8Array): A => decodeRange(bytes, 0, bytes.length)
  const encodeTo = (w: Writer, value: A): void => {
    const codec = byTag.get(value._tag)
    if (codec === undefined) throw new WireError({ reason: 'UnknownMessageType', message: `${name}: no codec for ${value._tag}` })
    w.u8(codec.type).u8(codec.version)
    codec.write(w, value)
  }
  // one writer kept per message set for `encode` (the bytes are copied out); a nested or failed
  // call leaves it aside and uses a fresh one, and one grown past KEEP_WRITER_BYTES is let go
  let spare: Writer | undefined = new Writer()
  return {
    encode: (value) => {
      const w = spare ?? new Writer()
      spare = undefined
      w.reset()
      encodeTo(w, value)
      const bytes = w.finish().slice()
      if (w.capacity <= KEEP_WRITER_BYTES) spare = w
      return bytes
    },
    encodeTo,
    decode,
    decodeRange,
    decodeEffect: (bytes) => Effect.try({ try: () => decode(bytes), catch: (e) => e as WireError })
  }
}
