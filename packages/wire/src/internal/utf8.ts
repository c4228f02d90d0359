import { WireError } from '../WireError.js'

export const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/**
 * Node's native Latin-1 slice of a byte range into a string (`Buffer.prototype.latin1Slice`, which
 * takes any `Uint8Array` as `this`): one flat string, no view or argument list made on the way.
 * For ASCII bytes Latin-1 and UTF-8 agree. Measured on 9-25 byte names: 166 ns a string against
 * 384 for a view and `String.fromCharCode.apply`.
 */
const latin1Slice = (Buffer.prototype as unknown as { latin1Slice: (this: Uint8Array, start: number, end: number) => string }).latin1Slice

/** Strict UTF-8 decoding of `bytes[start, end)`: invalid sequences are a `WireError`, never replacement characters. */
export const decodeUtf8Range = (bytes: Uint8Array, start: number, end: number, what: string): string => {
  // ASCII fast path: most ids and names are ASCII
  for (let i = start; i < end; i++) {
    if (bytes[i]! > 0x7f) {
      try {
        return decoder.decode(bytes.subarray(start, end))
      } catch {
        throw new WireError({ reason: 'InvalidUtf8', message: `${what} is not valid UTF-8` })
      }
    }
  }
  return latin1Slice.call(bytes, start, end)
}

/** UTF-8 length of a string without allocating. */
export const utf8Length = (s: string): number => {
  let n = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x80) n += 1
    else if (c < 0x800) n += 2
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4
      i++
    } else n += 3
  }
  return n
}

/** A string that is not well-formed UTF-16 (lone surrogates) cannot round-trip through UTF-8. */
export const isWellFormed = (s: string): boolean => {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0xd800 && c <= 0xdbff) {
      if (i + 1 >= s.length || (s.charCodeAt(i + 1) & 0xfc00) !== 0xdc00) return false
      i++
    } else if (c >= 0xdc00 && c <= 0xdfff) return false
  }
  return true
}
