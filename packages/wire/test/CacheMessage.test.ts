import { describe, expect, it } from '@effect/vitest'
import { CacheMessage, SystemMessage, WireError } from '../src/index.js'

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')

describe('CacheMessage', () => {
  it('golden vectors', () => {
    expect(hex(CacheMessage.encode({ _tag: 'Get', id: 7, key: 'k' }))).toBe('0401' + '00000007' + '00016b')
    expect(hex(CacheMessage.encode({ _tag: 'Ack', id: 1, status: CacheMessage.AckStatus.BucketNotFound }))).toBe('0301' + '00000001' + '02')
    expect(hex(CacheMessage.encode({ _tag: 'Put', id: 2, key: 'k', value: new Uint8Array([9]), ts: 1, node: 'a', ttlMs: 0, ack: true }))).toBe(
      '0101' + '00000002' + '00016b' + '0000000109' + '3ff0000000000000' + '000161' + '00000000' + '01'
    )
    expect(hex(CacheMessage.encode({ _tag: 'GetResponse', id: 3, status: CacheMessage.GetStatus.Miss, value: new Uint8Array(0), ts: 0, node: '' }))).toBe(
      '0501' + '00000003' + '01' + '00000000' + '0000000000000000' + '0000'
    )
    expect(hex(CacheMessage.encode({ _tag: 'HandoffDone', epoch: 5 }))).toBe('0701' + '00000005')
    expect(hex(CacheMessage.encode({ _tag: 'BucketInfo', ttlMs: 1000, maxSize: 10, replicas: 2 }))).toBe('0801' + '408f400000000000' + '0000000a' + '02')
    expect(hex(CacheMessage.encode({ _tag: 'Ack', id: 4, status: CacheMessage.AckStatus.Refused }))).toBe('0301' + '00000004' + '03')
    expect(hex(CacheMessage.encode({ _tag: 'AckOlder', id: 5, ts: 1, node: 'a' }))).toBe('0a01' + '00000005' + '3ff0000000000000' + '000161')
    expect(
      hex(CacheMessage.encode({ _tag: 'HandoffBatch', id: 6, entries: [{ key: 'k', tombstone: false, value: new Uint8Array([9]), ts: 1, node: 'a', ttlLeftMs: 2 }] }))
    ).toBe('0901' + '00000006' + '00000001' + '00016b' + '00' + '0000000109' + '3ff0000000000000' + '000161' + '00000002')
    expect(hex(CacheMessage.encode({ _tag: 'SyncDigest', sums: [1, 0xffffffff] }))).toBe('0b01' + '00000002' + '00000001' + 'ffffffff')
    expect(hex(CacheMessage.encode({ _tag: 'SyncVersions', reply: true, ranges: [3], entries: [{ key: 'k', ts: 1, node: 'a' }] }))).toBe(
      '0c01' + '01' + '00000001' + '0003' + '00000001' + '00016b' + '3ff0000000000000' + '000161'
    )
    expect(
      hex(
        CacheMessage.encode({
          _tag: 'Atomic',
          id: 8,
          op: CacheMessage.AtomicOp.CompareAndSet,
          key: 'k',
          origin: 'a',
          seq: 1,
          hasExpected: true,
          expected: new Uint8Array([1]),
          value: new Uint8Array([2]),
          delta: 0,
          ttlMs: 0
        })
      )
    ).toBe('0d01' + '00000008' + '01' + '00016b' + '000161' + '3ff0000000000000' + '01' + '0000000101' + '0000000102' + '0000000000000000' + '00000000')
    expect(hex(CacheMessage.encode({ _tag: 'AtomicResponse', id: 9, status: CacheMessage.AtomicStatus.Applied, result: 2 }))).toBe('0e01' + '00000009' + '00' + '4000000000000000')
    expect(hex(CacheMessage.encode({ _tag: 'AtomicOps', key: 'k', ops: [{ origin: 'a', seq: 1, result: 2 }] }))).toBe(
      '0f02' + '00016b' + '00000001' + '000161' + '3ff0000000000000' + '4000000000000000' + '00'
    )
    expect(hex(CacheMessage.encode({ _tag: 'AtomicOps', key: 'k', ops: [{ origin: 'a', seq: 1, result: 2 }], final: true }))).toBe(
      '0f02' + '00016b' + '00000001' + '000161' + '3ff0000000000000' + '4000000000000000' + '01'
    )
    expect(hex(CacheMessage.encode({ _tag: 'AtomicFetch', id: 10, key: 'k' }))).toBe('1001' + '0000000a' + '00016b')
    expect(hex(CacheMessage.encode({ _tag: 'NearGet', id: 11, key: 'k', ttlMs: 1000 }))).toBe('1101' + '0000000b' + '00016b' + '000003e8')
    expect(hex(CacheMessage.encode({ _tag: 'NearInvalidate', key: 'k', ts: 1, node: 'a' }))).toBe('1201' + '00016b' + '3ff0000000000000' + '000161')
    expect(hex(CacheMessage.encode({ _tag: 'NearUpdate', key: 'k', value: new Uint8Array([0xab]), ts: 1, node: 'a' }))).toBe(
      '1401' + '00016b' + '00000001ab' + '3ff0000000000000' + '000161'
    )
    const versions: CacheMessage.SyncVersions = { _tag: 'SyncVersions', reply: false, ranges: [1, 2], entries: [{ key: 'k', ts: 1, node: 'a' }] }
    expect(CacheMessage.encode(versions).byteLength).toBe(CacheMessage.syncVersionsOverhead + 2 * 2 + CacheMessage.syncVersionSize('k', 'a'))
  })

  it('round-trips every message, with decoded values copied out of the input', () => {
    const all: ReadonlyArray<CacheMessage.CacheMessage> = [
      { _tag: 'Put', id: 1, key: 'sess:42', value: new Uint8Array([1, 2, 3]), ts: 1732000000000.25, node: 'n1', ttlMs: 60_000, ack: false },
      { _tag: 'Delete', id: 2, key: 'sess:42', ts: 1, node: 'n2', ttlMs: 0, ack: true },
      { _tag: 'Ack', id: 3, status: 0 },
      { _tag: 'Get', id: 4, key: '' },
      { _tag: 'SyncDigest', sums: [0, 7, 0xffffffff] },
      { _tag: 'SyncVersions', reply: true, ranges: [0, 63], entries: [{ key: 'é', ts: 1732000000000123, node: 'n1' }] },
      { _tag: 'GetResponse', id: 5, status: 0, value: new Uint8Array(100).fill(7), ts: 2, node: 'n3' },
      {
        _tag: 'Handoff',
        entries: [
          { key: 'a', tombstone: false, value: new Uint8Array([1]), ts: 3, node: 'n1', ttlLeftMs: 500 },
          { key: 'b', tombstone: true, value: new Uint8Array(0), ts: 4, node: 'n2', ttlLeftMs: 1 }
        ]
      },
      { _tag: 'HandoffDone', epoch: 9 },
      { _tag: 'BucketInfo', ttlMs: 60_000, maxSize: 1000, replicas: 2 },
      { _tag: 'HandoffBatch', id: 0xffffffff, entries: [{ key: 'c', tombstone: true, value: new Uint8Array(0), ts: 5, node: 'n4', ttlLeftMs: 9 }] },
      { _tag: 'AckOlder', id: 7, ts: 1732000000000123, node: 'n5' },
      {
        _tag: 'Atomic',
        id: 8,
        op: 2,
        key: 'counter:é',
        origin: 'n1',
        seq: 1732000000000123,
        hasExpected: false,
        expected: new Uint8Array(0),
        value: new Uint8Array(0),
        delta: -9007199254740991,
        ttlMs: 60_000
      },
      { _tag: 'Atomic', id: 9, op: 1, key: 'k', origin: 'n2', seq: 5, hasExpected: true, expected: new Uint8Array([1, 2]), value: new Uint8Array([3]), delta: 0, ttlMs: 0 },
      { _tag: 'AtomicResponse', id: 10, status: 3, result: 0 },
      { _tag: 'AtomicResponse', id: 11, status: 0, result: 9007199254740991 },
      { _tag: 'AtomicOps', key: 'c', ops: [{ origin: 'n1', seq: 2, result: 42 }, { origin: 'n2', seq: 3, result: 1 }], final: false },
      { _tag: 'AtomicOps', key: 'c', ops: [{ origin: 'n1', seq: 4, result: 43 }], final: true },
      { _tag: 'AtomicFetch', id: 12, key: 'c' },
      { _tag: 'NearGet', id: 13, key: 'user:é', ttlMs: 0xffffffff },
      { _tag: 'NearInvalidate', key: 'user:é', ts: 1732000000000123, node: 'n1' },
      { _tag: 'NearInvalidate', key: '', ts: 0, node: '' },
      { _tag: 'NearUpdate', key: 'user:é', value: new Uint8Array([1, 2, 3]), ts: 1732000000000123, node: 'n1' },
      { _tag: 'NearUpdate', key: '', value: new Uint8Array(0), ts: 0, node: '' }
    ]
    for (const m of all) {
      const buf = Buffer.from(CacheMessage.encode(m))
      const decoded = CacheMessage.decode(buf)
      buf.fill(0)
      expect(decoded).toEqual(m)
    }
  })

  it('refuses unknown statuses and short handoffs with WireError', () => {
    expect(() => CacheMessage.decode(Buffer.from('030100000001' + '09', 'hex'))).toThrow(WireError)
    expect(() => CacheMessage.decode(Buffer.from('0601' + 'ffffffff', 'hex'))).toThrow(expect.objectContaining({ reason: 'UnexpectedEof' }))
    expect(() => CacheMessage.decode(Buffer.from('0e01' + '00000009' + '0b' + '4000000000000000', 'hex'))).toThrow(WireError)
    expect(() => CacheMessage.decode(Buffer.from('0d01' + '00000008' + '03' + '00016b', 'hex'))).toThrow(WireError)
    expect(() => CacheMessage.decode(Buffer.from('0f02' + '00016b' + 'ffffffff', 'hex'))).toThrow(expect.objectContaining({ reason: 'UnexpectedEof' }))
    // version 1 (no final flag) is refused, not misread
    expect(() => CacheMessage.decode(Buffer.from('0f01' + '00016b' + '00000000', 'hex'))).toThrow(expect.objectContaining({ reason: 'UnsupportedVersion' }))
  })

  it('handoff batch sizes are exact', () => {
    const entries = [
      { key: 'kéy', tombstone: false, value: new Uint8Array(100), ts: 1, node: 'nöde', ttlLeftMs: 5 },
      { key: '', tombstone: true, value: new Uint8Array(0), ts: 2, node: 'n', ttlLeftMs: 5 }
    ]
    const bytes = CacheMessage.encode({ _tag: 'HandoffBatch', id: 1, entries })
    expect(bytes.length).toBe(CacheMessage.handoffBatchOverhead + entries.reduce((n, e) => n + CacheMessage.handoffEntrySize(e.key, e.value.length, e.node), 0))
  })

  it('atomic sizes are exact', () => {
    const m: CacheMessage.Atomic = { _tag: 'Atomic', id: 1, op: 0, key: 'kéy', origin: 'nöde', seq: 1, hasExpected: true, expected: new Uint8Array(3), value: new Uint8Array(10), delta: 0, ttlMs: 0 }
    expect(CacheMessage.encode(m).length).toBe(CacheMessage.atomicOverhead('kéy', 'nöde') + 13)
    const ops = CacheMessage.encode({ _tag: 'AtomicOps', key: '', ops: [{ origin: 'nöde', seq: 1, result: 1 }] })
    expect(ops.length).toBe(2 + 2 + 4 + CacheMessage.atomicRecordSize('nöde') + 1)
  })

  it('putOverhead is exact', () => {
    const value = new Uint8Array(10)
    const bytes = CacheMessage.encode({ _tag: 'Put', id: 1, key: 'kéy', value, ts: 1, node: 'nöde', ttlMs: 0, ack: true })
    expect(bytes.length).toBe(CacheMessage.putOverhead('kéy', 'nöde') + value.length)
  })

  describe('Batch', () => {
    const get: CacheMessage.CacheMessage = { _tag: 'Get', id: 7, key: 'k' }
    const ack: CacheMessage.CacheMessage = { _tag: 'Ack', id: 1, status: CacheMessage.AckStatus.Stored }
    const encodeAll = (messages: ReadonlyArray<CacheMessage.CacheMessage | undefined>, maxBytes: number) => {
      const w = new SystemMessage.Writer()
      const out: Array<string> = []
      const failed: Array<number> = []
      for (let i = 0; i < messages.length; ) {
        w.reset()
        i = CacheMessage.encodeBatch(w, messages, i, maxBytes, (j) => failed.push(j))
        if (w.length > 0) out.push(hex(w.finish()))
      }
      return { out, failed }
    }
    const decodeAll = (bytes: Uint8Array) => {
      const messages: Array<CacheMessage.CacheMessage> = []
      const errors: Array<string> = []
      CacheMessage.decodeEach(bytes, (m) => messages.push(m), (e) => errors.push(e.reason))
      return { messages, errors }
    }

    it('golden vector: two messages in one envelope, one alone as itself', () => {
      expect(encodeAll([get, ack], 1_000).out).toEqual(['1301' + '00000002' + '00000009' + '0401' + '00000007' + '00016b' + '00000007' + '0301' + '00000001' + '00'])
      expect(encodeAll([get], 1_000).out).toEqual([hex(CacheMessage.encode(get))])
      expect(decodeAll(Buffer.from(encodeAll([get, ack], 1_000).out[0]!, 'hex'))).toEqual({ messages: [get, ack], errors: [] })
    })

    it('splits at maxBytes, keeps the order, and sends a message over maxBytes alone', () => {
      const puts = Array.from({ length: 10 }, (_, i): CacheMessage.CacheMessage => ({ _tag: 'Put', id: i, key: `k${i}`, value: new Uint8Array(100), ts: 1, node: 'a', ttlMs: 0, ack: true }))
      const one = CacheMessage.encode(puts[0]!).length
      const max = CacheMessage.batchOverhead + 3 * (CacheMessage.batchEntryOverhead + one)
      const { out } = encodeAll(puts, max)
      expect(out.length).toBe(4)
      const back = out.flatMap((h) => decodeAll(Buffer.from(h, 'hex')).messages)
      expect(back).toEqual(puts)
      for (const h of out) expect(h.length / 2).toBeLessThanOrEqual(max)
      // a single message larger than maxBytes still goes (the stream refuses it with a clear error)
      expect(encodeAll([puts[0]!, puts[1]!], 10).out).toEqual([hex(CacheMessage.encode(puts[0]!)), hex(CacheMessage.encode(puts[1]!))])
    })

    it('leaves out a message that cannot be encoded and reports it; skips holes', () => {
      const bad: CacheMessage.CacheMessage = { _tag: 'Get', id: -1, key: 'x' }
      const { out, failed } = encodeAll([get, bad, undefined, ack], 1_000)
      expect(failed).toEqual([1])
      expect(decodeAll(Buffer.from(out[0]!, 'hex')).messages).toEqual([get, ack])
      expect(encodeAll([bad], 1_000)).toEqual({ out: [], failed: [0] })
    })

    it('decode refuses an envelope; decodeEach reports malformed parts and keeps the rest', () => {
      const batch = Buffer.from(encodeAll([get, ack], 1_000).out[0]!, 'hex')
      expect(() => CacheMessage.decode(batch)).toThrow(expect.objectContaining({ reason: 'UnknownMessageType' }))
      // a malformed message inside: the others are still handed over
      const broken = Buffer.from(batch)
      broken[10] = 0x7f // the Get's type byte
      expect(decodeAll(broken)).toEqual({ messages: [ack], errors: ['UnknownMessageType'] })
      // an envelope inside an envelope
      const nested = Buffer.from('1301' + '00000001' + '0000000a' + hex(batch).slice(0, 20), 'hex')
      expect(decodeAll(nested).errors).toEqual(['InvalidField'])
      // a count the bytes cannot hold, another version, trailing bytes
      expect(decodeAll(Buffer.from('1301' + 'ffffffff', 'hex')).errors).toEqual(['UnexpectedEof'])
      expect(decodeAll(Buffer.from('1302' + '00000000', 'hex')).errors).toEqual(['UnsupportedVersion'])
      expect(decodeAll(Buffer.concat([batch, Buffer.from('00', 'hex')]))).toEqual({ messages: [get, ack], errors: ['TrailingBytes'] })
      expect(decodeAll(Buffer.from('1301' + '00000002' + '00000009' + '0401' + '00000007' + '00016b', 'hex'))).toEqual({ messages: [get], errors: ['UnexpectedEof'] })
      // a message shorter than its fields ends where its length says: it never reads into the next one
      const short = Buffer.from('1301' + '00000002' + '00000006' + '0401' + '00000007' + '00000007' + '0301' + '00000009' + '00', 'hex')
      expect(decodeAll(short)).toEqual({ messages: [{ _tag: 'Ack', id: 9, status: 0 }], errors: ['UnexpectedEof'] })
    })
  })
})

