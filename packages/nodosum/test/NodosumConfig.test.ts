import { describe, expect, it } from '@effect/vitest'
import { Duration, Either, Redacted } from 'effect'
import * as NodosumConfig from '../src/NodosumConfig.js'

const ok = (input: NodosumConfig.NodosumSettingsInput, env: Record<string, string> = {}) => Either.getOrThrow(NodosumConfig.validate(input, env))
const bad = (input: NodosumConfig.NodosumSettingsInput) => {
  const result = NodosumConfig.validate(input, {})
  if (Either.isRight(result)) throw new Error('expected a ConfigError')
  return result.left
}

describe('NodosumConfig', () => {
  it('node id from config, else MYCORRIZAL_ID, else generated', () => {
    expect(ok({ nodeId: 'a', clusterSecret: 'dev-secret' }, { MYCORRIZAL_ID: 'env' }).nodeId).toBe('a')
    expect(ok({ clusterSecret: 'dev-secret' }, { MYCORRIZAL_ID: 'from-env' }).nodeId).toBe('from-env')
    const generated = ok({ clusterSecret: 'dev-secret' }).nodeId
    expect(generated).toMatch(/^node-[0-9a-f]{12}$/)
    expect(ok({ clusterSecret: 'dev-secret' }).nodeId).not.toBe(generated)
  })

  it('keeps the secret redacted and parses seeds', () => {
    const settings = ok({ nodeId: 'a', clusterSecret: 'dev-secret', seeds: ['127.0.0.1:7001', '[::1]:7002', { host: 'h', port: 7003 }] })
    expect(settings.auth?._tag).toBe('Secret')
    if (settings.auth?._tag === 'Secret') {
      expect(String(settings.auth.secret)).not.toContain('dev-secret')
      expect(Redacted.value(settings.auth.secret)).toBe('dev-secret')
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

  it('single mode needs no authentication', () => {
    expect(ok({ single: true }).single).toBe(true)
  })

  it.each([
    [{ nodeId: 'has space', clusterSecret: 'dev-secret' }, 'nodeId'],
    [{ clusterSecret: 'short' }, 'clusterSecret'],
    [{}, 'clusterSecret'],
    [{ clusterSecret: 'dev-secret', seeds: ['nohost'] }, 'seeds[0]'],
    [{ clusterSecret: 'dev-secret', seeds: ['h:0'] }, 'seeds[0]'],
    [{ clusterSecret: 'dev-secret', port: -1 }, 'port'],
    [{ clusterSecret: 'dev-secret', transport: { maxStreams: 0 } }, 'transport.maxStreams'],
    [{ clusterSecret: 'dev-secret', dns: 'nodes.local' }, 'dnsPort'],
    [{ clusterSecret: 'dev-secret', consul: 'not a url' }, 'consul'],
    [{ clusterSecret: 'dev-secret', seeds: [], dns: '_x._udp.local' }, 'seeds'],
    [{ clusterSecret: 'dev-secret', heartbeatInterval: 1000, failureTimeout: 500 }, 'failureTimeout'],
    [{ clusterSecret: 'dev-secret', tls: { ca: 'x', cert: 'y', key: 'z' } }, 'clusterSecret'],
    [{ tls: { ca: 'x', cert: 'y', key: 'z' } }, 'tls.ca'],
    [{ clusterSecret: 'dev-secret', maxMessageSize: 10 }, 'maxMessageSize']
  ])('refuses %j naming %s', (input, field) => {
    const error = bad(input as NodosumConfig.NodosumSettingsInput)
    expect(error._tag).toBe('NodosumConfigError')
    expect(error.field).toBe(field)
    expect(error.message.length).toBeGreaterThan(10)
  })
})
