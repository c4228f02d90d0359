import { describe, expect, it } from '@effect/vitest'
import { Either, Redacted } from 'effect'
import { NodosumConfig } from 'mycorrizal'
import fc from 'fast-check'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fields, parseDuration, resolve, type NodeSettings } from '../src/NodeConfig.js'

const base = { clusterSecret: 'a-long-enough-secret-of-at-least-32-characters' }

const ok = (flags: Record<string, string>, env: Record<string, string> = {}): NodeSettings => {
  const result = resolve(flags, env)
  if (Either.isLeft(result)) throw new Error(`expected settings, got: ${result.left.message}`)
  return result.right
}

const error = (flags: Record<string, string>, env: Record<string, string> = {}) => {
  const result = resolve(flags, env)
  if (Either.isRight(result)) throw new Error('expected a NodeConfigError')
  return result.left
}

const withFile = <A>(content: string, f: (path: string) => A): A => {
  const dir = mkdtempSync(join(tmpdir(), 'mycorrizal-config-'))
  try {
    const path = join(dir, 'node.json')
    writeFileSync(path, content)
    return f(path)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

describe('NodeConfig', () => {
  it('defaults: loopback QUIC on 7400, admin on 7401, info logs', () => {
    const s = ok(base)
    expect(s).toMatchObject({ host: '127.0.0.1', port: 7400, adminHost: '127.0.0.1', adminPort: 7401, logLevel: 'info', seeds: [], buckets: [], single: false })
    expect(Redacted.value(s.clusterSecret!)).toBe('a-long-enough-secret-of-at-least-32-characters')
  })

  it('flags beat environment variables, which beat the config file', () =>
    withFile(JSON.stringify({ port: 7000, nodeId: 'from-file', seeds: ['10.0.0.1:7000', '10.0.0.2:7000'], clusterSecret: 'file-secret-123-of-at-least-32-characters' }), (config) => {
      const s = ok({ config, port: '7100' }, { MYCORRIZAL_PORT: '7200', MYCORRIZAL_NODE_ID: 'from-env' })
      expect(s.port).toBe(7100)
      expect(s.nodeId).toBe('from-env')
      expect(s.seeds).toEqual(['10.0.0.1:7000', '10.0.0.2:7000'])
      expect(Redacted.value(s.clusterSecret!)).toBe('file-secret-123-of-at-least-32-characters')
      // the file may be named by the environment too
      expect(ok({}, { MYCORRIZAL_CONFIG: config }).nodeId).toBe('from-file')
    }))

  it('buckets are name:ttl:maxSize, repeatable, with durations', () => {
    const s = ok({ ...base, buckets: 'sessions:60s:10000,users:5m:100,a:b:500ms:1' })
    expect(s.buckets).toEqual([
      { name: 'sessions', ttlMs: 60_000, maxSize: 10_000 },
      { name: 'users', ttlMs: 300_000, maxSize: 100 },
      { name: 'a:b', ttlMs: 500, maxSize: 1 }
    ])
    expect(parseDuration('1.5s')).toBe(1500)
    expect(parseDuration('2h')).toBe(7_200_000)
    expect(parseDuration('0s')).toBeUndefined()
    expect(parseDuration('60')).toBeUndefined()
  })

  it('a bad value names the flag, the variable and the file key, and says what is allowed', () => {
    const port = error({ ...base, port: '99999' })
    expect(port._tag).toBe('NodeConfigError')
    expect(port.field).toBe('port')
    expect(port.message).toBe('--port (MYCORRIZAL_PORT, "port" in the config file) must be an integer from 0 to 65535, got "99999"')
    expect(error({ ...base, port: 'x' }).message).toBe('--port (MYCORRIZAL_PORT, "port" in the config file) must be an integer from 0 to 65535, got "x"')
    expect(error({ ...base, advertisePort: '0' }).message).toContain('must be an integer from 1 to 65535')
    expect(ok({ ...base, port: ' 7000 ' }).port).toBe(7000)
    expect(ok({ ...base, heartbeatInterval: '100ms', failureTimeout: '1s' })).toMatchObject({ heartbeatIntervalMs: 100, failureTimeoutMs: 1000 })
    expect(error({ ...base, failureTimeout: 'soon' }).message).toBe('--failure-timeout (MYCORRIZAL_FAILURE_TIMEOUT, "failureTimeout" in the config file) must be a duration such as 500ms, 2s or 1m, got "soon"')
    expect(error({ ...base, buckets: 'sessions:forever:10' }).message).toContain('--bucket (MYCORRIZAL_BUCKET, "buckets" in the config file)')
    expect(error({ ...base, buckets: 'sessions:forever:10' }).message).toContain('the ttl must be a duration such as 500ms, 60s')
    expect(error({ ...base, buckets: 'x:1s:1,x:2s:2' }).message).toContain('names bucket "x" twice')
    expect(error({ ...base, logLevel: 'loud' }).message).toBe('--log-level (MYCORRIZAL_LOG_LEVEL, "logLevel" in the config file) must be one of debug, info, warn, error, silent, got "loud"')
    expect(error({ ...base, nodeId: 'has space' }).field).toBe('nodeId')
    expect(error({}, { MYCORRIZAL_ADMIN_PORT: 'x' }).message).toContain('--admin-port (MYCORRIZAL_ADMIN_PORT')
  })

  it('combinations: authentication is required, mTLS files come together, discovery modes exclude each other', () => {
    expect(error({}).message).toContain('--cluster-secret (MYCORRIZAL_CLUSTER_SECRET, "clusterSecret" in the config file) is needed')
    expect(ok({ single: 'true' }).single).toBe(true)
    expect(error({ clusterSecret: 'short' }).message).toContain('at least 32 characters')
    expect(error({ tlsCa: '/x/ca.pem' }).field).toBe('tlsCert')
    expect(error({ ...base, seeds: '127.0.0.1:7000', dns: 'mycorrizal.local' }).message).toContain('exclude each other')
    expect(error({ tlsCa: '/nonexistent/ca.pem', tlsCert: '/nonexistent/n.pem', tlsKey: '/nonexistent/k.pem' }).message).toContain('names a file that could not be read')
  })

  it('a cluster secret is a key: under 32 characters it is refused, naming the field and `mycorrizal secret`', () => {
    const short = error({ clusterSecret: 'x'.repeat(31) })
    expect(short.field).toBe('clusterSecret')
    expect(short.message).toBe(
      '--cluster-secret (MYCORRIZAL_CLUSTER_SECRET, "clusterSecret" in the config file) must hold at least 32 characters: the cluster secret is a key, not a password; `mycorrizal secret` prints a fresh one'
    )
    expect(ok({ clusterSecret: 'x'.repeat(32) }).clusterSecret).toBeDefined()
  })

  it('secrets from files: --cluster-secret-file, --admin-token-file, --admin-read-token-file and their variables', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mycorrizal-secrets-'))
    try {
      const secretFile = join(dir, 'secret')
      writeFileSync(secretFile, `${'s'.repeat(43)}\n`, { mode: 0o600 })
      const tokenFile = join(dir, 'token')
      writeFileSync(tokenFile, 'admin-token-from-a-file\n')
      const readFile = join(dir, 'read')
      writeFileSync(readFile, '  read-token-from-a-file  ')
      // flags, and the environment as in a container with mounted secrets
      const fromFlags = ok({ clusterSecretFile: secretFile, adminTokenFile: tokenFile, adminReadTokenFile: readFile })
      const fromEnv = ok({}, { MYCORRIZAL_CLUSTER_SECRET_FILE: secretFile, MYCORRIZAL_ADMIN_TOKEN_FILE: tokenFile, MYCORRIZAL_ADMIN_READ_TOKEN_FILE: readFile })
      for (const s of [fromFlags, fromEnv]) {
        expect(Redacted.value(s.clusterSecret!)).toBe('s'.repeat(43))
        expect(Redacted.value(s.adminToken!)).toBe('admin-token-from-a-file')
        expect(Redacted.value(s.adminReadToken!)).toBe('read-token-from-a-file')
      }
      // the Consul ACL token the same ways
      const consulFile = join(dir, 'consul')
      writeFileSync(consulFile, 'consul-acl-token-0123\n')
      expect(Redacted.value(ok({ ...base, consul: 'http://127.0.0.1:8500', consulTokenFile: consulFile }).consulToken!)).toBe('consul-acl-token-0123')
      expect(Redacted.value(ok({ ...base, consul: 'http://127.0.0.1:8500' }, { MYCORRIZAL_CONSUL_TOKEN_FILE: consulFile }).consulToken!)).toBe('consul-acl-token-0123')
      // the file key in a config file too
      withFile(JSON.stringify({ clusterSecretFile: secretFile }), (config) => expect(Redacted.value(ok({ config }).clusterSecret!)).toBe('s'.repeat(43)))
      // one way only
      const both = error({ clusterSecret: 'x'.repeat(40), clusterSecretFile: secretFile })
      expect(both.field).toBe('clusterSecretFile')
      expect(both.message).toContain('exclude each other')
      // the rules of the secret apply to what the file holds, and the error names the file setting
      const shortFile = join(dir, 'short')
      writeFileSync(shortFile, 'too-short-secret\n')
      const short = error({ clusterSecretFile: shortFile })
      expect(short.field).toBe('clusterSecretFile')
      expect(short.message).toContain('--cluster-secret-file (MYCORRIZAL_CLUSTER_SECRET_FILE, "clusterSecretFile" in the config file) must hold at least 32 characters')
      expect(short.message).not.toContain('too-short-secret')
      expect(error({ ...base, adminTokenFile: shortFile.replace('short', 'missing') }).message).toContain('--admin-token-file (MYCORRIZAL_ADMIN_TOKEN_FILE, "adminTokenFile" in the config file) names a file that could not be read')
      const empty = join(dir, 'empty')
      writeFileSync(empty, '\n')
      expect(error({ clusterSecretFile: empty }).message).toContain('names an empty file')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('a bad value holding a URL with credentials is echoed without them', () => {
    const bad = error({ ...base, dnsPort: 'http://user:hunter2@consul.internal:8500' })
    expect(bad.message).toContain('got "http://***@consul.internal:8500"')
    expect(bad.message).not.toContain('hunter2')
  })

  it('the admin API beyond loopback needs a token of at least 16 characters', () => {
    expect(error({ ...base, adminHost: '0.0.0.0' }).field).toBe('adminToken')
    expect(error({ ...base, adminHost: '0.0.0.0', adminToken: 'short' }).message).toContain('at least 16 characters')
    const s = ok({ ...base, adminHost: '0.0.0.0', adminToken: 'sixteen-chars-ok!' })
    expect(Redacted.value(s.adminToken!)).toBe('sixteen-chars-ok!')
  })

  it('secrets never appear in error messages', () => {
    expect(error({ clusterSecret: 'short' }).message).not.toContain('short"')
    expect(error({ ...base, adminHost: '0.0.0.0', adminToken: 'tiny-token' }).message).not.toContain('tiny-token')
  })

  it('the config file: unknown keys, bad JSON and bad types are named', () => {
    withFile('{"prot": 7000}', (config) => expect(error({ config }).message).toContain('has an unknown key "prot"'))
    withFile('{not json', (config) => expect(error({ config }).message).toContain('could not be read as JSON'))
    withFile('[1,2]', (config) => expect(error({ config }).message).toContain('must hold a JSON object'))
    withFile('{"port": {"a": 1}}', (config) => expect(error({ config }).field).toBe('port'))
  })

  it("a cluster setting is refused by the library's own rule, named as the flag: what the CLI accepts the node starts with", () => {
    const libraryMessage = (input: NodosumConfig.NodosumSettingsInput) => {
      const result = NodosumConfig.validate({ single: true, ...input }, {})
      return Either.isLeft(result) ? result.left.message : 'accepted'
    }
    const heartbeat = error({ ...base, heartbeatInterval: '5ms' })
    expect(heartbeat.message).toBe('--heartbeat-interval (MYCORRIZAL_HEARTBEAT_INTERVAL, "heartbeatInterval" in the config file) must be a duration from 10 ms to 60000 ms, got "5ms"')
    expect(libraryMessage({ heartbeatInterval: 5 })).toBe('heartbeatInterval must be a duration from 10 ms to 60000 ms')
    expect(error({ ...base, seeds: '127.0.0.1:7000,nohost' }).message).toBe(
      '--seeds (MYCORRIZAL_SEEDS, "seeds" in the config file) must be host:port[,host:port...] with ports from 1 to 65535, got "127.0.0.1:7000,nohost"'
    )
    const id = error({ ...base, nodeId: 'has space' })
    expect(id.message).toBe(`--node-id (MYCORRIZAL_NODE_ID, "nodeId" in the config file) ${libraryMessage({ nodeId: 'has space' }).replace(/^nodeId /, '')}, got "has space"`)
    expect(error({ ...base, consul: 'ftp://x' }).message).toContain('must be the http:// or https:// URL of the Consul agent')
  })

  it('any text in any field gives settings or a NodeConfigError naming a known field, never a throw', () => {
    const keys = fields.map((f) => f.key).filter((k) => k !== 'config' && !k.startsWith('tls') && !k.endsWith('File'))
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom(...keys), fc.string({ maxLength: 40 })), fc.dictionary(fc.constantFrom(...fields.filter((f) => !f.key.endsWith('File')).map((f) => f.env)), fc.string({ maxLength: 40 })), (flags, env) => {
        const result = resolve(flags, env)
        if (Either.isLeft(result)) {
          expect(result.left._tag).toBe('NodeConfigError')
          expect(fields.some((f) => f.key === result.left.field)).toBe(true)
          expect(result.left.message.startsWith('--')).toBe(true)
        } else {
          expect(result.right.port).toBeGreaterThanOrEqual(0)
        }
      }),
      { numRuns: 5_000 }
    )
  })
})
