import { describe, expect, it } from 'vitest'
import { Outbox } from '../src/internal/outbox.js'

describe('Outbox (the write half shared by the QUIC and memory streams)', () => {
  it('keeps an owned chunk as it is and releases it once the medium took all of it; copies the rest at once', () => {
    const out = new Outbox(1_000)
    const released: Array<string> = []
    const owned = new Uint8Array([1, 2, 3, 4])
    const borrowed = new Uint8Array([5, 6])
    out.push(owned, 1, true, () => released.push('owned'))
    out.push(borrowed, 0, false, () => released.push('borrowed'))
    // the borrowed chunk was copied: released at once, and the caller may change it
    expect(released).toEqual(['borrowed'])
    borrowed[0] = 99
    expect(out.bytes).toBe(5)
    expect([...out.head()]).toEqual([2, 3, 4])
    expect(out.head().buffer).toBe(owned.buffer)
    expect(out.consume(2)).toBe(false)
    expect([...out.head()]).toEqual([4])
    expect(released).toEqual(['borrowed'])
    expect(out.consume(1)).toBe(true)
    expect(released).toEqual(['borrowed', 'owned'])
    expect([...out.head()]).toEqual([5, 6])
    expect(out.consume(2)).toBe(true)
    expect(out.isEmpty()).toBe(true)
    expect(out.bytes).toBe(0)
  })

  it('asks for a drain at the high-water mark and grants it once, below it', () => {
    const out = new Outbox(4)
    out.push(new Uint8Array(3), 0, false, undefined)
    expect(out.accepts()).toBe(true)
    expect(out.drainDue()).toBe(false)
    out.push(new Uint8Array(2), 0, false, undefined)
    expect(out.accepts()).toBe(false)
    expect(out.drainDue()).toBe(false)
    out.consume(3)
    expect(out.drainDue()).toBe(true)
    expect(out.drainDue()).toBe(false)
  })

  it('FIN goes after the queued bytes, once', () => {
    const out = new Outbox(10)
    out.push(new Uint8Array(1), 0, false, undefined)
    out.finQueued = true
    expect(out.finDue()).toBe(false)
    out.consume(1)
    expect(out.finDue()).toBe(true)
    out.finSent = true
    expect(out.finDue()).toBe(false)
  })

  it('clear releases every owned chunk still queued', () => {
    const out = new Outbox(10)
    let released = 0
    out.push(new Uint8Array(4), 0, true, () => released++)
    out.push(new Uint8Array(4), 0, true, () => released++)
    out.consume(1)
    out.clear()
    expect(released).toBe(2)
    expect(out.isEmpty()).toBe(true)
    expect(out.bytes).toBe(0)
  })
})
