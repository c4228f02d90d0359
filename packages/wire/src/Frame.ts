/**
 * Message framing: `[u32 BE length][payload]`, after the stream's STREAM_INIT. Encoders
 * write one message or several into one buffer (the transport sends them in one write).
 *
 * @since 0.1.0
 */
import { WireError } from './WireError.js'

/** Bytes of the length prefix. */
export const HEADER_BYTES = 4
/** Default largest message: 16 MiB. */
export const DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024
/** Largest message the u32 prefix can describe. */
export const MAX_POSSIBLE_MESSAGE_SIZE = 0xffff_ffff

const tooLarge = (size: number, max: number) =>
  new WireError({ reason: 'FrameTooLarge', message: `message of ${size} bytes exceeds the maximum of ${max} bytes` })

/** Bytes one framed message takes. */
export const encodedLength = (payload: Uint8Array): number => HEADER_BYTES + payload.byteLength

/** Writes one framed message at `offset`; returns the offset after it. Throws `WireError` (FrameTooLarge). */
export const encodeMessageInto = (target: Uint8Array, offset: number, payload: Uint8Array, maxMessageSize = DEFAULT_MAX_MESSAGE_SIZE): number => {
  const n = payload.byteLength
  if (n > maxMessageSize) throw tooLarge(n, maxMessageSize)
  target[offset] = n >>> 24
  target[offset + 1] = (n >>> 16) & 0xff
  target[offset + 2] = (n >>> 8) & 0xff
  target[offset + 3] = n & 0xff
  target.set(payload, offset + HEADER_BYTES)
  return offset + HEADER_BYTES + n
}

/** The 4-byte header of a message of `length` bytes, for a payload written separately. Throws `WireError` (FrameTooLarge). */
export const encodeHeader = (length: number, maxMessageSize = DEFAULT_MAX_MESSAGE_SIZE): Uint8Array => {
  if (length > maxMessageSize) throw tooLarge(length, maxMessageSize)
  return new Uint8Array([length >>> 24, (length >>> 16) & 0xff, (length >>> 8) & 0xff, length & 0xff])
}

/** One framed message in a new buffer. */
export const encodeMessage = (payload: Uint8Array, maxMessageSize = DEFAULT_MAX_MESSAGE_SIZE): Uint8Array => {
  const out = new Uint8Array(HEADER_BYTES + payload.byteLength)
  encodeMessageInto(out, 0, payload, maxMessageSize)
  return out
}

/** Several framed messages in one buffer, in order. Nothing is written if any is too large. */
export const encodeMessages = (payloads: ReadonlyArray<Uint8Array>, maxMessageSize = DEFAULT_MAX_MESSAGE_SIZE): Uint8Array => {
  let total = 0
  for (const p of payloads) {
    if (p.byteLength > maxMessageSize) throw tooLarge(p.byteLength, maxMessageSize)
    total += HEADER_BYTES + p.byteLength
  }
  const out = new Uint8Array(total)
  let offset = 0
  for (const p of payloads) offset = encodeMessageInto(out, offset, p, maxMessageSize)
  return out
}
