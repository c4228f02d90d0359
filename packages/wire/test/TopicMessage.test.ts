import { describe, expect, it } from '@effect/vitest'
import { TopicMessage, WireError } from '../src/index.js'

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')

describe('TopicMessage', () => {
  it('golden vectors', () => {
    expect(hex(TopicMessage.encode({ _tag: 'Interest', epoch: 7, seq: 2, topics: ['a', 'bc'] }))).toBe(
      '0101' + '00000007' + '00000002' + '00000002' + '000161' + '00026263'
    )
    expect(hex(TopicMessage.encode({ _tag: 'InterestAck', epoch: 7, seq: 2 }))).toBe('0201' + '00000007' + '00000002')
    expect(hex(TopicMessage.encode({ _tag: 'Publish', seq: 1, payload: new Uint8Array([9, 8]) }))).toBe('0301' + '00000001' + '00000002' + '0908')
    expect(hex(TopicMessage.encode({ _tag: 'Delivered', topic: 'orders', seq: 0xffffffff }))).toBe('0401' + '0006' + hex(Buffer.from('orders')) + 'ffffffff')
  })

  it('round-trips every message; the Publish overhead is exact', () => {
    const all: ReadonlyArray<TopicMessage.TopicMessage> = [
      { _tag: 'Interest', epoch: 0xffffffff, seq: 1, topics: [] },
      { _tag: 'Interest', epoch: 1, seq: 9, topics: ['orders', 'invalidations:sessions', 'ü'] },
      { _tag: 'InterestAck', epoch: 1, seq: 9 },
      { _tag: 'Publish', seq: 3, payload: new Uint8Array(1000).fill(5) },
      { _tag: 'Delivered', topic: 'orders', seq: 3 }
    ]
    for (const m of all) {
      const bytes = TopicMessage.encode(m)
      expect(TopicMessage.decode(bytes)).toEqual(m)
      if (m._tag === 'Publish') expect(bytes.byteLength).toBe(m.payload.byteLength + TopicMessage.publishOverhead)
    }
  })

  it('refuses truncated, oversized and unknown input with WireError', () => {
    const interest = TopicMessage.encode({ _tag: 'Interest', epoch: 1, seq: 1, topics: ['orders'] })
    for (let n = 0; n < interest.byteLength; n++) expect(() => TopicMessage.decode(interest.subarray(0, n))).toThrow(WireError)
    // a count that claims more topics than bytes left
    expect(() => TopicMessage.decode(Buffer.from('0101' + '00000001' + '00000001' + 'ffffffff', 'hex'))).toThrow(expect.objectContaining({ reason: 'UnexpectedEof' }))
    expect(() => TopicMessage.decode(Buffer.from('0901', 'hex'))).toThrow(expect.objectContaining({ reason: 'UnknownMessageType' }))
    expect(() => TopicMessage.decode(Buffer.from('0202' + '00000001' + '00000001', 'hex'))).toThrow(expect.objectContaining({ reason: 'UnsupportedVersion' }))
    expect(() => TopicMessage.decode(Buffer.from('0201' + '00000001' + '0000000100', 'hex'))).toThrow(expect.objectContaining({ reason: 'TrailingBytes' }))
  })
})
