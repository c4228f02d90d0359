import { beforeAll, describe, expect, it } from '@effect/vitest'
import { Config, ConfigProvider, Duration, Effect, Either, Option, Redacted, Schema, SchemaAST } from 'effect'
import * as NodosumConfig from '../src/NodosumConfig.js'
import { NODE_ID_PATTERN } from '../src/internal/handshake.js'

const ok = (input: NodosumConfig.NodosumSettingsInput, env: Record<string, string> = {}) => Either.getOrThrow(NodosumConfig.validate(input, env))
const bad = (input: NodosumConfig.NodosumSettingsInput) => {
  const result = NodosumConfig.validate(input, {})
  if (Either.isRight(result)) throw new Error('expected a ConfigError')
  return result.left
}

describe('NodosumConfig', () => {
  // the schemas are built on first use (not at import); the synchronous validate needs them
  beforeAll(() => Effect.runPromise(NodosumConfig.load))

  it('node id from config, else MYCORRIZAL_ID, else generated', () => {
    expect(ok({ nodeId: 'a', clusterSecret: 'dev-secret-of-at-least-32-characters' }, { MYCORRIZAL_ID: 'env' }).nodeId).toBe('a')
    expect(ok({ clusterSecret: 'dev-secret-of-at-least-32-characters' }, { MYCORRIZAL_ID: 'from-env' }).nodeId).toBe('from-env')
    const generated = ok({ clusterSecret: 'dev-secret-of-at-least-32-characters' }).nodeId
    expect(generated).toMatch(/^node-[0-9a-f]{12}$/)
    expect(ok({ clusterSecret: 'dev-secret-of-at-least-32-characters' }).nodeId).not.toBe(generated)
  })

  it('keeps the secret redacted and parses seeds', () => {
    const settings = ok({ nodeId: 'a', clusterSecret: 'dev-secret-of-at-least-32-characters', seeds: ['127.0.0.1:7001', '[::1]:7002', { host: 'h', port: 7003 }] })
    expect(settings.auth?._tag).toBe('Secret')
    if (settings.auth?._tag === 'Secret') {
      expect(String(settings.auth.secret)).not.toContain('dev-secret-of-at-least-32-characters')
      expect(Redacted.value(settings.auth.secret)).toBe('dev-secret-of-at-least-32-characters')
    }
    expect(settings.discovery).toEqual({
      _tag: 'Static',
      seeds: [
        { host: '127.0.0.1', port: 7001 },
        { host: '::1', port: 7002 },
        { host: 'h', port: 7003 }
      ]
    })
    expect(Duration.toMillis(settings.failureTimeout)).toBe(2000)
  })

  it('a cluster secret is a key: under 32 characters it is refused, naming the field and where a fresh one comes from', () => {
    const error = bad({ clusterSecret: 'x'.repeat(31) })
    expect(error.field).toBe('clusterSecret')
    expect(error.message).toContain('at least 32 characters')
    expect(error.message).toContain('mycorrizal secret')
    expect(error.message).not.toContain('x'.repeat(31))
    expect(ok({ clusterSecret: 'x'.repeat(32) }).auth?._tag).toBe('Secret')
  })

  it('single mode needs no authentication', () => {
    expect(ok({ single: true }).single).toBe(true)
  })

  it.each([
    [{ nodeId: 'has space', clusterSecret: 'dev-secret-of-at-least-32-characters' }, 'nodeId'],
    [{ clusterSecret: 'short' }, 'clusterSecret'],
    [{}, 'clusterSecret'],
    [{ clusterSecret: 'dev-secret-of-at-least-32-characters', seeds: ['nohost'] }, 'seeds[0]'],
    [{ clusterSecret: 'dev-secret-of-at-least-32-characters', seeds: ['h:0'] }, 'seeds[0]'],
    [{ clusterSecret: 'dev-secret-of-at-least-32-characters', port: -1 }, 'port'],
    [{ clusterSecret: 'dev-secret-of-at-least-32-characters', transport: { maxStreams: 0 } }, 'transport.maxStreams'],
    [{ clusterSecret: 'dev-secret-of-at-least-32-characters', dns: 'nodes.local' }, 'dnsPort'],
    [{ clusterSecret: 'dev-secret-of-at-least-32-characters', consul: 'not a url' }, 'consul'],
    [{ clusterSecret: 'dev-secret-of-at-least-32-characters', seeds: [], dns: '_x._udp.local' }, 'seeds'],
    [{ clusterSecret: 'dev-secret-of-at-least-32-characters', heartbeatInterval: 1000, failureTimeout: 500 }, 'failureTimeout'],
    [{ clusterSecret: 'dev-secret-of-at-least-32-characters', tls: { ca: 'x', cert: 'y', key: 'z' } }, 'clusterSecret'],
    [{ tls: { ca: 'x', cert: 'y', key: 'z' } }, 'tls.ca'],
    [{ clusterSecret: 'dev-secret-of-at-least-32-characters', maxMessageSize: 10 }, 'maxMessageSize'],
    [{ clusterSecret: 'dev-secret-of-at-least-32-characters', reconnectGiveUp: -1 }, 'reconnectGiveUp'],
    [{ clusterSecret: 'dev-secret-of-at-least-32-characters', single: 'yes' }, 'single']
  ])('refuses %j naming %s', (input, field) => {
    const error = bad(input as NodosumConfig.NodosumSettingsInput)
    expect(error._tag).toBe('NodosumConfigError')
    expect(error.field).toBe(field)
    expect(error.message.length).toBeGreaterThan(10)
  })

  it('one node-id schema: what the handshake accepts is what configuration accepts', () => {
    const isId = Schema.is(NodosumConfig.NodeId)
    for (const id of ['a', 'node-1', 'n.2:x_y', 'A'.repeat(128)]) expect([isId(id), NODE_ID_PATTERN.test(id)]).toEqual([true, true])
    for (const id of ['', '-a', 'has space', 'A'.repeat(129), 'ü']) expect([isId(id), NODE_ID_PATTERN.test(id)]).toEqual([false, false])
    expect(bad({ clusterId: 'no way', clusterSecret: 'dev-secret-of-at-least-32-characters' }).message).toBe(
      'clusterId must be 1-128 characters of letters, digits, ".", "_", ":" or "-", starting with a letter or digit'
    )
  })

  it('every field has a description and a message without its name, so each caller names it its own way', () => {
    for (const [name, schema] of Object.entries(NodosumConfig.fields)) {
      expect(Option.isSome(SchemaAST.getDescriptionAnnotation(schema.ast)), name).toBe(true)
    }
    expect(bad({ clusterSecret: 'dev-secret-of-at-least-32-characters', advertisePort: 0 }).message).toBe('advertisePort must be an integer from 1 to 65535')
    expect(bad({ clusterSecret: 'dev-secret-of-at-least-32-characters', seeds: ['a:1', 'b'] }).message).toBe('seeds[1] must be host:port with a port from 1 to 65535')
  })

  it.effect('config reads the environment and is checked by the same schemas', () =>
    Effect.gen(function* () {
      const read = (env: Record<string, string>) =>
        Config.nested(NodosumConfig.config, 'MYCORRIZAL').pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)), { pathDelim: '_' })))
      const input = yield* read({
        MYCORRIZAL_NODE_ID: 'env-node',
        MYCORRIZAL_CLUSTER_SECRET: 'dev-secret-of-at-least-32-characters',
        MYCORRIZAL_SEEDS: '127.0.0.1:7001,127.0.0.1:7002',
        MYCORRIZAL_HEARTBEAT_INTERVAL: '100 millis',
        MYCORRIZAL_TRANSPORT_MAX_STREAMS: '50'
      })
      const settings = Either.getOrThrowWith(NodosumConfig.validate(input, {}), (e) => e)
      expect(settings.nodeId).toBe('env-node')
      expect(settings.discovery).toEqual({ _tag: 'Static', seeds: [{ host: '127.0.0.1', port: 7001 }, { host: '127.0.0.1', port: 7002 }] })
      expect(Duration.toMillis(settings.heartbeatInterval)).toBe(100)
      expect(settings.transport.maxStreams).toBe(50)
      expect(String(input.clusterSecret)).not.toContain('dev-secret')
      const wrong = NodosumConfig.validate(yield* read({ MYCORRIZAL_SINGLE: 'true', MYCORRIZAL_ADVERTISE_PORT: '70000' }), {})
      expect(Either.isLeft(wrong) && wrong.left.field).toBe('advertisePort')
    })
  )
})
