import { beforeAll, describe, expect, it } from '@effect/vitest'
import { MemoryTransport, Nodosum } from '@mycorrizal/nodosum'
import { ConfigProvider, Context, Effect, Either, Layer, Option, SchemaAST } from 'effect'
import { Streams, StreamsConfig } from '../src/index.js'
import { resolveConfig } from '../src/internal/config.js'

const secret = 'streams-test-secret-of-at-least-32-characters'
const node = { graceMs: 5_000, maxMessageSize: 16 * 1024 * 1024 }

const build = (layer: Layer.Layer<Streams.Streams, unknown, Nodosum.Nodosum>) =>
  Layer.build(layer.pipe(Layer.provideMerge(Nodosum.layerMemory({ nodeId: 'n', host: 'n', port: 7001, clusterSecret: secret }))), ).pipe(
    Effect.map((ctx) => Context.get(ctx, Streams.Streams)),
    Effect.provide(MemoryTransport.networkLayer)
  )

describe('StreamsConfig', () => {
  // the schemas are built on first use (not at import); the synchronous validate needs them
  beforeAll(() => Effect.runPromise(StreamsConfig.load))

  it('every application setting is checked by its schema, and the error names the field', () => {
    for (const [field, value] of [
      ['maxStreams', -1],
      ['streamBufferSize', 0],
      ['streamBufferBytes', 10],
      ['maxWaitingBytes', 1.5],
      ['unknownStreamGraceMs', 700_000]
    ] as const) {
      const result = resolveConfig({ id: 'a', [field]: value }, node)
      expect(Either.isLeft(result) && result.left.reason).toBe('InvalidConfig')
      expect(Either.isLeft(result) && result.left.message).toMatch(new RegExp(`^${field} must be an integer from \\d+ to \\d+$`))
    }
    for (const schema of Object.values(StreamsConfig.applicationFields)) expect(Option.isSome(SchemaAST.getDescriptionAnnotation(schema.ast))).toBe(true)
  })

  it('the service options are checked before the layer starts', () => {
    expect(Either.isRight(StreamsConfig.validate({ grace: '1 minute', transport: { maxStreams: 10 } }))).toBe(true)
    const grace = StreamsConfig.validate({ grace: 'soon' as never })
    expect(Either.isLeft(grace) && grace.left.message).toBe('grace must be a duration from 0 to 10 minutes, e.g. 5000 (ms) or "5 seconds"')
    const streams = StreamsConfig.validate({ transport: { maxStreams: 0 } })
    expect(Either.isLeft(streams) && streams.left.message).toBe('transport.maxStreams must be an integer from 1 to 10000')
  })

  it.scoped('a bad option fails the layer with a typed StreamsError', () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(build(Streams.layer({ grace: -5 })))
      expect(error).toMatchObject({ _tag: 'StreamsError', reason: 'InvalidConfig' })
    })
  )

  it.scoped('layerConfig reads MYCORRIZAL_STREAM_GRACE through the same schemas', () =>
    Effect.gen(function* () {
      const env = (map: Record<string, string>) => Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(map)), { pathDelim: '_' }))
      const streams = yield* build(Streams.layerConfig()).pipe(env({ MYCORRIZAL_STREAM_GRACE: '2 seconds', MYCORRIZAL_TRANSPORT_MAX_STREAMS: '10' }))
      expect(streams.applications()).toEqual([])
      const error = yield* Effect.flip(build(Streams.layerConfig()).pipe(env({ MYCORRIZAL_TRANSPORT_MAX_STREAMS: '0' })))
      expect(error).toMatchObject({ _tag: 'StreamsError', reason: 'InvalidConfig', message: 'transport.maxStreams must be an integer from 1 to 10000' })
    })
  )
})
