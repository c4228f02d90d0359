import { describe, expect, it } from '@effect/vitest'
import { createMycorrizal, type MembershipChange, type MycorrizalNode } from '../src/index.js'

const secret = 'topics-facade-secret-of-at-least-32-characters'
const waitFor = async (condition: () => boolean, what: string, ms = 10_000) => {
  const until = Date.now() + ms
  while (!condition()) {
    if (Date.now() > until) throw new Error(`${what} did not happen within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
const text = (b: Uint8Array) => new TextDecoder().decode(b)
const bytes = (s: string) => new TextEncoder().encode(s)

describe('topics and membership events (Promise facade over real QUIC)', () => {
  it('membership events arrive once each in order; every subscriber gets each message once, in order per publisher', async () => {
    const nodes: Array<MycorrizalNode> = []
    try {
      const start = (nodeId: string, seeds: ReadonlyArray<string> = []) =>
        createMycorrizal({ nodeId, host: '127.0.0.1', port: 0, seeds: [...seeds], clusterSecret: secret, logLevel: 'none', heartbeatInterval: 100, failureTimeout: 1_000 })
      const a = await start('a')
      nodes.push(a)
      const seed = `127.0.0.1:${a.address.port}`
      const changes: Array<MembershipChange> = []
      const off = a.onMembership((c) => void changes.push(c))
      const b = await start('b', [seed])
      nodes.push(b)
      await waitFor(() => a.nodes().length === 2 && b.nodes().length === 2, 'a and b joined')
      const c = await start('c', [seed])
      nodes.push(c)
      await waitFor(() => nodes.every((n) => n.nodes().length === 3), 'mesh of three')

      const got = new Map<string, Array<string>>(nodes.map((n) => [n.id, []]))
      const subs = await Promise.all(nodes.map((n) => n.topics.subscribe('orders', (p, from) => void got.get(n.id)!.push(`${from}:${text(p)}`))))
      await Promise.all(
        nodes.map(async (n) => {
          for (let i = 0; i < 200; i++) await n.topics.publish('orders', bytes(`${i}`))
        })
      )
      // publish resolved once every subscriber node took the message: nothing to wait for
      for (const n of nodes) {
        const seen = got.get(n.id)!
        expect(seen).toHaveLength(600)
        for (const from of ['a', 'b', 'c']) expect(seen.filter((s) => s.startsWith(`${from}:`))).toEqual(Array.from({ length: 200 }, (_, i) => `${from}:${i}`))
      }
      expect(a.topics.stats()).toEqual([expect.objectContaining({ topic: 'orders', subscriberNodes: ['b', 'c'], published: 200, delivered: 600, pending: 0 })])
      await subs[2]!.unsubscribe()
      await a.topics.publish('orders', bytes('after'))
      expect(got.get('c')).toHaveLength(600)
      await expect(a.topics.publish('', bytes('x'))).rejects.toMatchObject({ _tag: 'CoordinationError', reason: 'InvalidTopic' })

      // c leaves gracefully, then b is killed: a sees each change once, in order
      await c.shutdown()
      nodes.splice(nodes.indexOf(c), 1)
      await waitFor(() => a.nodes().length === 2, 'c left')
      off()
      await b.shutdown()
      nodes.splice(nodes.indexOf(b), 1)
      await waitFor(() => a.nodes().length === 1, 'b left')
      expect(changes).toEqual([
        { type: 'joined', nodeId: 'b' },
        { type: 'joined', nodeId: 'c' },
        { type: 'left', nodeId: 'c' }
      ])
    } finally {
      await Promise.all(nodes.map((n) => n.shutdown()))
    }
  }, 60_000)
})
