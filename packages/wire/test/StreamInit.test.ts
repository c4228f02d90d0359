import { describe, expect, it } from '@effect/vitest'
import { Effect } from 'effect'
import fc from 'fast-check'
import { StreamInit, WireError } from '../src/index.js'

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')
const fromHex = (h: string) => new Uint8Array(Buffer.from(h, 'hex'))

describe('StreamInit', () => {
  // The spec's examples with their correct lengths: "SYSTEM-MYCEL" is 12 bytes, "bucket:sessions" 15.
  const golden: ReadonlyArray<readonly [StreamInit.StreamInit, string]> = [
    [{ appId: 'SYSTEM-MYCEL', streamName: 'bucket:sessions' }, '01000c53595354454d2d4d5943454c000f6275636b65743a73657373696f6e73'],
    [{ appId: 'SYSTEM-MYCEL', streamName: '' }, '01000c53595354454d2d4d5943454c0000'],
    [{ appId: 'my-app', streamName: '' }, '0100066d792d6170700000'],
    [{ appId: 'a', streamName: 'topic:orders' }, '01000161000c746f7069633a6f7264657273'],
    [{ appId: 'ü', streamName: '日本' }, '010002c3bc0006e697a5e69cac']
  ]

  it.each(golden)('encodes %j byte-exact', (init, expected) => {
    expect(hex(StreamInit.encode(init))).toBe(expected)
    expect(StreamInit.decode(fromHex(expected))).toEqual(init)
  })

  it('length fields are the UTF-8 byte lengths of the spec examples', () => {
    const bytes = StreamInit.encode({ appId: 'SYSTEM-MYCEL', streamName: 'bucket:sessions' })
    expect((bytes[1]! << 8) | bytes[2]!).toBe(12)
    expect((bytes[15]! << 8) | bytes[16]!).toBe(15)
    expect(bytes.length).toBe(1 + 2 + 12 + 2 + 15)
  })

  it('keeps app id and stream name apart even when names contain ":"', () => {
    const init = { appId: 'SYSTEM-MYCEL:x', streamName: 'bucket:a:b' }
    expect(StreamInit.decode(StreamInit.encode(init))).toEqual(init)
  })

  it('limits: app id 1..255 bytes, stream name 0..255 bytes', () => {
    expect(() => StreamInit.encode({ appId: 'a'.repeat(255), streamName: 'b'.repeat(255) })).not.toThrow()
    const err = (f: () => unknown) => {
      try {
        f()
      } catch (e) {
        return e as WireError
      }
      throw new Error('expected a WireError')
    }
    expect(err(() => StreamInit.encode({ appId: '', streamName: 'x' })).reason).toBe('MalformedStreamInit')
    expect(err(() => StreamInit.encode({ appId: 'a'.repeat(256), streamName: '' })).reason).toBe('MalformedStreamInit')
    expect(err(() => StreamInit.encode({ appId: 'a', streamName: 'é'.repeat(128) })).reason).toBe('MalformedStreamInit')
    expect(err(() => StreamInit.encode({ appId: '\ud800', streamName: '' })).reason).toBe('InvalidUtf8')
    // decoding: zero-length app id, 256-byte lengths, invalid UTF-8, wrong type, trailing, short
    expect(err(() => StreamInit.decode(fromHex('0100000000'))).reason).toBe('MalformedStreamInit')
    expect(err(() => StreamInit.decode(fromHex('010100'))).reason).toBe('MalformedStreamInit')
    expect(err(() => StreamInit.decode(fromHex('010001610100'))).reason).toBe('MalformedStreamInit')
    expect(err(() => StreamInit.decode(fromHex('010001ff0000'))).reason).toBe('InvalidUtf8')
    expect(err(() => StreamInit.decode(fromHex('010001610001c3'))).reason).toBe('InvalidUtf8')
    expect(err(() => StreamInit.decode(fromHex('02000161'))).reason).toBe('UnknownFrameType')
    expect(err(() => StreamInit.decode(fromHex('0100016100'))).reason).toBe('UnexpectedEof')
    expect(err(() => StreamInit.decode(fromHex('010001610000ff'))).reason).toBe('TrailingBytes')
  })

  it('parse says "wait" for every strict prefix of a valid frame', () => {
    const bytes = StreamInit.encode({ appId: 'SYSTEM-MYCEL', streamName: 'bucket:sessions' })
    for (let n = 0; n < bytes.length; n++) expect(StreamInit.parse(bytes.subarray(0, n))).toBeUndefined()
    expect(StreamInit.parse(bytes)?.length).toBe(bytes.length)
  })

  it('round-trips any valid app id and stream name (fast-check)', () => {
    const name = (min: number) =>
      fc.string({ unit: 'grapheme', minLength: min, maxLength: 60 }).filter((s) => Buffer.byteLength(s) >= min && Buffer.byteLength(s) <= 255)
    fc.assert(
      fc.property(name(1), name(0), (appId, streamName) => {
        expect(StreamInit.decode(StreamInit.encode({ appId, streamName }))).toEqual({ appId, streamName })
      }),
      { numRuns: 2_000 }
    )
  })

  it.effect('decodeEffect fails with a typed WireError', () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(StreamInit.decodeEffect(fromHex('07')))
      expect(error).toBeInstanceOf(WireError)
      expect(error.reason).toBe('UnknownFrameType')
    })
  )
})
