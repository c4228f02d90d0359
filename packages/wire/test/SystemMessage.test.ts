import { describe, expect, it } from '@effect/vitest'
import fc from 'fast-check'
import { ControlMessage, SystemMessage, WireError } from '../src/index.js'
import { isWellFormed } from '../src/internal/utf8.js'

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')
const fromHex = (h: string) => new Uint8Array(Buffer.from(h, 'hex'))
const reasonOf = (f: () => unknown) => {
  try {
    f()
  } catch (e) {
    expect(e).toBeInstanceOf(WireError)
    return (e as WireError).reason
  }
  throw new Error('expected a WireError')
}

// An example family, as a system application would declare one.
interface Greet {
  readonly _tag: 'Greet'
  readonly name: string
  readonly times: number
  readonly note: string | undefined
}
interface Bye {
  readonly _tag: 'Bye'
  readonly code: number
  readonly data: Uint8Array
}
const Example = SystemMessage.messageSet<Greet | Bye>('example', [
  SystemMessage.define<Greet>({
    tag: 'Greet',
    type: 0x41,
    version: 2,
    write: (w, m) => {
      w.string(m.name).u32(m.times).optional(m.note, (w2, n) => w2.string(n))
    },
    read: (r) => ({ _tag: 'Greet', name: r.string(), times: r.u32(), note: r.optional((r2) => r2.string()) })
  }),
  SystemMessage.define<Bye>({
    tag: 'Bye',
    type: 0x42,
    version: 1,
    write: (w, m) => {
      w.u16(m.code).bytes(m.data)
    },
    read: (r) => ({ _tag: 'Bye', code: r.u16(), data: r.bytesField().slice() })
  })
])

describe('SystemMessage toolkit', () => {
  it('a writer is reused: reset keeps its buffer, truncate and setU32 stay inside what was written', () => {
    const w = new SystemMessage.Writer(8)
    w.u32(0).string('a longer string than eight bytes')
    const grown = w.capacity
    w.setU32(0, 0xdeadbeef)
    expect(Buffer.from(w.finish().subarray(0, 4)).toString('hex')).toBe('deadbeef')
    w.truncate(4)
    expect(w.length).toBe(4)
    expect(() => w.truncate(5)).toThrow(WireError)
    expect(() => w.setU32(1, 1)).toThrow(WireError)
    expect(() => w.setU32(0, -1)).toThrow(WireError)
    w.reset()
    expect(w.length).toBe(0)
    expect(w.capacity).toBe(grown)
  })

  it('golden vectors: [type][version][fields]', () => {
    expect(hex(Example.encode({ _tag: 'Greet', name: 'hi', times: 3, note: undefined }))).toBe('4102' + '00026869' + '00000003' + '00')
    expect(hex(Example.encode({ _tag: 'Greet', name: '', times: 0, note: 'x' }))).toBe('4102' + '0000' + '00000000' + '01000178')
    expect(hex(Example.encode({ _tag: 'Bye', code: 258, data: new Uint8Array([0xff]) }))).toBe('4201' + '0102' + '00000001ff')
    expect(Example.decode(fromHex('42010102' + '00000001ff'))).toEqual({ _tag: 'Bye', code: 258, data: new Uint8Array([0xff]) })
  })

  it('typed errors for unknown type, version, short, trailing, bad optional tag, bad UTF-8', () => {
    expect(reasonOf(() => Example.decode(fromHex('99')))).toBe('UnknownMessageType')
    expect(reasonOf(() => Example.decode(fromHex('4101')))).toBe('UnsupportedVersion')
    expect(reasonOf(() => Example.decode(fromHex('4102000268')))).toBe('UnexpectedEof')
    expect(reasonOf(() => Example.decode(fromHex('420101020000000000')))).toBe('TrailingBytes')
    expect(reasonOf(() => Example.decode(fromHex('4102000000000000' + '02')))).toBe('InvalidField')
    expect(reasonOf(() => Example.decode(fromHex('41020001ff0000000000')))).toBe('InvalidUtf8')
    expect(reasonOf(() => Example.decode(new Uint8Array(0)))).toBe('UnexpectedEof')
  })

  it('writer refuses values it cannot encode', () => {
    expect(reasonOf(() => new SystemMessage.Writer().u8(256))).toBe('InvalidField')
    expect(reasonOf(() => new SystemMessage.Writer().u16(-1))).toBe('InvalidField')
    expect(reasonOf(() => new SystemMessage.Writer().u64(2 ** 53))).toBe('InvalidField')
    expect(reasonOf(() => new SystemMessage.Writer().string('x'.repeat(70_000)))).toBe('InvalidField')
    expect(reasonOf(() => new SystemMessage.Writer().string('\udc00'))).toBe('InvalidUtf8')
  })

  it('strings: ASCII and any other Unicode give the bytes of TextEncoder, one writer reused, read back at any offset of a Node Buffer (fast-check)', () => {
    const w = new SystemMessage.Writer(4)
    const strings = fc.oneof(
      fc.string({ maxLength: 80 }),
      fc.string({ unit: 'grapheme', maxLength: 40 }),
      fc.string({ unit: 'binary', maxLength: 40 }).filter(isWellFormed)
    )
    fc.assert(
      fc.property(fc.array(strings, { maxLength: 5 }), fc.nat(20), (list, gap) => {
        w.reset()
        for (const s of list) w.string(s)
        const expected = list.flatMap((s) => {
          const utf8 = new TextEncoder().encode(s)
          return [utf8.length >> 8, utf8.length & 0xff, ...utf8]
        })
        expect([...w.finish()]).toEqual(expected)
        const r = new SystemMessage.Reader(w.finish())
        expect(list.map(() => r.string())).toEqual(list)
        r.finish()
        // as the transport hands them over: a view into a larger Node Buffer, bytes before and after
        const bytes = w.finish()
        const received = Buffer.alloc(gap + bytes.length + 7, 0x7a)
        received.set(bytes, gap)
        const r2 = new SystemMessage.Reader(received.subarray(gap, gap + bytes.length))
        expect(list.map(() => r2.string())).toEqual(list)
        r2.finish()
      }),
      { numRuns: 2_000 }
    )
  })

  it('bytesCopy: copies of any size keep their bytes when the source is reused and never overlap one another (fast-check)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 2_000 }), { minLength: 1, maxLength: 40 }), (sizes) => {
        const w = new SystemMessage.Writer(64)
        sizes.forEach((n, i) => w.bytes(new Uint8Array(n).fill((i % 250) + 1)))
        const source = Buffer.from(w.finish())
        const r = new SystemMessage.Reader(source)
        const copies = sizes.map(() => r.bytesCopy())
        r.finish()
        source.fill(0)
        copies.forEach((c, i) => {
          expect(c.byteLength).toBe(sizes[i])
          expect(c.every((b) => b === (i % 250) + 1)).toBe(true)
        })
        // writing one copy leaves every other one as it was
        copies.forEach((c) => c.fill(0xff))
        copies.forEach((c) => expect(c.every((b) => b === 0xff)).toBe(true))
        for (let i = 0; i < copies.length; i++) {
          copies[i]!.fill(0)
          for (let j = i + 1; j < copies.length; j++) expect(copies[j]!.every((b) => b === 0xff)).toBe(true)
        }
      }),
      { numRuns: 300 }
    )
  })

  it('decode: messages at any offset of shared buffers, read in turns from two buffers, give their own fields', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 65_535 }), fc.uint8Array({ maxLength: 20 }), fc.nat(30), fc.boolean()), { minLength: 1, maxLength: 12 }), (cases) => {
        const buffers = [new Uint8Array(4_096), new Uint8Array(4_096)]
        const at = [0, 0]
        const placed = cases.map(([code, data, gap, second]) => {
          const bytes = Example.encode({ _tag: 'Bye', code, data })
          const b = second ? 1 : 0
          at[b]! += gap
          buffers[b]!.set(bytes, at[b])
          const view = buffers[b]!.subarray(at[b], at[b]! + bytes.length)
          at[b]! += bytes.length
          return view
        })
        placed.forEach((view, i) => expect(Example.decode(view)).toEqual({ _tag: 'Bye', code: cases[i]![0], data: cases[i]![1] }))
      })
    )
  })

  it('encode: each call returns its own bytes; a failed call, a nested call and a large message leave later calls right', () => {
    const first = Example.encode({ _tag: 'Bye', code: 1, data: new Uint8Array([1, 2, 3]) })
    const second = Example.encode({ _tag: 'Bye', code: 2, data: new Uint8Array([4]) })
    expect(Example.decode(first)).toEqual({ _tag: 'Bye', code: 1, data: new Uint8Array([1, 2, 3]) })
    expect(Example.decode(second)).toEqual({ _tag: 'Bye', code: 2, data: new Uint8Array([4]) })
    // a message whose field is out of range fails half-written
    expect(reasonOf(() => Example.encode({ _tag: 'Bye', code: 70_000, data: new Uint8Array(0) }))).toBe('InvalidField')
    expect(hex(Example.encode({ _tag: 'Bye', code: 3, data: new Uint8Array(0) }))).toBe('4201000300000000')
    // a message larger than the kept buffer, then a small one
    expect(Example.encode({ _tag: 'Bye', code: 4, data: new Uint8Array(100_000) }).byteLength).toBe(2 + 2 + 4 + 100_000)
    expect(hex(Example.encode({ _tag: 'Bye', code: 5, data: new Uint8Array(0) }))).toBe('4201000500000000')
    // a codec that encodes another message of its own set while it writes
    interface Wrap {
      readonly _tag: 'Wrap'
      readonly inner: Bye
    }
    const Nested: SystemMessage.MessageSet<Wrap | Bye> = SystemMessage.messageSet<Wrap | Bye>('nested', [
      SystemMessage.define<Wrap>({
        tag: 'Wrap',
        type: 0x01,
        version: 1,
        write: (w, m) => {
          w.u8(7)
          w.bytes(Nested.encode(m.inner))
          w.u8(8)
        },
        read: (r) => {
          r.u8()
          const inner = Nested.decode(r.bytesField().slice()) as Bye
          r.u8()
          return { _tag: 'Wrap', inner }
        }
      }),
      SystemMessage.define<Bye>({ tag: 'Bye', type: 0x02, version: 1, write: (w, m) => void w.u16(m.code).bytes(m.data), read: (r) => ({ _tag: 'Bye', code: r.u16(), data: r.bytesField().slice() }) })
    ])
    const wrapped: Wrap = { _tag: 'Wrap', inner: { _tag: 'Bye', code: 9, data: new Uint8Array([9, 9]) } }
    expect(Nested.decode(Nested.encode(wrapped))).toEqual(wrapped)
    expect(Nested.decode(Nested.encode(wrapped))).toEqual(wrapped)
  })

  it('round-trips every field type (fast-check)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 100 }), fc.nat(), fc.option(fc.string(), { nil: undefined }), (name, times, note) => {
        const m: Greet = { _tag: 'Greet', name, times: times >>> 0, note }
        expect(Example.decode(Example.encode(m))).toEqual(m)
      }),
      { numRuns: 2_000 }
    )
    fc.assert(
      fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), fc.double(), fc.boolean(), (n, d, b) => {
        const bytes = new SystemMessage.Writer().u64(n).f64(d).bool(b).finish()
        const r = new SystemMessage.Reader(bytes)
        expect([r.u64(), r.f64(), r.bool()]).toEqual([n, d, b])
        r.finish()
      }),
      { numRuns: 2_000 }
    )
  })
})

describe('ControlMessage', () => {
  const hello: ControlMessage.Hello = {
    _tag: 'Hello',
    protocolVersion: 1,
    clusterId: 'c',
    nodeId: 'a',
    instanceId: 'i',
    host: '127.0.0.1',
    port: 7001,
    authMode: 'secret',
    nonce: new Uint8Array([1, 2])
  }

  it('golden vectors', () => {
    expect(hex(ControlMessage.encode(hello))).toBe(
      '0101' + '0001' + '000163' + '000161' + '000169' + '00093132372e302e302e31' + '1b59' + '00' + '000000020102'
    )
    expect(hex(ControlMessage.encode({ _tag: 'Auth', proof: new Uint8Array([0xab]) }))).toBe('0201' + '00000001ab')
    expect(hex(ControlMessage.encode({ _tag: 'Refuse', reason: 'R', message: 'm' }))).toBe('0301' + '000152' + '00016d')
    expect(hex(ControlMessage.encode({ _tag: 'Challenge', nonce: new Uint8Array([0xcd, 0xef]) }))).toBe('0401' + '00000002cdef')
    expect(hex(ControlMessage.encode({ _tag: 'Members', members: [{ nodeId: 'b', instanceId: 'j', host: 'h', port: 1 }] }))).toBe(
      '1001' + '00000001' + '000162' + '00016a' + '000168' + '0001'
    )
    expect(hex(ControlMessage.encode({ _tag: 'Leave' }))).toBe('1101')
    expect(hex(ControlMessage.encode({ _tag: 'Ping', seq: 1, sentAt: 0 }))).toBe('2001' + '00000001' + '0000000000000000')
    expect(hex(ControlMessage.encode({ _tag: 'Pong', seq: 2, sentAt: 1 }))).toBe('2101' + '00000002' + '3ff0000000000000')
  })

  it('round-trips every message', () => {
    const all: ReadonlyArray<ControlMessage.ControlMessage> = [
      hello,
      { ...hello, authMode: 'tls', nonce: new Uint8Array(32).fill(9) },
      { _tag: 'Auth', proof: new Uint8Array(32).fill(3) },
      { _tag: 'Refuse', reason: 'ClusterId', message: "cluster id 'x' is not this cluster's" },
      { _tag: 'Challenge', nonce: new Uint8Array(32).fill(5) },
      { _tag: 'Members', members: [] },
      { _tag: 'Leave' },
      { _tag: 'Ping', seq: 4_000_000_000, sentAt: 1_732_000_000_000.5 },
      { _tag: 'Pong', seq: 0, sentAt: 0 }
    ]
    for (const m of all) expect(ControlMessage.decode(ControlMessage.encode(m))).toEqual(m)
  })

  it('decoded byte fields are copies: the transport may reuse the buffer it read into', () => {
    const shared = Buffer.from(ControlMessage.encode(hello))
    const decoded = ControlMessage.decode(shared) as ControlMessage.Hello
    shared.fill(0)
    expect([...decoded.nonce]).toEqual([1, 2])
    const auth = Buffer.from(ControlMessage.encode({ _tag: 'Auth', proof: new Uint8Array([7, 7]) }))
    const proof = (ControlMessage.decode(auth) as ControlMessage.Auth).proof
    auth.fill(0)
    expect([...proof]).toEqual([7, 7])
  })

  it('refuses an auth mode byte other than 0 or 1, and a member count beyond the bytes', () => {
    const bytes = ControlMessage.encode(hello)
    const bad = bytes.slice()
    bad[bytes.length - 7] = 2
    expect(reasonOf(() => ControlMessage.decode(bad))).toBe('InvalidField')
    expect(reasonOf(() => ControlMessage.decode(fromHex('1001ffffffff')))).toBe('UnexpectedEof')
  })
})
