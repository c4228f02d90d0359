import { WireError } from '../WireError.js'

export const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** Strict UTF-8 decoding: invalid sequences are a `WireError`, never replacement characters. */
export const decodeUtf8 = (bytes: Uint8Array, what: string): string => {
  // ASCII fast path: most ids and names are ASCII
  let ascii = true
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i]! > 0x7f) {
      ascii = false
      break
    }
  }
  if (ascii) return bytes.length < 64 ? String.fromCharCode.apply(null, bytes as unknown as Array<number>) : decoder.decode(bytes)
  try {
    return decoder.decode(bytes)
  } catch {
    throw new WireError({ reason: 'InvalidUtf8', message: `${what} is not valid UTF-8` })
  }
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
