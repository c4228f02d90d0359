import { afterAll, beforeAll, describe, expect, it } from '@effect/vitest'
import { Effect, Redacted } from 'effect'
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import * as Discovery from '../src/Discovery.js'
import * as NodosumConfig from '../src/NodosumConfig.js'

const freeUdpPort = () =>
  new Promise<number>((resolve, reject) => {
    const socket = createSocket('udp4')
    socket.once('error', reject)
    socket.bind(0, '127.0.0.1', () => {
      const { port } = socket.address()
      socket.close(() => resolve(port))
    })
  })

const dnsmasqPath = (() => {
  for (const candidate of ['/usr/sbin/dnsmasq', '/usr/bin/dnsmasq', 'dnsmasq']) {
    try {
      execFileSync(candidate, ['--version'], { stdio: 'ignore' })
      return candidate
    } catch {
      // next
    }
  }
  return undefined
})()

describe('DNS discovery against a real dnsmasq on loopback', () => {
  let dnsmasq: ChildProcess | undefined
  let port = 0

  beforeAll(async () => {
    if (dnsmasqPath === undefined) throw new Error('dnsmasq is not installed: apt-get install dnsmasq-base (.ci/run installs it)')
    port = await freeUdpPort()
    dnsmasq = spawn(
      dnsmasqPath,
      [
        '--keep-in-foreground',
        '--no-daemon',
        `--port=${port}`,
        '--listen-address=127.0.0.1',
        '--bind-interfaces',
        '--no-resolv',
        '--no-hosts',
        '--no-poll',
        '--conf-file=/dev/null',
        '--pid-file=',
        '--user=root',
        '--host-record=nodes.mycorrizal.test,127.0.0.11',
        '--host-record=nodes.mycorrizal.test,127.0.0.12',
        '--host-record=nodes.mycorrizal.test,::1',
        '--host-record=node-a.mycorrizal.test,127.0.0.21',
        '--host-record=node-b.mycorrizal.test,127.0.0.22',
        '--srv-host=_mycorrizal._udp.mycorrizal.test,node-a.mycorrizal.test,7101',
        '--srv-host=_mycorrizal._udp.mycorrizal.test,node-b.mycorrizal.test,7102'
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] }
    )
    // wait until it answers
    const probe = Discovery.dns({ name: 'node-a.mycorrizal.test', port: 1, server: { host: '127.0.0.1', port }, timeoutMs: 200 })
    for (let i = 0; i < 50; i++) {
      const ok = await Effect.runPromise(Effect.either(probe.resolve))
      if (ok._tag === 'Right') return
      await new Promise((r) => setTimeout(r, 100))
    }
    throw new Error('dnsmasq did not start answering')
  }, 20_000)

  afterAll(() => {
    dnsmasq?.kill('SIGTERM')
  })

  it.effect('A and AAAA records give every address with the configured port', () =>
    Effect.gen(function* () {
      const d = Discovery.dns({ name: 'nodes.mycorrizal.test', port: 7000, server: { host: '127.0.0.1', port } })
      const addresses = yield* d.resolve
      expect([...addresses].sort((a, b) => (a.host < b.host ? -1 : 1))).toEqual([
        { host: '127.0.0.11', port: 7000 },
        { host: '127.0.0.12', port: 7000 },
        { host: '::1', port: 7000 }
      ])
    })
  )

  it.effect('SRV records give each target with its own port', () =>
    Effect.gen(function* () {
      const d = Discovery.dns({ name: '_mycorrizal._udp.mycorrizal.test', server: { host: '127.0.0.1', port } })
      const addresses = yield* d.resolve
      expect([...addresses].sort((a, b) => a.port - b.port)).toEqual([
        { host: '127.0.0.21', port: 7101 },
        { host: '127.0.0.22', port: 7102 }
      ])
    })
  )

  it.effect('an unknown name is a DiscoveryError, not a crash', () =>
    Effect.gen(function* () {
      const d = Discovery.dns({ name: 'missing.mycorrizal.test', port: 7000, server: { host: '127.0.0.1', port } })
      const error = yield* Effect.flip(d.resolve)
      expect(error._tag).toBe('DiscoveryError')
      expect(error.message).toContain('missing.mycorrizal.test')
    })
  )
})

describe('Consul discovery against an HTTP server with the documented response', () => {
  let server: Server
  let url = ''
  let body: unknown = []
  let status = 200
  const requests: Array<string> = []
  const headers: Array<Record<string, string | Array<string> | undefined>> = []

  beforeAll(async () => {
    server = createServer((req, res) => {
      requests.push(req.url ?? '')
      headers.push(req.headers)
      res.writeHead(status, { 'content-type': 'application/json' })
      res.end(JSON.stringify(body))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })

  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

  it.effect('passing instances, service address over node address', () =>
    Effect.gen(function* () {
      body = [
        { Node: { Node: 'n1', Address: '10.0.0.1' }, Service: { ID: 'a', Service: 'mycorrizal', Address: '127.0.0.31', Port: 7201 }, Checks: [] },
        { Node: { Node: 'n2', Address: '127.0.0.32' }, Service: { ID: 'b', Service: 'mycorrizal', Address: '', Port: 7202 }, Checks: [] },
        { Node: { Node: 'n3', Address: '127.0.0.33' }, Service: { ID: 'c', Service: 'mycorrizal' } }
      ]
      status = 200
      const addresses = yield* Discovery.consul({ url, service: 'mycorrizal' }).resolve
      expect(addresses).toEqual([
        { host: '127.0.0.31', port: 7201 },
        { host: '127.0.0.32', port: 7202 }
      ])
      expect(requests.at(-1)).toBe('/v1/health/service/mycorrizal?passing')
    })
  )

  it.effect('an error status or a malformed body is a DiscoveryError', () =>
    Effect.gen(function* () {
      status = 500
      const e1 = yield* Effect.flip(Discovery.consul({ url, service: 'x' }).resolve)
      expect(e1.message).toContain('HTTP 500')
      status = 200
      body = { not: 'an array' }
      const e2 = yield* Effect.flip(Discovery.consul({ url, service: 'x' }).resolve)
      expect(e2.message).toContain('JSON array')
    })
  )

  it.effect('credentials in the URL go as Authorization: Basic, an ACL token as X-Consul-Token; neither is logged', () =>
    Effect.gen(function* () {
      body = [{ Node: { Address: '127.0.0.41' }, Service: { Address: '', Port: 7301 } }]
      status = 200
      const withCredentials = url.replace('http://', 'http://ops:p%40ss-w0rd@')
      const discovery = Discovery.consul({ url: withCredentials, service: 'mycorrizal', token: Redacted.make('acl-token-0123') })
      expect(yield* discovery.resolve).toEqual([{ host: '127.0.0.41', port: 7301 }])
      const seen = headers.at(-1)!
      expect(seen['authorization']).toBe(`Basic ${Buffer.from('ops:p@ss-w0rd').toString('base64')}`)
      expect(seen['x-consul-token']).toBe('acl-token-0123')
      expect(discovery.describe).not.toContain('w0rd')
      status = 500
      const error = yield* Effect.flip(discovery.resolve)
      expect(error.message).toContain('HTTP 500')
      expect(error.message).not.toMatch(/w0rd|ops:|acl-token/)
    })
  )

  it.effect('the settings carry the token from consulToken; the URL keeps its credentials for the request only', () =>
    Effect.gen(function* () {
      const settings = yield* NodosumConfig.make({ nodeId: 'n', single: true, consul: 'http://ops:secret@127.0.0.1:8500', consulToken: 'tok' })
      expect(settings.discovery._tag === 'Consul' && Redacted.value(settings.discovery.token!)).toBe('tok')
      expect(Discovery.consulEndpoint('http://ops:secret@127.0.0.1:8500/')).toEqual({
        url: 'http://127.0.0.1:8500',
        display: 'http://127.0.0.1:8500',
        authorization: `Basic ${Buffer.from('ops:secret').toString('base64')}`
      })
    })
  )
})
