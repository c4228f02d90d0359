import { describe, expect, it } from '@effect/vitest'
import { Context, Deferred, Duration, Effect, Layer, Supervisor } from 'effect'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createRequire } from 'node:module'
import { createInterface } from 'node:readline'
import { MemoryTransport, Nodosum } from '../src/index.js'
import { activeResources, turns } from '@mycorrizal/testing'
import { eventually } from '../src/testing.js'

const settings = { host: '127.0.0.1', port: 0, clusterSecret: 'shutdown-test-secret-of-at-least-32-characters' }

const resources = activeResources

describe('shutdown', () => {
  it.live('after a node pair scope closes nothing is left: no socket, no timer, no fiber', () =>
    Effect.gen(function* () {
      yield* turns(5)
      const before = resources()
      const supervisor = yield* Supervisor.track
      let during: Record<string, number> = {}
      yield* Effect.gen(function* () {
        const a = Context.get(yield* Layer.build(Nodosum.layer({ ...settings, nodeId: 'a', heartbeatInterval: 100 })), Nodosum.Nodosum)
        const b = Context.get(yield* Layer.build(Nodosum.layer({ ...settings, nodeId: 'b', heartbeatInterval: 100 })), Nodosum.Nodosum)
        // both dial at once: the duplicate connection is closed and its timers run too
        yield* Effect.all([a.dial(b.address), b.dial(a.address)], { concurrency: 'unbounded' })
        yield* eventually(() => a.stats().peers.length === 1 && b.stats().peers.length === 1 && a.nodes().length === 2, 10_000, 'pair joined')
        const got = yield* Deferred.make<void>()
        b.setStreamAcceptor((s) => {
          s.setHandler({ onMessage: () => Deferred.unsafeDone(got, Effect.void) })
          return true
        })
        a.openStream('b', 'app', '', { onMessage: () => {} }).send(new Uint8Array([1]))
        yield* Deferred.await(got)
        // heartbeats, reconnect and discovery timers, the sockets: all running now
        yield* Effect.sleep(Duration.millis(250))
        during = resources()
      }).pipe(Effect.scoped, Effect.supervised(supervisor))
      yield* turns(5)
      // the check sees what a running pair holds: two sockets, timers
      expect(during['UDPWrap']).toBe((before['UDPWrap'] ?? 0) + 2)
      expect(during['Timeout'] ?? 0).toBeGreaterThan(0)
      const fibers = (yield* supervisor.value).filter((f) => f.unsafePoll() === null)
      expect(fibers.map((f) => f.id().toString())).toEqual([])
      // nothing more than before the nodes started (the runner's own timers may come and go)
      const after = resources()
      const grown = Object.keys(after).filter((type) => after[type]! > (before[type] ?? 0))
      expect(grown.map((type) => `${type}: ${before[type] ?? 0} -> ${after[type]}`)).toEqual([])
    })
  , 30_000)

  it.live('a script that starts two QUIC nodes, joins them and closes its scope exits on its own', () =>
    Effect.gen(function* () {
      const tsx = createRequire(import.meta.url).resolve('tsx')
      const child = spawn(process.execPath, ['--import', tsx, '--conditions=@mycorrizal/source', new URL('./fixtures/pair.ts', import.meta.url).pathname], {
        stdio: ['ignore', 'pipe', 'inherit']
      })
      const lines: Array<Record<string, unknown>> = []
      createInterface({ input: child.stdout }).on('line', (line) => lines.push(JSON.parse(line) as Record<string, unknown>))
      const exited = Effect.promise(() => once(child, 'exit') as Promise<[number | null, string | null]>)
      // generous: starting tsx and two QUIC nodes on a loaded machine takes a while; the point is that it ends at all
      const result = yield* exited.pipe(Effect.timeout(Duration.seconds(60)), Effect.option)
      if (result._tag === 'None') child.kill('SIGKILL')
      expect(lines.map((l) => l['event'])).toEqual(['joined', 'closed'])
      expect(lines[0]?.['message']).toBe('hello')
      expect(result._tag).toBe('Some')
      expect(result._tag === 'Some' && result.value[0]).toBe(0)
    })
  , 90_000)
})

describe('shutdown over MemoryTransport (TestClock)', () => {
  const settle = Effect.promise(async () => {
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve))
  })

  it.effect('simultaneous dials, then the scope closes: no fiber of the nodes is left', () =>
    Effect.gen(function* () {
      const supervisor = yield* Supervisor.track
      yield* Effect.gen(function* () {
        const build = (id: string) =>
          Layer.build(Nodosum.layerMemory({ nodeId: id, host: id, port: 7001, clusterSecret: 'shutdown-test-secret-of-at-least-32-characters' })).pipe(
            Effect.map((ctx) => Context.get(ctx, Nodosum.Nodosum))
          )
        const a = yield* build('a')
        const b = yield* build('b')
        yield* Effect.all([a.dial(b.address), b.dial(a.address)], { concurrency: 'unbounded' })
        for (let i = 0; i < 20; i++) yield* settle
        expect(a.nodes()).toEqual(['a', 'b'])
        expect(b.nodes()).toEqual(['a', 'b'])
      }).pipe(Effect.scoped, Effect.provide(MemoryTransport.networkLayer), Effect.supervised(supervisor))
      yield* settle
      const alive = (yield* supervisor.value).filter((f) => f.unsafePoll() === null)
      expect(alive.map((f) => f.id().toString())).toEqual([])
    })
  )
})
