import { describe, expect, it } from '@effect/vitest'
import fc from 'fast-check'
import { Decoder, Frame, StreamInit, WireError } from '../src/index.js'

type Event = { readonly init: StreamInit.StreamInit } | { readonly message: string }

/** Feeds the chunks and records what comes out (messages copied: the views are only valid in the callback). */
const run = (chunks: ReadonlyArray<Uint8Array>, options: Decoder.DecoderOptions = {}) => {
  const decoder = Decoder.make(options)
  const events: Array<Event> = []
  const sink: Decoder.Sink = {
    onStreamInit: (init) => events.push({ init }),
    onMessage: (payload) => events.push({ message: Buffer.from(payload).toString('hex') })
  }
  for (const chunk of chunks) decoder.push(chunk, sink)
  decoder.end()
  return events
}

const concat = (parts: ReadonlyArray<Uint8Array>) => new Uint8Array(Buffer.concat(parts))
const splitAt = (bytes: Uint8Array, cuts: ReadonlyArray<number>) => {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)
  const out: Array<Uint8Array> = []
  let last = 0
  for (const p of points) {
    out.push(bytes.subarray(last, p))
    last = p
  }
  out.push(bytes.subarray(last))
  return out
}

const stream = (init: StreamInit.StreamInit, payloads: ReadonlyArray<Uint8Array>) => concat([StreamInit.encode(init), Frame.encodeMessages(payloads)])

describe('Frame', () => {
  it('golden vectors: [u32 BE length][payload]', () => {
    expect(Buffer.from(Frame.encodeMessage(new Uint8Array([0xde, 0xad]))).toString('hex')).toBe('00000002dead')
    expect(Buffer.from(Frame.encodeMessage(new Uint8Array(0))).toString('hex')).toBe('00000000')
    expect(Buffer.from(Frame.encodeMessages([new Uint8Array([1]), new Uint8Array([2, 3])])).toString('hex')).toBe('0000000101' + '000000020203')
  })

  it('refuses a payload over the maximum before writing anything', () => {
    expect(() => Frame.encodeMessage(new Uint8Array(11), 10)).toThrow(WireError)
    expect(() => Frame.encodeMessages([new Uint8Array(1), new Uint8Array(11)], 10)).toThrow(/exceeds the maximum of 10/)
  })

  it('encodeHeader is the frame without its payload, for a payload written separately', () => {
    expect(Buffer.from(Frame.encodeHeader(0x01020304, 0x7fffffff)).toString('hex')).toBe('01020304')
    const payload = new Uint8Array([7, 8, 9])
    expect(Buffer.concat([Frame.encodeHeader(payload.byteLength), payload])).toEqual(Buffer.from(Frame.encodeMessage(payload)))
    expect(() => Frame.encodeHeader(11, 10)).toThrow(WireError)
  })

  it('encodeMessageInto writes several messages into one buffer', () => {
    const out = new Uint8Array(4 + 3 + 4 + 1)
    let o = Frame.encodeMessageInto(out, 0, new Uint8Array([1, 2, 3]))
    o = Frame.encodeMessageInto(out, o, new Uint8Array([4]))
    expect(o).toBe(out.length)
    expect(Buffer.from(out).toString('hex')).toBe('00000003010203' + '0000000104')
  })
})

describe('Decoder', () => {
  const init = { appId: 'SYSTEM-MYCEL', streamName: 'bucket:sessions' }
  const payloads = [new Uint8Array(0), new Uint8Array([1]), new Uint8Array(300).fill(7), new Uint8Array(70_000).map((_, i) => i & 0xff)]
  const bytes = stream(init, payloads)
  const expected: Array<Event> = [{ init }, ...payloads.map((p) => ({ message: Buffer.from(p).toString('hex') }))]

  it('decodes STREAM_INIT then every message from one chunk', () => {
    expect(run([bytes])).toEqual(expected)
  })

  it('decodes the same from 1-byte chunks', () => {
    const chunks = Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1))
    expect(run(chunks)).toEqual(expected)
  })

  it('decodes the same from any split of the stream (fast-check)', () => {
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 40 }), (cuts) => {
        expect(run(splitAt(bytes, cuts))).toEqual(expected)
      }),
      { numRuns: 500 }
    )
  })

  it('round-trips random streams split at random points (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.record({ appId: fc.string({ minLength: 1, maxLength: 40 }), streamName: fc.string({ maxLength: 40 }) }),
        fc.array(fc.uint8Array({ maxLength: 2_000 }), { maxLength: 20 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        (i, ps, cuts) => {
          const events = run(splitAt(stream(i, ps), cuts))
          expect(events).toEqual([{ init: i }, ...ps.map((p) => ({ message: Buffer.from(p).toString('hex') }))])
        }
      ),
      { numRuns: 1_000 }
    )
  })

  it('hands out messages wholly inside a chunk as views of it (no copy)', () => {
    const chunk = stream(init, [new Uint8Array([9, 9, 9])])
    let view: Uint8Array | undefined
    Decoder.make().push(chunk, { onMessage: (p) => (view = p) })
    expect(view!.buffer).toBe(chunk.buffer)
  })

  it('copies what it keeps across chunks: the caller may reuse its read buffer', () => {
    const data = stream(init, [new Uint8Array(100).fill(5)])
    const decoder = Decoder.make()
    const scratch = new Uint8Array(16)
    const out: Array<Uint8Array> = []
    for (let o = 0; o < data.length; o += 16) {
      const n = Math.min(16, data.length - o)
      scratch.set(data.subarray(o, o + n))
      decoder.push(scratch.subarray(0, n), { onMessage: (p) => out.push(new Uint8Array(p)) })
      scratch.fill(0xee)
    }
    expect(out).toHaveLength(1)
    expect(out[0]!.every((b) => b === 5)).toBe(true)
  })

  it('refuses a length over the maximum at once, before buffering the body', () => {
    const decoder = Decoder.make({ maxMessageSize: 1024 })
    const head = concat([StreamInit.encode(init), new Uint8Array([0, 0, 4, 1])])
    expect(() => decoder.push(head, { onMessage: () => {} })).toThrow(expect.objectContaining({ reason: 'FrameTooLarge' }))
    expect(decoder.bufferedBytes).toBe(0)
    // poisoned: the same error again
    expect(() => decoder.push(new Uint8Array([1]), { onMessage: () => {} })).toThrow(expect.objectContaining({ reason: 'FrameTooLarge' }))
  })

  it('a 16 MiB length header followed by a few bytes allocates for the bytes, not for the header', () => {
    const decoder = Decoder.make({ streamInit: false })
    const before = process.memoryUsage().arrayBuffers
    decoder.push(new Uint8Array([0x01, 0x00, 0x00, 0x00, 1, 2, 3]), { onMessage: () => {} })
    const grown = process.memoryUsage().arrayBuffers - before
    // the 16 MiB the header claims are not allocated (a decoder that trusts the header grows by exactly that)
    expect(grown).toBeLessThan(1024 * 1024)
    expect(decoder.bufferedBytes).toBe(3)
    expect(decoder.reservedBytes).toBeLessThanOrEqual(Decoder.INITIAL_BODY_BYTES)
    expect(() => decoder.end()).toThrow(expect.objectContaining({ reason: 'UnexpectedEof' }))
  })

  it('a large message in small chunks: the buffer grows with what arrived and ends exactly at its length, owned', () => {
    const size = 1024 * 1024 + 17
    const payload = new Uint8Array(size).map((_, i) => (i * 31) & 0xff)
    const data = Frame.encodeMessage(payload)
    const decoder = Decoder.make({ streamInit: false })
    const received: Array<{ payload: Uint8Array; owned: boolean }> = []
    for (let o = 0; o < data.length; o += 1000) {
      decoder.push(data.subarray(o, o + 1000), { onMessage: (p, owned) => received.push({ payload: p, owned }) })
      expect(decoder.reservedBytes).toBeLessThanOrEqual(Math.max(Decoder.INITIAL_BODY_BYTES, 2 * decoder.bufferedBytes))
    }
    decoder.end()
    expect(received).toHaveLength(1)
    expect(received[0]!.owned).toBe(true)
    // a buffer of its own, exactly the message: nothing to slice, nothing wasted
    expect(received[0]!.payload.byteLength).toBe(size)
    expect(received[0]!.payload.buffer.byteLength).toBe(size)
    expect(Buffer.compare(received[0]!.payload, payload)).toBe(0)
    expect(decoder.reservedBytes).toBe(0)
  })

  it('with a budget, a split message takes its declared length once a sixteenth of it arrived, while the budget allows; gives it back when done, failed or disposed; past it, it is gathered', () => {
    const budget = Decoder.makeBudget(3 * 1024 * 1024)
    const size = 2 * 1024 * 1024
    const sixteenth = size / Decoder.RESERVE_FRACTION
    const payload = new Uint8Array(size).map((_, i) => (i * 7) & 0xff)
    const data = Frame.encodeMessage(payload)
    const one = Decoder.make({ streamInit: false, budget })
    const received: Array<Uint8Array> = []
    // a header and less than a sixteenth: nothing taken from the budget
    one.push(data.subarray(0, 4 + sixteenth - 1), { onMessage: (p) => received.push(p) })
    expect(budget.reserved()).toBe(0)
    expect(one.reservedBytes).toBeLessThanOrEqual(2 * one.bufferedBytes)
    // the sixteenth: the whole declared length, from the budget
    one.push(data.subarray(4 + sixteenth - 1, 4 + sixteenth), { onMessage: (p) => received.push(p) })
    expect(one.reservedBytes).toBe(size)
    expect(budget.reserved()).toBe(size)
    // a second stream's message does not fit what is left: gathered as it arrives, not taken from the budget
    const two = Decoder.make({ streamInit: false, budget })
    two.push(data.subarray(0, 4 + 2 * sixteenth), { onMessage: () => {} })
    expect(two.reservedBytes).toBeLessThanOrEqual(Math.max(Decoder.INITIAL_BODY_BYTES, 2 * two.bufferedBytes))
    expect(budget.reserved()).toBe(size)
    for (let o = 4 + sixteenth; o < data.length; o += 65_536) one.push(data.subarray(o, o + 65_536), { onMessage: (p) => received.push(p) })
    expect(received).toHaveLength(1)
    expect(Buffer.compare(received[0]!, payload)).toBe(0)
    expect(budget.reserved()).toBe(0)
    // a stream that is reset or fails mid-message gives its reservation back
    const three = Decoder.make({ streamInit: false, budget })
    three.push(data.subarray(0, 4 + sixteenth), { onMessage: () => {} })
    expect(budget.reserved()).toBe(size)
    three.dispose()
    expect(budget.reserved()).toBe(0)
    const four = Decoder.make({ streamInit: false, budget })
    four.push(data.subarray(0, 4 + sixteenth), { onMessage: () => {} })
    expect(() => four.end()).toThrow(expect.objectContaining({ reason: 'UnexpectedEof' }))
    expect(budget.reserved()).toBe(0)
    // the second stream's message still completes, gathered
    const rest: Array<Uint8Array> = []
    for (let o = 4 + 2 * sixteenth; o < data.length; o += 65_536) two.push(data.subarray(o, o + 65_536), { onMessage: (p) => rest.push(p) })
    expect(Buffer.compare(rest[0]!, payload)).toBe(0)
  })

  it('many streams claiming large messages hold about what arrived, never what the headers claim; a disposed stream lets go of its part', () => {
    const size = 16 * 1024 * 1024
    const head = new Uint8Array([0x01, 0x00, 0x00, 0x00])
    // one read buffer, reused as a transport does, so what grows is the decoders' own memory
    const chunk = new Uint8Array(64 * 1024)
    const before = process.memoryUsage().arrayBuffers
    // 32 streams of one peer, each a 16 MiB header and 256 KiB of body
    const streams = Array.from({ length: 32 }, () => Decoder.make({ streamInit: false }))
    for (const d of streams) {
      d.push(head, { onMessage: () => {} })
      for (let i = 0; i < 4; i++) d.push(chunk.fill(i), { onMessage: () => {} })
      expect(d.bufferedBytes).toBe(256 * 1024)
      expect(d.reservedBytes).toBeLessThanOrEqual(2 * d.bufferedBytes)
    }
    const grown = process.memoryUsage().arrayBuffers - before
    // 8 MiB arrived; the headers claim 512 MiB (a decoder that trusts them allocates that)
    expect(grown).toBeLessThan(2 * 32 * 256 * 1024)
    expect(grown).toBeLessThan(size)
    for (const d of streams) {
      d.dispose()
      expect(d.reservedBytes).toBe(0)
      expect(d.bufferedBytes).toBe(0)
    }
    // once half of a message arrived it is taken into one buffer of its declared length, and completes
    const payload = new Uint8Array(2 * 1024 * 1024).map((_, i) => (i * 7) & 0xff)
    const data = Frame.encodeMessage(payload)
    const one = Decoder.make({ streamInit: false })
    const received: Array<Uint8Array> = []
    for (let o = 0; o < data.length; o += 65_536) {
      one.push(data.subarray(o, o + 65_536), { onMessage: (p) => received.push(p) })
      if (received.length === 0) expect(one.reservedBytes).toBeLessThanOrEqual(Math.max(Decoder.INITIAL_BODY_BYTES, 2 * one.bufferedBytes))
    }
    expect(received).toHaveLength(1)
    expect(Buffer.compare(received[0]!, payload)).toBe(0)
  })

  it('an end inside a frame or before STREAM_INIT is UnexpectedEof', () => {
    const d1 = Decoder.make()
    d1.push(bytes.subarray(0, bytes.length - 1), { onMessage: () => {} })
    expect(() => d1.end()).toThrow(expect.objectContaining({ reason: 'UnexpectedEof' }))
    expect(() => Decoder.make().end()).toThrow(expect.objectContaining({ reason: 'UnexpectedEof' }))
    const d3 = Decoder.make({ streamInit: false })
    d3.push(new Uint8Array([0, 0]), { onMessage: () => {} })
    expect(() => d3.end()).toThrow(expect.objectContaining({ reason: 'UnexpectedEof' }))
  })

  it('without STREAM_INIT (the opener side) it reads messages from the first byte', () => {
    expect(run([Frame.encodeMessages([new Uint8Array([1, 2])])], { streamInit: false })).toEqual([{ message: '0102' }])
  })

  it('an unknown first byte is UnknownFrameType', () => {
    expect(() => run([new Uint8Array([0x02, 0, 1, 0x61, 0, 0])])).toThrow(expect.objectContaining({ reason: 'UnknownFrameType' }))
  })
})
