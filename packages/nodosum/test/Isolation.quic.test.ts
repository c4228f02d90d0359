/**
 * Heartbeats never wait behind bulk data long enough to fail a live peer: two nodes over real
 * QUIC on loopback, at the default transport settings, stream 1 MiB messages at full speed in
 * both directions for 30 s with a failure timeout of 1 s. Neither sees the other fail.
 */
import { describe, expect, it } from '@effect/vitest'
import { Context, Duration, Effect, Layer, Stream } from 'effect'
import { Nodosum } from '../src/index.js'
import type { NodosumSettingsInput } from '../src/NodosumConfig.js'
import { eventually } from '../src/testing.js'

const secret = 'isolation-test-secret-of-at-least-32-characters'
const MiB = 1024 * 1024
const BULK_SECONDS = 30

const node = (input: NodosumSettingsInput) =>
  Layer.build(Nodosum.layer({ host: '127.0.0.1', port: 0, clusterSecret: secret, heartbeatInterval: 250, failureTimeout: 1_000, ...input })).pipe(
    Effect.map((ctx) => Context.get(ctx, Nodosum.Nodosum))
  )

/** Sends `payload` whenever the stream takes more, until `stop()`. */
const pump = (n: Nodosum.Nodosum['Type'], to: string, payload: Uint8Array) => {
  let running = true
  const stream = n.openStream(to, 'bulk', 'firehose', { onMessage: () => {}, onDrain: () => fill() })
  const fill = () => {
    while (running && stream.send(payload)) {
      // the stream takes messages until its high-water mark; onDrain resumes
    }
  }
  fill()
  return () => {
    running = false
  }
}

describe('isolation of the control stream over QUIC', () => {
  it.live(
    `bulk at full speed both ways for ${BULK_SECONDS} s with a 1 s failure timeout: no peer is failed`,
    () =>
      Effect.gen(function* () {
        const a = yield* node({ nodeId: 'a' })
        const b = yield* node({ nodeId: 'b', seeds: [`${a.address.host}:${a.address.port}`] })
        yield* eventually(() => a.nodes().length === 2 && b.nodes().length === 2, 10_000, 'joined')
        const events: Array<string> = []
        for (const n of [a, b]) {
          yield* Stream.runForEach(n.events, (e) => Effect.sync(() => events.push(`${e._tag} ${e.member.id}`))).pipe(Effect.forkScoped)
        }
        const received = { a: 0, b: 0 }
        a.setStreamAcceptor((s) => (s.appId === 'bulk' ? (s.setHandler({ onMessage: (p) => void (received.a += p.length) }), true) : false))
        b.setStreamAcceptor((s) => (s.appId === 'bulk' ? (s.setHandler({ onMessage: (p) => void (received.b += p.length) }), true) : false))
        const payload = new Uint8Array(MiB).fill(7)
        const stops = [pump(a, 'b', payload), pump(b, 'a', payload)]
        // the largest heartbeat round trip either node measured while the bulk ran
        let worstRttMicros = 0
        for (let t = 0; t < BULK_SECONDS * 4; t++) {
          yield* Effect.sleep(Duration.millis(250))
          for (const n of [a, b]) for (const p of n.stats().peers) worstRttMicros = Math.max(worstRttMicros, p.heartbeatRttMicros ?? 0)
          expect(a.nodes()).toEqual(['a', 'b'])
          expect(b.nodes()).toEqual(['a', 'b'])
        }
        for (const stop of stops) stop()
        console.log(`bulk for ${BULK_SECONDS} s: a got ${(received.a / MiB).toFixed(0)} MiB, b got ${(received.b / MiB).toFixed(0)} MiB; worst heartbeat rtt ${(worstRttMicros / 1000).toFixed(1)} ms`)
        expect(events).toEqual([])
        // the bulk really ran in both directions, not a trickle
        expect(received.a).toBeGreaterThan(64 * MiB)
        expect(received.b).toBeGreaterThan(64 * MiB)
        expect(worstRttMicros).toBeLessThan(1_000_000)
      }).pipe(Effect.scoped),
    BULK_SECONDS * 1_000 + 30_000
  )
})
