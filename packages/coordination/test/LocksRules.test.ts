import { describe, expect, it } from 'vitest'
import { afterRenew, candidateDelayMs, nextRenewMs, renewEveryMs } from '../src/internal/elections.js'
import {
  acquireNext,
  backoffMs,
  decodeRecord,
  encodeRecord,
  extendNext,
  holderAt,
  invalidName,
  invalidTtl,
  isFree,
  leaseDeadline,
  type LockRecord,
  MAX_TOKEN,
  releaseNext,
  retryDelayMs,
  sameBytes
} from '../src/internal/locks.js'

const SKEW = 1_000

describe('lock records', () => {
  it('encode and decode round-trip, compactly', () => {
    const r: LockRecord = { holder: 'node-é-1', token: 0xfedc_ba98_7654_3210n, leaseUntil: 1_765_000_000_123, released: false }
    const bytes = encodeRecord(r)
    expect(bytes.byteLength).toBe(17 + new TextEncoder().encode('node-é-1').byteLength)
    expect(decodeRecord(bytes)).toEqual(r)
    expect(decodeRecord(encodeRecord({ ...r, released: true }))).toEqual({ ...r, released: true })
  })

  it('bytes that are not a record decode to undefined', () => {
    expect(decodeRecord(new Uint8Array(0))).toBeUndefined()
    expect(decodeRecord(new TextEncoder().encode('17'))).toBeUndefined()
    const bytes = encodeRecord({ holder: 'a', token: 1n, leaseUntil: 5, released: false })
    bytes[0] = 0x20
    expect(decodeRecord(bytes)).toBeUndefined()
    const bad = encodeRecord({ holder: 'a', token: 1n, leaseUntil: 5, released: false })
    bad[17] = 0xff
    expect(decodeRecord(bad)).toBeUndefined()
  })

  it('validates names and leases', () => {
    expect(invalidName('invoice-42')).toBeUndefined()
    expect(invalidName('')).toBeDefined()
    expect(invalidName('x'.repeat(201))).toBeDefined()
    expect(invalidName('\uD800')).toBeDefined()
    expect(invalidTtl(10_000)).toBeUndefined()
    expect(invalidTtl(0)).toBeDefined()
    expect(invalidTtl(1.5)).toBeDefined()
    expect(invalidTtl(25 * 3_600_000)).toBeDefined()
  })
})

describe('lock transitions', () => {
  it('absent -> held with token 1; held -> refused for everyone, the holder included', () => {
    const first = acquireNext(undefined, 'a', 1_000, 500, SKEW)
    expect(first).toEqual({ holder: 'a', token: 1n, leaseUntil: 1_500, released: false })
    expect(acquireNext(first, 'b', 1_200, 500, SKEW)).toBeUndefined()
    expect(acquireNext(first, 'a', 1_200, 500, SKEW)).toBeUndefined()
  })

  it('a lease counts as held until it ended more than the clock-skew allowance ago', () => {
    const held = acquireNext(undefined, 'a', 1_000, 500, SKEW)!
    expect(isFree(held, 1_500, SKEW)).toBe(false)
    expect(isFree(held, 2_500, SKEW)).toBe(false)
    expect(holderAt(held, 2_500, SKEW)).toBe('a')
    expect(isFree(held, 2_501, SKEW)).toBe(true)
    expect(holderAt(held, 2_501, SKEW)).toBeUndefined()
    expect(acquireNext(held, 'b', 2_501, 500, SKEW)).toEqual({ holder: 'b', token: 2n, leaseUntil: 3_001, released: false })
  })

  it('released -> free at once; the token continues', () => {
    const held = acquireNext(undefined, 'a', 1_000, 500, SKEW)!
    const released = releaseNext(held)
    expect(released).toEqual({ ...held, released: true })
    expect(isFree(released, 1_001, SKEW)).toBe(true)
    expect(holderAt(released, 1_001, SKEW)).toBeUndefined()
    expect(acquireNext(released, 'b', 1_001, 500, SKEW)!.token).toBe(2n)
  })

  it('extend keeps the token and never shortens the lease', () => {
    const held = acquireNext(undefined, 'a', 1_000, 500, SKEW)!
    expect(extendNext(held, 1_200, 1_000)).toEqual({ ...held, leaseUntil: 2_200 })
    expect(extendNext(held, 1_200, 100)).toEqual(held)
  })

  it('tokens strictly increase over any sequence of transitions', () => {
    let record: LockRecord | undefined
    let now = 0
    const granted: Array<bigint> = []
    let seed = 7
    const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31)
    for (let i = 0; i < 2_000; i++) {
      now += Math.floor(random() * 400)
      const who = ['a', 'b', 'c'][Math.floor(random() * 3)]!
      const next = acquireNext(record, who, now, 300, 50)
      if (next !== undefined) {
        granted.push(next.token)
        record = next
        const r = random()
        if (r < 0.3) record = releaseNext(record)
        else if (r < 0.6) record = extendNext(record, now + 10, 300)
      }
    }
    expect(granted.length).toBeGreaterThan(100)
    for (let i = 1; i < granted.length; i++) expect(granted[i]! > granted[i - 1]!).toBe(true)
  })

  it('the last token is not granted past 2^64 - 1', () => {
    expect(acquireNext({ holder: 'a', token: MAX_TOKEN, leaseUntil: 0, released: true }, 'b', 10, 100, 0)).toBeUndefined()
  })
})

describe('lease and retry arithmetic', () => {
  it("the holder's lease runs from when it sent the acquire", () => {
    expect(leaseDeadline(100, 500)).toBe(600)
  })

  it('backoff grows to its bound, with jitter in [½, 1]', () => {
    expect(backoffMs(0, 0)).toBe(3)
    expect(backoffMs(0, 0.999)).toBe(5)
    expect(backoffMs(3, 0.999)).toBe(40)
    expect(backoffMs(50, 0.999)).toBe(250)
    expect(backoffMs(50, 0)).toBe(125)
  })

  it('a waiter wakes when the seen lease frees, and never past its wait', () => {
    const held: LockRecord = { holder: 'a', token: 1n, leaseUntil: 1_000, released: false }
    expect(retryDelayMs(10, 0.999, held, 990, 5, 10_000)).toBe(16)
    expect(retryDelayMs(10, 0.999, held, 0, 5, 10_000)).toBe(250)
    expect(retryDelayMs(10, 0.999, held, 0, 5, 40)).toBe(40)
    expect(retryDelayMs(10, 0.999, undefined, 0, 5, 0)).toBe(0)
  })

  it('compares bytes', () => {
    expect(sameBytes(new Uint8Array([1, 2]), new Uint8Array([1, 2]))).toBe(true)
    expect(sameBytes(new Uint8Array([1, 2]), new Uint8Array([1, 3]))).toBe(false)
    expect(sameBytes(undefined, undefined)).toBe(true)
    expect(sameBytes(undefined, new Uint8Array(0))).toBe(false)
  })
})

describe('election rules', () => {
  it('a leader renews every third of its lease; after a failed renewal, sooner while the lease runs', () => {
    expect(renewEveryMs(9_000)).toBe(3_000)
    expect(renewEveryMs(2)).toBe(1)
    expect(nextRenewMs('renewed', 9_000, 9_000)).toBe(3_000)
    expect(nextRenewMs('failed', 9_000, 4_000)).toBe(2_000)
    expect(nextRenewMs('failed', 9_000, 1)).toBe(1)
  })

  it('a renewal that found the lock taken revokes at once; an unanswered one only once the lease passed', () => {
    expect(afterRenew('renewed', 0)).toBe('leader')
    expect(afterRenew('lost', 5_000)).toBe('revoked')
    expect(afterRenew('failed', 5_000)).toBe('leader')
    expect(afterRenew('failed', 0)).toBe('revoked')
  })

  it('a candidate tries again at its interval, or when the seen lease frees if sooner', () => {
    const held: LockRecord = { holder: 'a', token: 3n, leaseUntil: 10_000, released: false }
    expect(candidateDelayMs(1_000, undefined, 0, 100)).toBe(1_000)
    expect(candidateDelayMs(1_000, held, 0, 100)).toBe(1_000)
    expect(candidateDelayMs(1_000, held, 9_800, 100)).toBe(301)
    expect(candidateDelayMs(1_000, releaseNext(held), 0, 100)).toBe(1_000)
  })
})
