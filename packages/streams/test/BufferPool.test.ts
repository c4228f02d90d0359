import { describe, expect, it } from '@effect/vitest'
import { BufferPool, sizeClass } from '../src/internal/pool.js'

const KiB = 1024
const MiB = 1024 * KiB

/** A pool whose trim timer is driven by hand. */
const make = (maxRetainedBytes = 64 * MiB) => {
  const timers: Array<() => void> = []
  const pool = new BufferPool({
    minBytes: 64 * KiB,
    maxRetainedBytes,
    idleMs: 10_000,
    schedule: (_ms, f) => {
      timers.push(f)
      return () => {
        const i = timers.indexOf(f)
        if (i >= 0) timers.splice(i, 1)
      }
    }
  })
  const fire = () => timers.splice(0).forEach((f) => f())
  return { pool, fire, timers }
}

const filled = (n: number, value: number) => new Uint8Array(n).fill(value)

describe('BufferPool', () => {
  it('size classes are quarters of a power of two, never smaller than asked and at most 25 % larger', () => {
    expect(sizeClass(64 * KiB)).toBe(64 * KiB)
    expect(sizeClass(64 * KiB + 1)).toBe(80 * KiB)
    expect(sizeClass(10 * MiB)).toBe(10 * MiB)
    expect(sizeClass(10 * MiB + 1)).toBe(12 * MiB)
    for (const n of [1, 5, 1000, 65_537, 100_000, 3 * MiB + 7, 16 * MiB]) {
      expect(sizeClass(n)).toBeGreaterThanOrEqual(n)
      expect(sizeClass(n)).toBeLessThanOrEqual(Math.max(4, n * 1.25))
    }
  })

  it('a copy is equal to its source and independent of it', () => {
    const { pool } = make()
    const source = filled(100 * KiB, 7)
    const copy = pool.copy(source)
    source.fill(1)
    expect(copy.byteLength).toBe(100 * KiB)
    expect(copy.every((b) => b === 7)).toBe(true)
  })

  it('small copies are plain allocations and are not taken back', () => {
    const { pool } = make()
    const copy = pool.copy(filled(1000, 3))
    expect(pool.isLeased(copy)).toBe(false)
    expect(pool.releaser(copy)).toBeUndefined()
    pool.release(copy)
    expect(pool.retainedBytes).toBe(0)
  })

  it('a released buffer is reused by the next copy of its size class', () => {
    const { pool } = make()
    const first = pool.copy(filled(200 * KiB, 1))
    pool.release(first)
    expect(pool.retainedBytes).toBe(sizeClass(200 * KiB))
    // 200 and 210 KiB share the class of 224 KiB
    expect(sizeClass(210 * KiB)).toBe(sizeClass(200 * KiB))
    const second = pool.copy(filled(210 * KiB, 2))
    expect(second.buffer === first.buffer).toBe(true)
    expect(second.byteLength).toBe(210 * KiB)
    expect(second.every((b) => b === 2)).toBe(true)
    expect(pool.reused).toBe(1)
    expect(pool.allocated).toBe(1)
    expect(pool.retainedBytes).toBe(0)
  })

  it('a second release of the same copy, or of a foreign buffer, is ignored (no buffer is handed out twice)', () => {
    const { pool } = make()
    const copy = pool.copy(filled(100 * KiB, 1))
    pool.release(copy)
    pool.release(copy)
    pool.release(new Uint8Array(sizeClass(100 * KiB)))
    expect(pool.retainedBytes).toBe(sizeClass(100 * KiB))
    const a = pool.copy(filled(100 * KiB, 2))
    const b = pool.copy(filled(100 * KiB, 3))
    expect(a.buffer === b.buffer).toBe(false)
    expect(a.every((x) => x === 2)).toBe(true)
  })

  it('keeps at most maxRetainedBytes of free buffers', () => {
    const { pool } = make(1 * MiB)
    const copies = Array.from({ length: 8 }, () => pool.copy(filled(256 * KiB, 1)))
    for (const c of copies) pool.release(c)
    expect(pool.retainedBytes).toBe(1 * MiB)
  })

  it('drops its free buffers after a whole idle period without copies', () => {
    const { pool, fire, timers } = make()
    pool.release(pool.copy(filled(100 * KiB, 1)))
    expect(timers.length).toBe(1)
    // used since the timer was set: kept for another period
    pool.release(pool.copy(filled(100 * KiB, 1)))
    fire()
    expect(pool.retainedBytes).toBe(sizeClass(100 * KiB))
    expect(timers.length).toBe(1)
    fire()
    expect(pool.retainedBytes).toBe(0)
    expect(timers.length).toBe(0)
  })

  it('clear drops everything and the pending trim', () => {
    const { pool, timers } = make()
    pool.release(pool.copy(filled(100 * KiB, 1)))
    pool.clear()
    expect(pool.retainedBytes).toBe(0)
    expect(timers.length).toBe(0)
  })
})
