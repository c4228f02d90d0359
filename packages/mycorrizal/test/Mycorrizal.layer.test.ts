import { describe, expect, it } from '@effect/vitest'
import { ConfigProvider, Context, Effect, Layer } from 'effect'
import { Mycel, Mycorrizal, Nodosum, type MycorrizalConfig } from '../src/index.js'

const single: MycorrizalConfig = { nodeId: 'solo', single: true, logLevel: 'none' }

/** The error of building the umbrella's layers, told apart by type. */
const failure = <A>(layer: Layer.Layer<A, Mycorrizal.MycorrizalError>) =>
  Layer.build(layer).pipe(
    Effect.flip,
    Effect.map((error) => {
      switch (error._tag) {
        case 'NodosumConfigError':
          return `config ${error.field}: ${error.message}`
        case 'StreamsError':
        case 'MycelError':
          return `${error._tag} ${error.reason}: ${error.message}`
        case 'TransportError':
          return `transport ${error.reason}`
      }
    })
  )

describe('Mycorrizal.layer', () => {
  it.scoped('fails with the typed error of the package whose setting is wrong, naming it', () =>
    Effect.gen(function* () {
      expect(yield* failure(Mycorrizal.layer({ ...single, nodeId: 'has space' }))).toMatch(/^config nodeId: nodeId must be 1-128 characters/)
      expect(yield* failure(Mycorrizal.layer({ ...single, port: 70_000 }))).toBe('config port: port must be an integer from 0 to 65535')
      expect(yield* failure(Mycorrizal.layer({ ...single, streamGrace: 'soon' as never }))).toBe(
        'StreamsError InvalidConfig: grace must be a duration from 0 to 10 minutes, e.g. 5000 (ms) or "5 seconds"'
      )
      expect(yield* failure(Mycorrizal.layer({ ...single, cache: { requestTimeout: -1 } }))).toBe(
        'MycelError InvalidConfig: requestTimeout must be a duration from 1 ms to 600000 ms, e.g. 2000 (ms) or "2 seconds"'
      )
    })
  )

  it.scoped('layerConfig reads the environment through the same schemas', () =>
    Effect.gen(function* () {
      const env = (map: Record<string, string>) => Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(map)), { pathDelim: '_' }))
      const ctx = yield* Layer.build(Mycorrizal.layerConfig({ logLevel: 'none' })).pipe(
        env({ MYCORRIZAL_NODE_ID: 'from-env', MYCORRIZAL_SINGLE: 'true', MYCORRIZAL_CACHE_REQUEST_TIMEOUT: '3 seconds' })
      )
      expect(Context.get(ctx, Nodosum.Nodosum).nodeId).toBe('from-env')
      // only the locks' and elections' system buckets
      expect([...Context.get(ctx, Mycel.Mycel).buckets()].sort()).toEqual(['system.elections', 'system.locks'])
      const bad = yield* Layer.build(Mycorrizal.layerConfig()).pipe(env({ MYCORRIZAL_SINGLE: 'true', MYCORRIZAL_CACHE_MAX_PEER_BYTES: '5' }), Effect.flip)
      expect(bad).toMatchObject({ _tag: 'MycelError', reason: 'InvalidConfig', message: 'maxPeerBytes must be an integer from 65536 to 68719476736' })
    })
  )

  it.effect('every field of the umbrella config has its schema, built on first use', () =>
    Effect.gen(function* () {
      yield* Mycorrizal.load
      expect(Object.keys(Mycorrizal.fields)).toEqual(expect.arrayContaining(['nodeId', 'clusterSecret', 'transport', 'streamGrace', 'logLevel', 'cache']))
    })
  )
})
