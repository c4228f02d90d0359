import { describe, expect, it } from '@effect/vitest'
import { createMycorrizal, type MycorrizalNode } from '../src/index.js'

const secret = 'locks-facade-secret-of-at-least-32-characters'
const waitFor = async (condition: () => boolean, what: string, ms = 15_000) => {
  const until = Date.now() + ms
  while (!condition()) {
    if (Date.now() > until) throw new Error(`${what} did not happen within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

describe('locks and elections (Promise facade over real QUIC)', () => {
  it('acquire, tryAcquire, extend, release with bigint tokens; LockTimeout; one leader, resign hands over', async () => {
    const nodes: Array<MycorrizalNode> = []
    try {
      const start = (nodeId: string, seeds: ReadonlyArray<string> = []) =>
        createMycorrizal({ nodeId, host: '127.0.0.1', port: 0, seeds: [...seeds], clusterSecret: secret, logLevel: 'none', heartbeatInterval: 100, failureTimeout: 1_000 })
      const a = await start('a')
      nodes.push(a)
      const seed = `127.0.0.1:${a.address.port}`
      nodes.push(await start('b', [seed]))
      await waitFor(() => nodes.every((n) => n.nodes().length === 2 && n.mycel.ready()), 'mesh of two')
      const b = nodes[1]!

      const lock = await a.locks.acquire('invoice-42', { ttlMs: 10_000, waitMs: 5_000 })
      expect(lock.token).toBe(1n)
      expect(lock.isHeld()).toBe(true)
      expect(await b.locks.tryAcquire('invoice-42', { ttlMs: 10_000 })).toBeUndefined()
      await expect(b.locks.acquire('invoice-42', { ttlMs: 10_000, waitMs: 200 })).rejects.toMatchObject({ _tag: 'LockTimeout', name: 'invoice-42', holder: 'a' })
      await lock.extend(10_000)
      expect(a.locks.stats().held).toEqual([expect.objectContaining({ name: 'invoice-42', token: 1n })])
      expect(await b.locks.inspect('invoice-42')).toEqual(expect.objectContaining({ holder: 'a', token: 1n, released: false }))
      await lock.release()
      expect(lock.isHeld()).toBe(false)
      const next = await b.locks.tryAcquire('invoice-42', { ttlMs: 10_000 })
      expect(next?.token).toBe(2n)
      await next!.release()
      await expect(a.locks.acquire('', { ttlMs: 1_000 })).rejects.toMatchObject({ _tag: 'CoordinationError', reason: 'InvalidLock' })

      const events: Array<string> = []
      const ea = await a.elect('nightly-report', { ttlMs: 2_000, onElected: (t) => void events.push(`a+${t}`), onRevoked: () => void events.push('a-') })
      const eb = await b.elect('nightly-report', { ttlMs: 2_000, onElected: (t) => void events.push(`b+${t}`), onRevoked: () => void events.push('b-') })
      expect(ea.isLeader()).toBe(true)
      expect(eb.isLeader()).toBe(false)
      expect(eb.leader()).toBe('a')
      expect(ea.token()).toBe(1n)
      await ea.resign()
      await waitFor(() => eb.isLeader(), 'b leads after a resigned', 5_000)
      expect(events).toEqual(['a+1', 'a-', 'b+2'])
      expect(ea.leader()).toBeUndefined()
      await eb.resign()
    } finally {
      await Promise.all(nodes.map((n) => n.shutdown()))
    }
  }, 60_000)
})
