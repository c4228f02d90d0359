import { describe, expect, it } from '@effect/vitest'
import { Metrics } from '@mycorrizal/metrics'
import { Elections, Locks, MemoryTransport, Mycel, Nodosum, Streams, Topics } from 'mycorrizal'
import { Context, Duration, Effect, Layer, Logger, LogLevel, Redacted, type Scope } from 'effect'
import fc from 'fast-check'
import { request as httpRequest } from 'node:http'
import * as Admin from '../src/Admin.js'

const secret = 'admin-test-secret-of-at-least-32-characters'
const WRITE = 'write-token-0123456789'
const READ = 'read-token-0123456789'

interface NodeOptions {
  readonly write?: string
  readonly read?: string
  readonly maxMessageSize?: number
}

const node = (id: string, seeds: ReadonlyArray<string>, tokens: boolean | NodeOptions) =>
  Effect.gen(function* () {
    const o: NodeOptions = tokens === true ? { write: WRITE, read: READ } : tokens === false ? {} : tokens
    const ctx = yield* Layer.build(
      Metrics.layer({ processMetrics: false }).pipe(
        Layer.provideMerge(Layer.merge(Locks.layer(), Elections.layer())),
        Layer.provideMerge(Layer.merge(Mycel.layer({ requestTimeout: '1 second', readyTimeout: '2 seconds' }), Topics.layer())),
        Layer.provideMerge(Streams.layer()),
        Layer.provideMerge(Nodosum.layerMemory({ nodeId: id, host: id, port: 7001, clusterSecret: secret, seeds: [...seeds], maxMessageSize: o.maxMessageSize }))
      )
    )
    const metrics = Context.get(ctx, Metrics.Metrics)
    const mycel = Context.get(ctx, Mycel.Mycel)
    yield* mycel.createBucket('sessions', '1 minute', 1000)
    const admin = yield* Admin.make({
      host: '127.0.0.1',
      port: 0,
      adminToken: o.write === undefined ? undefined : Redacted.make(o.write),
      readToken: o.read === undefined ? undefined : Redacted.make(o.read),
      metrics: metrics.text,
      metricsContentType: metrics.contentType,
      joined: () => true
    }).pipe(Effect.provide(ctx))
    return {
      admin,
      nodosum: Context.get(ctx, Nodosum.Nodosum),
      mycel,
      topics: Context.get(ctx, Topics.Topics),
      locks: Context.get(ctx, Locks.Locks),
      elections: Context.get(ctx, Elections.Elections)
    }
  })

const call = (url: string, init: RequestInit & { token?: string } = {}) =>
  Effect.promise(async () => {
    const headers = new Headers(init.headers)
    if (init.token !== undefined) headers.set('authorization', `Bearer ${init.token}`)
    const r = await fetch(url, { ...init, headers })
    return { status: r.status, headers: r.headers, body: new Uint8Array(await r.arrayBuffer()) }
  })

const text = (b: Uint8Array) => new TextDecoder().decode(b)

/** A request through node:http, which sends the Host header it is given (fetch does not). */
const raw = (url: string, method: string, headers: Record<string, string>) =>
  Effect.async<{ status: number; body: string }>((resume) => {
    const request = httpRequest(url, { method, headers }, (response) => {
      let body = ''
      response.on('data', (d: Buffer) => (body += d.toString()))
      response.on('end', () => resume(Effect.succeed({ status: response.statusCode!, body })))
    })
    request.on('error', (e) => resume(Effect.die(e)))
    request.end()
  })

/**
 * A chunked PUT (no Content-Length) that keeps sending 16 KiB chunks, one per millisecond,
 * until the server answers or `max` bytes are sent (then it ends the body). Resolves with
 * the status and the bytes sent when the answer came.
 */
const chunkedPut = (url: string, max: number) =>
  Effect.async<{ status: number; sentBeforeAnswer: number; body: string }>((resume) => {
    let sent = 0
    let answered = false
    const request = httpRequest(url, { method: 'PUT', headers: { 'transfer-encoding': 'chunked' } }, (response) => {
      answered = true
      const at = sent
      let body = ''
      response.on('data', (d: Buffer) => (body += d.toString()))
      response.on('end', () => resume(Effect.succeed({ status: response.statusCode!, sentBeforeAnswer: at, body })))
      response.on('error', () => resume(Effect.succeed({ status: response.statusCode!, sentBeforeAnswer: at, body })))
    })
    // the server closes the connection after its answer: the rest of the upload fails, as it should
    request.on('error', (e) => {
      if (!answered) resume(Effect.die(e))
    })
    const chunk = Buffer.alloc(16 * 1024, 7)
    const next = () => {
      if (answered || request.destroyed) return
      if (sent >= max) return void request.end()
      request.write(chunk, () => {
        sent += chunk.length
        setTimeout(next, 1)
      })
    }
    next()
  })

const cluster = Effect.gen(function* () {
  const a = yield* node('a', [], false)
  const b = yield* node('b', ['a:7001'], true)
  for (let i = 0; i < 500 && (a.nodosum.nodes().length < 2 || b.nodosum.nodes().length < 2); i++) yield* Effect.sleep(Duration.millis(10))
  expect(b.nodosum.nodes()).toEqual(['a', 'b'])
  return { a, b }
})

const run = <A, E>(effect: Effect.Effect<A, E, MemoryTransport.MemoryNetwork | Scope.Scope>) =>
  effect.pipe(Effect.scoped, Effect.provide(MemoryTransport.networkLayer), Logger.withMinimumLogLevel(LogLevel.Error))

describe('Admin HTTP API', () => {
  it.live('cache REST: a put on one node is read on the other; misses, bad keys and unknown buckets get JSON errors', () =>
    run(
      Effect.gen(function* () {
        const { a, b } = yield* cluster
        const put = yield* call(`${a.admin.url}/v1/cache/sessions/user%3A1`, { method: 'PUT', body: 'alice' })
        expect(put.status).toBe(204)
        const got = yield* call(`${b.admin.url}/v1/cache/sessions/user%3A1`, { token: READ })
        expect(got.status).toBe(200)
        expect(got.headers.get('content-type')).toBe('application/octet-stream')
        expect(text(got.body)).toBe('alice')
        const binary = new Uint8Array([0, 255, 1, 254])
        expect((yield* call(`${a.admin.url}/v1/cache/sessions/bin`, { method: 'PUT', body: binary })).status).toBe(204)
        expect([...(yield* call(`${a.admin.url}/v1/cache/sessions/bin`)).body]).toEqual([0, 255, 1, 254])
        const miss = yield* call(`${a.admin.url}/v1/cache/sessions/nobody`)
        expect(miss.status).toBe(404)
        expect(JSON.parse(text(miss.body))).toMatchObject({ error: 'NotFound' })
        const unknown = yield* call(`${a.admin.url}/v1/cache/nope/k`)
        expect(unknown.status).toBe(404)
        expect(JSON.parse(text(unknown.body))).toMatchObject({ error: 'BucketNotFound' })
        const longKey = yield* call(`${a.admin.url}/v1/cache/sessions/${'k'.repeat(1025)}`, { method: 'PUT', body: 'x' })
        expect(longKey.status).toBe(400)
        expect(JSON.parse(text(longKey.body))).toMatchObject({ error: 'InvalidKey' })
        expect((yield* call(`${a.admin.url}/v1/cache/sessions/user%3A1`, { method: 'DELETE' })).status).toBe(204)
        expect((yield* call(`${b.admin.url}/v1/cache/sessions/user%3A1`, { token: READ })).status).toBe(404)
        const route = yield* call(`${a.admin.url}/nothing/here`)
        expect(route.status).toBe(404)
        expect(JSON.parse(text(route.body)).error).toBe('NotFound')
      })
    )
  )

  it.live('cache REST: atomic increments on either node, read back by get; a value that is not an integer and a bad delta are refused', () =>
    run(
      Effect.gen(function* () {
        const { a, b } = yield* cluster
        // b has tokens (writes need the admin one), a has none
        const incr = (url: string, query = '') => call(`${url}/v1/cache/sessions/hits/increment${query}`, { method: 'POST', token: WRITE })
        const first = yield* incr(a.admin.url)
        expect(first.status).toBe(200)
        expect(JSON.parse(text(first.body))).toEqual({ value: 1 })
        expect(JSON.parse(text((yield* incr(b.admin.url, '?delta=41')).body))).toEqual({ value: 42 })
        expect(JSON.parse(text((yield* incr(a.admin.url, '?delta=-2')).body))).toEqual({ value: 40 })
        expect(text((yield* call(`${b.admin.url}/v1/cache/sessions/hits`, { token: READ })).body)).toBe('40')
        const bad = yield* incr(a.admin.url, '?delta=1.5')
        expect(bad.status).toBe(400)
        expect(JSON.parse(text(bad.body))).toMatchObject({ error: 'InvalidDelta' })
        expect((yield* call(`${a.admin.url}/v1/cache/sessions/name`, { method: 'PUT', body: 'alice' })).status).toBe(204)
        const notInt = yield* call(`${b.admin.url}/v1/cache/sessions/name/increment`, { method: 'POST', token: WRITE })
        expect((yield* call(`${b.admin.url}/v1/cache/sessions/hits/increment`, { method: 'POST', token: READ })).status).toBe(403)
        expect(notInt.status).toBe(409)
        expect(JSON.parse(text(notInt.body))).toMatchObject({ error: 'NotInteger' })
      })
    )
  )

  it.live('tokens: without one writes and reads are refused (401), the read token may not write (403); metrics and health stay open', () =>
    run(
      Effect.gen(function* () {
        const { b } = yield* cluster
        const anonymous = yield* call(`${b.admin.url}/v1/cache/sessions/k`, { method: 'PUT', body: 'v' })
        expect(anonymous.status).toBe(401)
        expect(anonymous.headers.get('www-authenticate')).toContain('Bearer')
        expect((yield* call(`${b.admin.url}/v1/cache/sessions/k`, { method: 'PUT', body: 'v', token: 'wrong-token-0123456789' })).status).toBe(401)
        expect((yield* call(`${b.admin.url}/v1/cache/sessions/k`, { method: 'PUT', body: 'v', token: READ })).status).toBe(403)
        expect((yield* call(`${b.admin.url}/v1/cache/sessions/k`, { method: 'DELETE', token: READ })).status).toBe(403)
        expect(b.mycel.stats('sessions')!.puts).toBe(0)
        expect((yield* call(`${b.admin.url}/v1/cache/sessions/k`, { method: 'PUT', body: 'v', token: WRITE })).status).toBe(204)
        expect((yield* call(`${b.admin.url}/debug/members`)).status).toBe(401)
        expect((yield* call(`${b.admin.url}/debug/members`, { token: READ })).status).toBe(200)
        expect((yield* call(`${b.admin.url}/metrics`)).status).toBe(200)
        expect((yield* call(`${b.admin.url}/healthz`)).status).toBe(200)
        expect((yield* call(`${b.admin.url}/readyz`)).status).toBeLessThan(600)
      })
    )
  )

  it.live('tokens: with only the read token set, writes are refused (403), not left open', () =>
    run(
      Effect.gen(function* () {
        const solo = yield* node('solo', [], { read: READ })
        const url = `${solo.admin.url}/v1/cache/sessions/k`
        expect((yield* call(url, { method: 'PUT', body: 'v' })).status).toBe(401)
        const withRead = yield* call(url, { method: 'PUT', body: 'v', token: READ })
        expect(withRead.status).toBe(403)
        expect(JSON.parse(text(withRead.body)).message).toContain('writes need the admin token')
        expect((yield* call(url, { method: 'DELETE', token: READ })).status).toBe(403)
        expect(solo.mycel.stats('sessions')!.puts).toBe(0)
        expect((yield* call(url, { token: READ })).status).toBe(404)
        expect((yield* call(`${solo.admin.url}/debug/members`)).status).toBe(401)
        expect((yield* call(`${solo.admin.url}/debug/members`, { token: READ })).status).toBe(200)
      })
    )
  )

  it.live('DNS rebinding: without a token, a Host other than loopback or the bound address is refused with 403', () =>
    run(
      Effect.gen(function* () {
        const { a, b } = yield* cluster
        const port = a.admin.port
        const evil = yield* raw(`${a.admin.url}/debug/members`, 'GET', { host: 'evil.example' })
        expect(evil.status).toBe(403)
        expect(JSON.parse(evil.body)).toMatchObject({ error: 'ForbiddenHost' })
        expect(JSON.parse(evil.body).message).toContain("Host 'evil.example' is refused")
        expect(JSON.parse(evil.body).message).toContain('DNS rebinding')
        expect((yield* raw(`${a.admin.url}/v1/cache/sessions/k`, 'PUT', { host: `evil.example:${port}`, 'content-length': '0' })).status).toBe(403)
        expect((yield* raw(`${a.admin.url}/metrics`, 'GET', { host: `rebind.attacker.test:${port}` })).status).toBe(403)
        expect(a.mycel.stats('sessions')!.puts).toBe(0)
        for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, 'LOCALHOST', '127.0.0.2']) {
          expect((yield* raw(`${a.admin.url}/debug/members`, 'GET', { host })).status, host).toBe(200)
        }
        // with a token configured the token guards the API, whatever name it is reached by
        expect((yield* raw(`${b.admin.url}/debug/members`, 'GET', { host: 'mycorrizal.internal', authorization: `Bearer ${READ}` })).status).toBe(200)
        expect(Admin.hostAllowed('10.0.0.5:7401', '10.0.0.5')).toBe(true)
        expect(Admin.hostAllowed('[fe80::1]:7401', 'fe80::1')).toBe(true)
        expect(Admin.hostAllowed('10.0.0.6', '10.0.0.5')).toBe(false)
      })
    )
  )

  it.live('a chunked PUT without Content-Length is cut off at the size limit while it streams: 413 long before the body ends', () =>
    run(
      Effect.gen(function* () {
        const limit = 64 * 1024
        const solo = yield* node('solo', [], { maxMessageSize: limit })
        const url = `${solo.admin.url}/v1/cache/sessions/big`
        // a body that would go on for 8 MiB is answered once the limit is passed
        const cut = yield* chunkedPut(url, 8 * 1024 * 1024)
        expect(cut.status).toBe(413)
        expect(JSON.parse(cut.body)).toMatchObject({ error: 'ValueTooLarge' })
        expect(cut.sentBeforeAnswer).toBeLessThan(1024 * 1024)
        expect(solo.mycel.stats('sessions')!.puts).toBe(0)
        // a chunked body under the limit is stored
        const small = yield* chunkedPut(url, 32 * 1024)
        expect(small.status).toBe(204)
        expect((yield* call(url)).body.length).toBe(32 * 1024)
        // a declared Content-Length over the limit is refused before reading
        expect((yield* call(url, { method: 'PUT', body: new Uint8Array(limit + 1) })).status).toBe(413)
        expect((yield* call(`${solo.admin.url}/healthz`)).status).toBe(200)
      })
    )
  )

  it.live('debug: members with state alive (self included), streams with stats, topics, metrics in the Prometheus format', () =>
    run(
      Effect.gen(function* () {
        const { a } = yield* cluster
        const members = JSON.parse(text((yield* call(`${a.admin.url}/debug/members`)).body)) as Array<{ id: string; address: string; state: string; self: boolean }>
        expect(members.map((m) => [m.id, m.state, m.self]).sort()).toEqual([
          ['a', 'alive', true],
          ['b', 'alive', false]
        ])
        expect(members.every((m) => /^.+:\d+$/.test(m.address))).toBe(true)
        yield* call(`${a.admin.url}/v1/cache/sessions/k`, { method: 'PUT', body: 'v' })
        const streams = JSON.parse(text((yield* call(`${a.admin.url}/debug/streams`)).body)) as Array<{ app: string; streams: Array<{ stream: string; messagesOut: number }> }>
        const mycel = streams.find((s) => s.app === 'SYSTEM-MYCEL')!
        // the locks' and elections' system buckets have their streams too
        expect(mycel.streams.map((s) => s.stream).sort()).toEqual(['bucket:sessions', 'bucket:system.elections', 'bucket:system.locks', 'default'])
        const one = yield* call(`${a.admin.url}/debug/streams/SYSTEM-MYCEL/bucket%3Asessions`)
        expect(one.status).toBe(200)
        expect(JSON.parse(text(one.body))).toMatchObject({ app: 'SYSTEM-MYCEL', stream: 'bucket:sessions', activeNodes: ['b'] })
        expect((yield* call(`${a.admin.url}/debug/streams/SYSTEM-MYCEL/nope`)).status).toBe(404)
        expect((yield* call(`${a.admin.url}/debug/streams/nope/default`)).status).toBe(404)
        const metrics = yield* call(`${a.admin.url}/metrics`)
        expect(metrics.headers.get('content-type')).toContain('text/plain; version=0.0.4')
        expect(text(metrics.body)).toContain('mycorrizal_cache_keys{bucket="sessions"}')
        const ready = JSON.parse(text((yield* call(`${a.admin.url}/readyz`)).body))
        expect(ready).toMatchObject({ joined: true, members: 2 })
        expect(JSON.parse(text((yield* call(`${a.admin.url}/debug/topics`)).body))).toEqual([])
        yield* a.topics.subscribe('orders', () => {})
        yield* a.topics.publish('orders', new Uint8Array(1))
        expect(JSON.parse(text((yield* call(`${a.admin.url}/debug/topics`)).body))).toEqual([
          { topic: 'orders', localSubscribers: 1, subscriberNodes: [], published: 1, delivered: 1, pending: 0, failedPublishes: 0 }
        ])
        const lock = yield* a.locks.acquire('invoice-42', { ttlMs: 60_000 })
        const locks = JSON.parse(text((yield* call(`${a.admin.url}/debug/locks`)).body))
        expect(locks).toMatchObject({ acquires: 1, contended: 0, timeouts: 0, releases: 0, lost: 0, refused: 0, held: [{ name: 'invoice-42', token: '1' }] })
        expect(locks.held[0].remainingMs).toBeGreaterThan(50_000)
        yield* lock.release
        expect(JSON.parse(text((yield* call(`${a.admin.url}/debug/elections`)).body))).toEqual({ led: 0, revoked: 0, elections: [] })
        yield* a.elections.elect('nightly', { ttlMs: 10_000 })
        expect(JSON.parse(text((yield* call(`${a.admin.url}/debug/elections`)).body))).toEqual({
          led: 1,
          revoked: 0,
          elections: [{ name: 'nightly', isLeader: true, leader: 'a', token: '1', terms: 1 }]
        })
        expect(text((yield* call(`${a.admin.url}/metrics`)).body)).toContain('mycorrizal_elections_leader{election="nightly"} 1')
      })
    )
  )
  it.live('fuzz: random methods, paths, headers and bodies never get a 500 and never stop the API', () =>
    run(
      Effect.gen(function* () {
        const { a, b } = yield* cluster
        const segment = fc.oneof(fc.constantFrom('v1', 'cache', 'sessions', 'debug', 'streams', 'members', 'metrics', 'readyz', '%00', '%2F', '..', '%ZZ', ''), fc.string({ maxLength: 30 }).map(encodeURIComponent))
        const request = fc.record({
          node: fc.constantFrom(a, b),
          method: fc.constantFrom('GET', 'PUT', 'DELETE', 'POST', 'PATCH', 'HEAD', 'OPTIONS'),
          path: fc.oneof(
            fc.array(segment, { minLength: 0, maxLength: 5 }).map((parts) => `/${parts.join('/')}`),
            fc.tuple(fc.constantFrom('sessions', 'nope', ''), fc.string({ minLength: 0, maxLength: 40 })).map(([bucket, key]) => `/v1/cache/${bucket}/${encodeURIComponent(key)}`),
            fc.tuple(fc.constantFrom('SYSTEM-MYCEL', 'x'), fc.constantFrom('default', 'bucket:sessions', 'y')).map(([app, stream]) => `/debug/streams/${app}/${encodeURIComponent(stream)}`)
          ),
          body: fc.option(fc.uint8Array({ maxLength: 2048 }), { nil: undefined }),
          auth: fc.option(fc.oneof(fc.constant(`Bearer ${WRITE}`), fc.constant(`Bearer ${READ}`), fc.string({ maxLength: 60 })), { nil: undefined })
        })
        const statuses = new Set<number>()
        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(request, async (r) => {
              const headers: Record<string, string> = {}
              if (r.auth !== undefined) headers['authorization'] = r.auth.replace(/[^\x20-\x7e]/g, '')
              const hasBody = r.body !== undefined && r.method !== 'GET' && r.method !== 'HEAD'
              const response = await fetch(`${r.node.admin.url}${r.path}`, { method: r.method, headers, body: hasBody ? r.body : undefined })
              await response.arrayBuffer()
              statuses.add(response.status)
              expect(response.status).toBeLessThan(500)
            }),
            // a fixed seed: the coverage asserted below (a 403 needs a read-only token on a write)
            // must not depend on the draw; without it one run in many drew no 403
            { numRuns: 400, seed: 0x4d79636f }
          )
        )
        expect([...statuses].sort()).toEqual(expect.arrayContaining([200, 204, 401, 403, 404]))
        // both nodes still serve
        for (const n of [a, b]) expect((yield* call(`${n.admin.url}/healthz`)).status).toBe(200)
      })
    )
  , 60_000)
})
