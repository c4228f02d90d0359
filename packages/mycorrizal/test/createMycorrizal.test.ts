import { describe, expect, it } from '@effect/vitest'
import { createMycorrizal, type MycorrizalNode } from '../src/index.js'

const waitFor = async (condition: () => boolean, what: string, ms = 10_000) => {
  const until = Date.now() + ms
  while (!condition()) {
    if (Date.now() > until) throw new Error(`${what} did not happen within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

describe('createMycorrizal (Promise facade over real QUIC)', () => {
  it('three nodes join, exchange messages on default and named streams, and shut down cleanly', async () => {
    const nodes: Array<MycorrizalNode> = []
    try {
      const a = await createMycorrizal({ nodeId: 'a', host: '127.0.0.1', port: 0, clusterSecret: 'dev-secret-of-at-least-32-characters', logLevel: 'none' })
      nodes.push(a)
      const seed = `127.0.0.1:${a.address.port}`
      expect(a.address.port).toBeGreaterThan(0)
      const b = await createMycorrizal({ nodeId: 'b', host: '127.0.0.1', port: 0, seeds: [seed], clusterSecret: 'dev-secret-of-at-least-32-characters', logLevel: 'none' })
      const c = await createMycorrizal({ nodeId: 'c', host: '127.0.0.1', port: 0, seeds: [seed], clusterSecret: 'dev-secret-of-at-least-32-characters', logLevel: 'none' })
      nodes.push(b, c)
      await waitFor(() => nodes.every((n) => n.nodes().length === 3), 'mesh of three')
      expect(a.nodes()).toEqual(['a', 'b', 'c'])
      expect(a.id).toBe('a')

      const appA = a.registerApplication('my-app')
      const received: Array<string> = []
      for (const n of [b, c]) n.registerApplication('my-app').setReceiveFunc((p, from) => void received.push(`${n.id}<-${from}:${new TextDecoder().decode(p)}`))
      await appA.send(new TextEncoder().encode('hello'))
      await waitFor(() => received.length === 2, 'default stream delivery')
      expect(received.sort()).toEqual(['b<-a:hello', 'c<-a:hello'])

      const x = b.registerApplicationWithConfig({ id: 'x', maxStreams: 25 })
      const orders = x.createStream('topic:orders')
      const got: Array<string> = []
      c.registerApplicationWithConfig({ id: 'x', maxStreams: 25 })
        .createStream('topic:orders')
        .setReceiveFunc((p) => void got.push(new TextDecoder().decode(p)))
      await orders.send(new TextEncoder().encode('o-1'), ['c'])
      await waitFor(() => got.length === 1, 'named stream delivery')
      expect(got).toEqual(['o-1'])
      expect(x.listStreams()).toEqual(['topic:orders'])
      expect(orders.stats().messagesOut).toBe(1)

      // typed errors surface as thrown values with their tag and reason
      expect(() => x.createStream('topic:orders')).toThrow(expect.objectContaining({ _tag: 'StreamsError', reason: 'DuplicateStream' }))
      expect(() => a.registerApplication('my-app')).toThrow(expect.objectContaining({ reason: 'DuplicateApplication' }))
      await expect(appA.send(new Uint8Array(1), ['nobody'])).rejects.toMatchObject({ _tag: 'SendError' })

      // the cache: every node creates the bucket, any node reads what another wrote
      for (const n of nodes) await n.mycel.createBucket('sessions', 60_000, 1_000)
      await a.mycel.put('sessions', 'user:1', new TextEncoder().encode('alice'))
      for (const n of nodes) expect(new TextDecoder().decode((await n.mycel.get('sessions', 'user:1'))!)).toBe('alice')
      expect(await b.mycel.get('sessions', 'nobody')).toBeUndefined()
      await c.mycel.delete('sessions', 'user:1')
      for (const n of nodes) expect(await n.mycel.get('sessions', 'user:1')).toBeUndefined()
      await expect(a.mycel.get('nope', 'k')).rejects.toMatchObject({ _tag: 'MycelError', reason: 'BucketNotFound' })
      // atomic operations: one answer per key across nodes, counts that get reads
      expect(await Promise.all([a.mycel.putIfAbsent('sessions', 'once', new Uint8Array([1])), b.mycel.putIfAbsent('sessions', 'once', new Uint8Array([2]))])).toContain(false)
      expect(await c.mycel.compareAndSet('sessions', 'cas', undefined, new TextEncoder().encode('v1'))).toBe(true)
      expect(await a.mycel.compareAndSet('sessions', 'cas', new TextEncoder().encode('v0'), new TextEncoder().encode('v2'))).toBe(false)
      const counts = await Promise.all(nodes.flatMap((n) => [n.mycel.increment('sessions', 'hits'), n.mycel.increment('sessions', 'hits', 2)]))
      expect(Math.max(...counts)).toBe(9)
      expect(new TextDecoder().decode((await b.mycel.get('sessions', 'hits'))!)).toBe('9')
      await expect(a.mycel.increment('sessions', 'user:2', 1.5)).rejects.toMatchObject({ _tag: 'MycelError', reason: 'NotInteger' })
      expect(a.mycel.buckets()).toEqual(['sessions'])

      // a graceful shutdown is a leave for the others
      await c.shutdown()
      await waitFor(() => a.nodes().length === 2, 'a drops c', 2_000)
      expect(a.members().find((m) => m.id === 'c')?.state).toBe('left')
    } finally {
      await Promise.all(nodes.map((n) => n.shutdown()))
    }
  }, 60_000)

  it('a bad config value is refused with a message naming the field', async () => {
    await expect(createMycorrizal({ nodeId: 'a', port: 70_000, clusterSecret: 'dev-secret-of-at-least-32-characters', logLevel: 'none' })).rejects.toMatchObject({
      field: 'port',
      message: expect.stringContaining('65535')
    })
    await expect(createMycorrizal({ nodeId: 'a', seeds: ['nope'], clusterSecret: 'dev-secret-of-at-least-32-characters', logLevel: 'none' })).rejects.toMatchObject({ field: 'seeds[0]' })
  })
})
