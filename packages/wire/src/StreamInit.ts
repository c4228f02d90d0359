/**
 * STREAM_INIT, the first frame of every QUIC stream:
 * `[0x01][u16 BE appIdLen][appId UTF-8][u16 BE streamNameLen][streamName UTF-8]`.
 * The stream name is empty for an application's default stream. App id and stream name
 * travel separately: names such as `bucket:sessions` contain ':' and are never split.
 *
 * @since 0.1.0
 */
import * as Effect from 'effect/Effect'
import { decodeUtf8Range, encoder, isWellFormed, utf8Length } from './internal/utf8.js'
import { WireError } from './WireError.js'

/** The frame type byte of STREAM_INIT. */
export const FRAME_TYPE = 0x01
/** Longest app id in bytes. */
export const MAX_APP_ID_BYTES = 255
/** Longest stream name in bytes. */
export const MAX_STREAM_NAME_BYTES = 255
/** Largest encoded STREAM_INIT. */
export const MAX_ENCODED_LENGTH = 1 + 2 + MAX_APP_ID_BYTES + 2 + MAX_STREAM_NAME_BYTES

/** Which application and stream a QUIC stream belongs to. */
export interface StreamInit {
  readonly appId: string
  /** Empty for the default stream. */
  readonly streamName: string
}

const check = (init: StreamInit): readonly [number, number] => {
  if (!isWellFormed(init.appId) || !isWellFormed(init.streamName)) {
    throw new WireError({ reason: 'InvalidUtf8', message: 'app id and stream name must be well-formed Unicode' })
  }
  const appLen = utf8Length(init.appId)
  const nameLen = utf8Length(init.streamName)
  if (appLen < 1 || appLen > MAX_APP_ID_BYTES) {
    throw new WireError({ reason: 'MalformedStreamInit', message: `app id must be 1 to ${MAX_APP_ID_BYTES} bytes of UTF-8, got ${appLen}` })
  }
  if (nameLen > MAX_STREAM_NAME_BYTES) {
    throw new WireError({ reason: 'MalformedStreamInit', message: `stream name must be at most ${MAX_STREAM_NAME_BYTES} bytes of UTF-8, got ${nameLen}` })
  }
  return [appLen, nameLen]
}

/** Bytes `encode` produces for this value. */
export const encodedLength = (init: StreamInit): number => {
  const [appLen, nameLen] = check(init)
  return 5 + appLen + nameLen
}

/** Writes STREAM_INIT at `offset`; returns the offset after it. Throws `WireError` for bad names. */
export const encodeInto = (init: StreamInit, target: Uint8Array, offset: number): number => {
  const [appLen, nameLen] = check(init)
  let o = offset
  target[o++] = FRAME_TYPE
  target[o++] = appLen >>> 8
  target[o++] = appLen & 0xff
  o += encoder.encodeInto(init.appId, target.subarray(o, o + appLen)).written
  target[o++] = nameLen >>> 8
  target[o++] = nameLen & 0xff
  o += encoder.encodeInto(init.streamName, target.subarray(o, o + nameLen)).written
  return o
}

/** Encodes STREAM_INIT. Throws `WireError` for an empty or too long app id, a too long name or bad Unicode. */
export const encode = (init: StreamInit): Uint8Array => {
  const out = new Uint8Array(encodedLength(init))
  encodeInto(init, out, 0)
  return out
}

/**
 * Parses STREAM_INIT at the start of `bytes`. Returns the value and the bytes it took, or
 * `undefined` when `bytes` is a prefix of a valid frame (wait for more). Throws `WireError`.
 */
export const parse = (bytes: Uint8Array, offset = 0): { readonly init: StreamInit; readonly length: number } | undefined => {
  const n = bytes.length - offset
  if (n < 1) return undefined
  const type = bytes[offset]!
  if (type !== FRAME_TYPE) {
    throw new WireError({ reason: 'UnknownFrameType', message: `expected STREAM_INIT (0x01), got 0x${type.toString(16).padStart(2, '0')}` })
  }
  if (n < 3) return undefined
  const appLen = (bytes[offset + 1]! << 8) | bytes[offset + 2]!
  if (appLen < 1 || appLen > MAX_APP_ID_BYTES) {
    throw new WireError({ reason: 'MalformedStreamInit', message: `app id length ${appLen} is outside 1..${MAX_APP_ID_BYTES}` })
  }
  if (n < 5 + appLen) return undefined
  const nameAt = offset + 3 + appLen
  const nameLen = (bytes[nameAt]! << 8) | bytes[nameAt + 1]!
  if (nameLen > MAX_STREAM_NAME_BYTES) {
    throw new WireError({ reason: 'MalformedStreamInit', message: `stream name length ${nameLen} is over ${MAX_STREAM_NAME_BYTES}` })
  }
  if (n < 5 + appLen + nameLen) return undefined
  const appId = decodeUtf8Range(bytes, offset + 3, offset + 3 + appLen, 'app id')
  const streamName = decodeUtf8Range(bytes, nameAt + 2, nameAt + 2 + nameLen, 'stream name')
  return { init: { appId, streamName }, length: 5 + appLen + nameLen }
}

/** Decodes exactly one STREAM_INIT; anything short or trailing is a `WireError`. */
export const decode = (bytes: Uint8Array): StreamInit => {
  const parsed = parse(bytes)
  if (parsed === undefined) throw new WireError({ reason: 'UnexpectedEof', message: 'STREAM_INIT is cut short' })
  if (parsed.length !== bytes.length) {
    throw new WireError({ reason: 'TrailingBytes', message: `${bytes.length - parsed.length} bytes after STREAM_INIT` })
  }
  return parsed.init
}

/** `decode` at the Effect edge. */
export const decodeEffect = (bytes: Uint8Array): Effect.Effect<StreamInit, WireError> =>
  Effect.try({ try: () => decode(bytes), catch: (e) => e as WireError })
