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
    [{ clusterSecret: 'dev-secret-of-at-least-32-characters', maxMessageSize: 10 }, 'maxMessageSize']
  ])('refuses %j naming %s', (input, field) => {
    const error = bad(input as NodosumConfig.NodosumSettingsInput)
    expect(error._tag).toBe('NodosumConfigError')
    expect(error.field).toBe(field)
    expect(error.message.length).toBeGreaterThan(10)
  })
})
