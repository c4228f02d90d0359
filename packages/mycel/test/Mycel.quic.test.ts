import { afterEach, describe, expect, it } from '@effect/vitest'
import { Nodosum } from '@mycorrizal/nodosum'
import { Streams } from '@mycorrizal/streams'
import { Context, Deferred, Duration, Effect, Layer, Logger, LogLevel } from 'effect'
import { type ChildProcess, spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { createInterface } from 'node:readline'
import * as Mycel from '../src/Mycel.js'

const secret = 'mycel-quic-secret-of-at-least-32-characters'

const node = (id: string, seeds: ReadonlyArray<string> = []) =>
  Layer.build(
    Mycel.layer().pipe(
      Layer.provideMerge(Streams.layer()),
      Layer.provideMerge(Nodosum.layer({ nodeId: id, host: '127.0.0.1', port: 0, clusterSecret: secret, seeds: [...seeds] }))
    )
  ).pipe(Effect.map((ctx) => ({ mycel: Context.get(ctx, Mycel.Mycel), nodosum: Context.get(ctx, Nodosum.Nodosum) })))

const until = (condition: () => boolean, what: string, ms = 15_000) =>
  Effect.gen(function* () {
    for (let i = 0; i < ms / 20; i++) {
      if (condition()) return
      yield* Effect.sleep(Duration.millis(20))
    }
    throw new Error(`${what} did not happen within ${ms} ms`)
  })

const value = (i: number) => new TextEncoder().encode(`value-${i}`)
const text = (b: Uint8Array | undefined) => (b === undefined ? undefined : new TextDecoder().decode(b))

describe('Mycel over QUIC', () => {
  it.live('three in-process nodes: every node reads what any node wrote; deletes reach every owner', () =>
    Effect.gen(function* () {
      const a = yield* node('a')
      const seed = `127.0.0.1:${a.nodosum.boundAddress.port}`
      const b = yield* node('b', [seed])
      const c = yield* node('c', [seed])
      const nodes = [a, b, c]
      yield* until(() => nodes.every((n) => n.nodosum.nodes().length === 3), 'mesh')
      for (const n of nodes) yield* n.mycel.createBucket('sessions', '1 minute', 10_000)
      for (let i = 0; i < 300; i++) yield* nodes[i % 3]!.mycel.put('sessions', `k${i}`, value(i))
      for (const n of nodes) for (let i = 0; i < 300; i++) expect(text(yield* n.mycel.get('sessions', `k${i}`))).toBe(`value-${i}`)
      yield* b.mycel.delete('sessions', 'k1')
      for (const n of nodes) expect(yield* n.mycel.get('sessions', 'k1')).toBeUndefined()
      expect(nodes.map((n) => n.mycel.stats('sessions')!.keys).reduce((x, y) => x + y, 0)).toBe(2 * 299)
    }).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning))
  )
})

describe('Mycel over QUIC: near cache', () => {
  it.live('three in-process nodes: a node keeps what it read from the others; a write anywhere updates it (a large one invalidates it)', () =>
    Effect.gen(function* () {
      const a = yield* node('a')
      const seed = `127.0.0.1:${a.nodosum.boundAddress.port}`
      const b = yield* node('b', [seed])
      const c = yield* node('c', [seed])
      const nodes = [a, b, c]
      yield* until(() => nodes.every((n) => n.nodosum.nodes().length === 3), 'mesh')
      // one copy of each key, so two thirds of c's reads go to another node
      for (const n of nodes) yield* n.mycel.createBucket('hot', '1 minute', 10_000, { replicas: 1, nearCache: { maxSize: 1_000, ttlMs: 30_000 } })
      for (let i = 0; i < 60; i++) yield* a.mycel.put('hot', `k${i}`, value(i))
      for (let round = 0; round < 3; round++) for (let i = 0; i < 60; i++) expect(text(yield* c.mycel.get('hot', `k${i}`))).toBe(`value-${i}`)
      const near = c.mycel.stats('hot')!.near!
      // the first round asked the owners; the next two were answered on c
      expect(near.misses).toBeGreaterThan(0)
      expect(near.entries).toBe(near.misses)
      expect(near.hits).toBe(2 * near.misses)
      // b rewrites every key: each copy c holds is given the new value, and c reads it without a message
      for (let i = 0; i < 60; i++) yield* b.mycel.put('hot', `k${i}`, value(i + 1000))
      yield* until(() => c.mycel.stats('hot')!.near!.updates === near.entries, 'every near copy updated')
      const remote = c.mycel.stats('hot')!.remoteGets
      for (let i = 0; i < 60; i++) expect(text(yield* c.mycel.get('hot', `k${i}`))).toBe(`value-${i + 1000}`)
      expect(c.mycel.stats('hot')!.remoteGets).toBe(remote)
      // values too large for an update: each copy is invalidated, and c reads the new values from their owners
      const large = (i: number) => new TextEncoder().encode(`value-${i}`.padEnd(2_000, '.'))
      for (let i = 0; i < 60; i++) yield* b.mycel.put('hot', `k${i}`, large(i + 3000))
      yield* until(() => c.mycel.stats('hot')!.near!.invalidations === near.entries, 'every near copy invalidated')
      for (let i = 0; i < 60; i++) expect(text(yield* c.mycel.get('hot', `k${i}`))).toBe(`value-${i + 3000}`.padEnd(2_000, '.'))
      expect(c.mycel.stats('hot')!.remoteGets).toBe(remote + near.entries)
      // a write through c is visible to c at once
      for (let i = 0; i < 60; i++) yield* c.mycel.put('hot', `k${i}`, value(i + 2000))
      for (let i = 0; i < 60; i++) expect(text(yield* c.mycel.get('hot', `k${i}`))).toBe(`value-${i + 2000}`)
    }).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning))
  )
})

describe('Mycel with real processes', () => {
  const children: Array<ChildProcess> = []
  afterEach(() => {
    for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL')
  })
  const tsx = createRequire(import.meta.url).resolve('tsx')
  const spawnNode = (nodeId: string, seed: string) =>
    Effect.gen(function* () {
      const child = spawn(process.execPath, ['--import', tsx, '--conditions=@mycorrizal/source', new URL('./fixtures/node.ts', import.meta.url).pathname], {
        env: { ...process.env, MYCORRIZAL_TEST_SETTINGS: JSON.stringify({ nodeId, host: '127.0.0.1', port: 0, clusterSecret: secret, seeds: [seed] }) },
        stdio: ['ignore', 'pipe', 'inherit']
      })
      children.push(child)
      const ready = yield* Deferred.make<void>()
      createInterface({ input: child.stdout! }).on('line', (line) => {
        if (line.startsWith('{') && (JSON.parse(line) as { event: string }).event === 'ready') Deferred.unsafeDone(ready, Effect.void)
      })
      yield* Deferred.await(ready).pipe(Effect.timeout(Duration.seconds(60)))
      return child
    })

  it.live(
    'SIGKILL of one of four nodes after 2,000 puts loses no key (R = 2)',
    () =>
      Effect.gen(function* () {
        const a = yield* node('a')
        yield* a.mycel.createBucket('keys', '10 minutes', 100_000)
        const seed = `127.0.0.1:${a.nodosum.boundAddress.port}`
        const others = yield* Effect.forEach(['b', 'c', 'd'], (id) => spawnNode(id, seed))
        yield* until(() => a.nodosum.nodes().length === 4, 'four members')
        // every acknowledged put: at least two copies exist
        yield* Effect.forEach(
          Array.from({ length: 2_000 }, (_, i) => i),
          (i) => a.mycel.put('keys', `key-${i}`, value(i)),
          { concurrency: 32, discard: true }
        )
        others[2]!.kill('SIGKILL')
        yield* until(() => a.nodosum.nodes().length === 3, 'd dropped')
        let lost = 0
        for (let i = 0; i < 2_000; i++) if (text(yield* a.mycel.get('keys', `key-${i}`)) !== `value-${i}`) lost++
        // the reading node's counters (timeouts, remote gets) in the failure message
        expect(lost, JSON.stringify(a.mycel.stats('keys'))).toBe(0)
      }).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning)),
    90_000
  )
})
