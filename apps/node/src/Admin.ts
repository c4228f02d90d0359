/**
 * The admin HTTP API of a node: Prometheus metrics, health and readiness, membership and
 * stream stats for debugging, and a REST API over the cache.
 *
 *   GET    /metrics                      Prometheus text format
 *   GET    /healthz                      200 while the process serves
 *   GET    /readyz                       200 once joined and the cache handoff is done, else 503
 *   GET    /debug/members                [{ id, address, state }], self included
 *   GET    /debug/streams                every application and stream with its stats
 *   GET    /debug/streams/:app/:stream   one stream ("default" is the default stream)
 *   GET    /debug/topics                 every topic with its subscribers and message counts
 *   GET    /debug/locks                  lock counts and the locks this node holds (tokens as decimal strings)
 *   GET    /debug/elections              the elections this node stands in: leader, token, terms
 *   PUT    /v1/cache/:bucket/:key        raw bytes body; 204
 *   GET    /v1/cache/:bucket/:key        the bytes, or 404
 *   DELETE /v1/cache/:bucket/:key        204
 *   POST   /v1/cache/:bucket/:key/increment[?delta=N]   {"value": count} (atomic; delta default 1)
 *
 * Access: with no token configured the API is open (it then listens on loopback only) to
 * requests addressed to loopback — a `Host` header of `localhost`, `127.x.x.x`, `[::1]` or the
 * bound address — and refuses any other name with 403, so that a web page cannot reach it by
 * DNS rebinding. With any token configured, reads need the read or the admin token and writes
 * need the admin token, as `Authorization: Bearer <token>` (with only a read token, writes are
 * refused); metrics and health stay open for scrapers and probes.
 *
 * A PUT body is counted while it streams in: past the largest value (`maxMessageSize`) the
 * request is answered 413 and its connection closed, whether it declared a `Content-Length`
 * or came chunked.
 *
 * @since 0.1.0
 */
import { HttpRouter, type HttpServerError, HttpServerRequest, HttpServerResponse } from '@effect/platform'
import { NodeHttpServer, NodeHttpServerRequest } from '@effect/platform-node'
import type { MycelError } from 'mycorrizal'
import { Elections, Locks, Mycel, Nodosum, Streams, type StreamStats, Topics } from 'mycorrizal'
import * as Data from 'effect/Data'
import * as Effect from 'effect/Effect'
import * as Option from 'effect/Option'
import * as Redacted from 'effect/Redacted'
import type * as Scope from 'effect/Scope'
import { createHash, timingSafeEqual } from 'node:crypto'
import type { ElectionsView, LocksView, StreamView } from './Client.js'
import { createServer, type IncomingMessage } from 'node:http'

/** What the admin API serves. */
export interface AdminOptions {
  readonly host: string
  /** 0 picks a free port. */
  readonly port: number
  readonly adminToken: Redacted.Redacted<string> | undefined
  readonly readToken: Redacted.Redacted<string> | undefined
  /** The Prometheus exposition of this node. */
  readonly metrics: Effect.Effect<string>
  readonly metricsContentType: string
  /** True once the node has joined its cluster (or is alone by design). */
  readonly joined: () => boolean
}

/** A running admin API. */
export interface AdminServer {
  readonly host: string
  readonly port: number
  readonly url: string
}

type Scope_ = 'read' | 'write'

const digest = (s: string) => createHash('sha256').update(s).digest()

const json = (body: unknown, status = 200) => HttpServerResponse.unsafeJson(body, { status })

const problem = (status: number, error: string, message: string) => json({ error, message }, status)

/** The stats of one stream as the debug API shows them. */
export const streamView = (app: string, name: string, stats: StreamStats): StreamView => ({ app, stream: name, ...stats })

const cacheStatus: Record<MycelError['reason'], number> = {
  BucketNotFound: 404,
  BucketExists: 409,
  InvalidBucket: 400,
  // the cache's options are checked when the node starts, never by a request
  InvalidConfig: 500,
  ValueTooLarge: 413,
  Timeout: 504,
  Unavailable: 503,
  Closed: 503,
  Overloaded: 503,
  Refused: 503,
  Conflict: 409,
  NotInteger: 409,
  Overflow: 409
}

const MAX_KEY_BYTES = 1024

/** A request body could not be read whole: over the limit, or the client went away. */
class BodyError extends Data.TaggedError('BodyError')<{ readonly reason: 'TooLarge' | 'Failed'; readonly message: string }> {}

/**
 * Reads a request body, counting the bytes as they arrive: past `limit` it stops reading and
 * fails at once (the rest is never buffered), with or without a `Content-Length`.
 */
export const readBody = (source: IncomingMessage, limit: number): Effect.Effect<Uint8Array, BodyError> =>
  Effect.async<Uint8Array, BodyError>((resume) => {
    const chunks: Array<Buffer> = []
    let total = 0
    const cleanup = () => {
      source.off('data', onData)
      source.off('end', onEnd)
      source.off('error', onError)
      source.off('aborted', onAborted)
    }
    const onData = (chunk: Buffer) => {
      total += chunk.length
      if (total > limit) {
        cleanup()
        source.pause()
        resume(Effect.fail(new BodyError({ reason: 'TooLarge', message: `a value is at most ${limit} bytes` })))
      } else {
        chunks.push(chunk)
      }
    }
    const onEnd = () => {
      cleanup()
      resume(Effect.succeed(new Uint8Array(Buffer.concat(chunks, total))))
    }
    const onError = (e: Error) => {
      cleanup()
      resume(Effect.fail(new BodyError({ reason: 'Failed', message: `the request body could not be read: ${e.message}` })))
    }
    const onAborted = () => onError(new Error('the client went away'))
    source.on('data', onData)
    source.once('end', onEnd)
    source.once('error', onError)
    source.once('aborted', onAborted)
    return Effect.sync(cleanup)
  })

const LOOPBACK_NAMES = new Set(['localhost', '::1'])

/** The host name of a `Host` header, without port or IPv6 brackets, lower case. */
export const hostName = (header: string): string => {
  const h = header.trim().toLowerCase()
  if (h.startsWith('[')) {
    const end = h.indexOf(']')
    return end < 0 ? h : h.slice(1, end)
  }
  const colon = h.indexOf(':')
  return colon >= 0 && colon === h.lastIndexOf(':') ? h.slice(0, colon) : h
}

/** Whether a tokenless API answers a request with this `Host` header (undefined: none sent). */
export const hostAllowed = (header: string | undefined, boundHost: string): boolean => {
  if (header === undefined) return true
  const name = hostName(header)
  return LOOPBACK_NAMES.has(name) || /^127(\.\d{1,3}){3}$/.test(name) || name === hostName(boundHost.includes(':') && !boundHost.startsWith('[') ? `[${boundHost}]` : boundHost)
}


/** The locks' stats as `/debug/locks` answers them (tokens as decimal strings: JSON has no bigint). */
export const locksView = (stats: Locks.LockStats | undefined): LocksView => ({
  acquires: stats?.acquires ?? 0,
  contended: stats?.contended ?? 0,
  timeouts: stats?.timeouts ?? 0,
  releases: stats?.releases ?? 0,
  lost: stats?.lost ?? 0,
  refused: stats?.refused ?? 0,
  held: (stats?.held ?? []).map((h) => ({ name: h.name, token: h.token.toString(), remainingMs: h.remainingMs }))
})

/** The elections' stats as `/debug/elections` answers them. */
export const electionsView = (stats: Elections.ElectionStats | undefined): ElectionsView => ({
  led: stats?.led ?? 0,
  revoked: stats?.revoked ?? 0,
  elections: (stats?.elections ?? []).map((e) => ({ name: e.name, isLeader: e.isLeader, leader: e.leader ?? null, token: e.token?.toString() ?? null, terms: e.terms }))
})

/** Starts the admin API; the scope's close stops it. */
export const make = (
  options: AdminOptions
): Effect.Effect<AdminServer, HttpServerError.ServeError, Scope.Scope | Nodosum.Nodosum | Streams.Streams | Mycel.Mycel> =>
  Effect.gen(function* () {
    const nodosum = yield* Nodosum.Nodosum
    const streams = yield* Streams.Streams
    const mycel = yield* Mycel.Mycel
    const topics = Option.getOrUndefined(yield* Effect.serviceOption(Topics.Topics))
    const locks = Option.getOrUndefined(yield* Effect.serviceOption(Locks.Locks))
    const elections = Option.getOrUndefined(yield* Effect.serviceOption(Elections.Elections))
    const tokens = {
      write: options.adminToken === undefined ? undefined : digest(Redacted.value(options.adminToken)),
      read: options.readToken === undefined ? undefined : digest(Redacted.value(options.readToken))
    }

    const tokenless = tokens.write === undefined && tokens.read === undefined

    const granted = (header: string | undefined): Scope_ | undefined => {
      // open only when no token at all is configured: a read token alone does not open writes
      if (tokenless) return 'write'
      const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header)
      if (match === null) return undefined
      const given = digest(match[1]!)
      if (tokens.write !== undefined && timingSafeEqual(given, tokens.write)) return 'write'
      if (tokens.read !== undefined && timingSafeEqual(given, tokens.read)) return 'read'
      return undefined
    }

    /** Runs `handler` when the request's token grants `scope`. */
    const guarded = <E, R>(scope: Scope_, handler: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) =>
      Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
        const has = granted(request.headers['authorization'])
        if (has === undefined) {
          return Effect.succeed(
            HttpServerResponse.setHeader(problem(401, 'Unauthorized', 'this API needs Authorization: Bearer <token>'), 'www-authenticate', 'Bearer realm="mycorrizal"')
          )
        }
        if (scope === 'write' && has === 'read') {
          return Effect.succeed(
            problem(403, 'Forbidden', tokens.write === undefined ? 'writes need the admin token, and this node has none configured (--admin-token)' : 'the read-only token may not change the cache')
          )
        }
        return handler
      })

    /** A cache route: the bucket and key checked, the token's scope checked, cache errors as JSON. */
    const cacheRoute = <R>(scope: Scope_, handle: (bucket: string, key: string) => Effect.Effect<HttpServerResponse.HttpServerResponse, MycelError, R>) =>
      guarded(
        scope,
        Effect.gen(function* () {
          const params = yield* HttpRouter.params
          const bucket = params['bucket'] ?? ''
          const key = params['key'] ?? ''
          if (!mycel.buckets().includes(bucket)) return problem(404, 'BucketNotFound', `this node has no bucket '${bucket}'`)
          if (key.length === 0 || Buffer.byteLength(key) > MAX_KEY_BYTES) return problem(400, 'InvalidKey', `a key is 1 to ${MAX_KEY_BYTES} bytes`)
          return yield* handle(bucket, key)
        }).pipe(Effect.catchTag('MycelError', (e) => Effect.succeed(problem(cacheStatus[e.reason], e.reason, e.message))))
      )

    const streamsView = () =>
      streams.applications().map((app) => {
        const stats = app.stats()
        return {
          app: app.id,
          activeStreams: stats.activeStreams,
          totalBytesSent: stats.totalBytesSent,
          totalBytesReceived: stats.totalBytesReceived,
          totalMessagesOut: stats.totalMessagesOut,
          totalMessagesIn: stats.totalMessagesIn,
          totalFailedSends: stats.totalFailedSends,
          streams: [streamView(app.id, 'default', stats.defaultStreamStats), ...Object.entries(stats.streams).map(([name, s]) => streamView(app.id, name, s))]
        }
      })

    const router = HttpRouter.empty.pipe(
      HttpRouter.get(
        '/metrics',
        Effect.map(options.metrics, (body) => HttpServerResponse.text(body, { contentType: options.metricsContentType }))
      ),
      HttpRouter.get('/healthz', Effect.succeed(json({ status: 'ok', node: nodosum.nodeId }))),
      HttpRouter.get(
        '/readyz',
        Effect.sync(() => {
          const joined = options.joined()
          const cacheReady = mycel.ready()
          return json({ ready: joined && cacheReady, joined, cacheReady, members: nodosum.nodes().length }, joined && cacheReady ? 200 : 503)
        })
      ),
      HttpRouter.get(
        '/debug/members',
        guarded(
          'read',
          Effect.sync(() =>
            json(
              nodosum.members().map((m) => ({
                id: m.id,
                address: m.address.host.includes(':') ? `[${m.address.host}]:${m.address.port}` : `${m.address.host}:${m.address.port}`,
                state: m.state,
                since: new Date(m.since).toISOString(),
                self: m.id === nodosum.nodeId
              }))
            )
          )
        )
      ),
      HttpRouter.get('/debug/streams', guarded('read', Effect.sync(() => json(streamsView())))),
      HttpRouter.get('/debug/topics', guarded('read', Effect.sync(() => json(topics?.stats() ?? [])))),
      HttpRouter.get('/debug/locks', guarded('read', Effect.sync(() => json(locksView(locks?.stats()))))),
      HttpRouter.get('/debug/elections', guarded('read', Effect.sync(() => json(electionsView(elections?.stats()))))),
      HttpRouter.get(
        '/debug/streams/:app/:stream',
        guarded(
          'read',
          Effect.gen(function* () {
            const params = yield* HttpRouter.params
            const appId = params['app'] ?? ''
            const name = params['stream'] ?? ''
            const app = streams.applications().find((a) => a.id === appId)
            if (app === undefined) return problem(404, 'UnknownApplication', `no application '${appId}' on this node`)
            const stats = app.stats()
            const found = name === 'default' ? stats.defaultStreamStats : stats.streams[name]
            if (found === undefined) return problem(404, 'UnknownStream', `application '${appId}' has no stream '${name}'`)
            return json(streamView(appId, name, found))
          })
        )
      ),
      HttpRouter.get(
        '/v1/cache/:bucket/:key',
        cacheRoute('read', (bucket, key) =>
          Effect.map(mycel.get(bucket, key), (value) =>
            value === undefined
              ? problem(404, 'NotFound', `no key '${key}' in bucket '${bucket}'`)
              : HttpServerResponse.uint8Array(value, { contentType: 'application/octet-stream' })
          )
        )
      ),
      HttpRouter.put(
        '/v1/cache/:bucket/:key',
        cacheRoute('write', (bucket, key) =>
          Effect.gen(function* () {
            const request = yield* HttpServerRequest.HttpServerRequest
            const tooLarge = () => HttpServerResponse.setHeader(problem(413, 'ValueTooLarge', `a value is at most ${nodosum.maxMessageSize} bytes`), 'connection', 'close')
            const length = Number(request.headers['content-length'] ?? '0')
            if (length > nodosum.maxMessageSize) return tooLarge()
            // counted while it streams: a chunked body without Content-Length is cut off at the limit too
            const body = yield* readBody(NodeHttpServerRequest.toIncomingMessage(request), nodosum.maxMessageSize).pipe(Effect.either)
            if (body._tag === 'Left') return body.left.reason === 'TooLarge' ? tooLarge() : problem(400, 'BadBody', body.left.message)
            yield* mycel.put(bucket, key, body.right)
            return HttpServerResponse.empty({ status: 204 })
          })
        )
      ),
      HttpRouter.post(
        '/v1/cache/:bucket/:key/increment',
        cacheRoute('write', (bucket, key) =>
          Effect.gen(function* () {
            const request = yield* HttpServerRequest.HttpServerRequest
            const raw = new URL(request.url, 'http://localhost').searchParams.get('delta')
            const delta = raw === null ? 1 : Number(raw)
            if (raw !== null && (raw.trim() === '' || !Number.isSafeInteger(delta))) return problem(400, 'InvalidDelta', `delta must be a safe integer, got '${raw}'`)
            return json({ value: yield* mycel.increment(bucket, key, delta) })
          })
        )
      ),
      HttpRouter.del(
        '/v1/cache/:bucket/:key',
        cacheRoute('write', (bucket, key) => Effect.as(mycel.delete(bucket, key), HttpServerResponse.empty({ status: 204 })))
      )
    )

    const server = yield* NodeHttpServer.make(() => createServer(), { host: options.host, port: options.port })
    // a key is up to MAX_KEY_BYTES, percent-encoded up to three times as long
    const app = yield* HttpRouter.toHttpApp(router).pipe(HttpRouter.withRouterConfig({ maxParamLength: MAX_KEY_BYTES * 3 }))
    const hostGuard = <E, R>(handler: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) =>
      Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
        const host = request.headers['host']
        if (!tokenless || hostAllowed(host, options.host)) return handler
        return Effect.succeed(
          problem(
            403,
            'ForbiddenHost',
            `Host '${host}' is refused: without a token this API answers only requests addressed to localhost, 127.0.0.1, [::1] or ${options.host} (a guard against DNS rebinding); configure --admin-token to serve other names`
          )
        )
      })
    yield* server.serve(
      hostGuard(app).pipe(
        Effect.catchTag('RouteNotFound', () => Effect.succeed(problem(404, 'NotFound', 'no such route; see GET /debug/members, /debug/streams, /debug/topics, /debug/locks, /debug/elections, /metrics, /v1/cache/:bucket/:key'))),
        Effect.catchAllCause((cause) =>
          Effect.logError('admin request failed', cause).pipe(Effect.as(problem(500, 'InternalError', 'the request failed; see the node log')))
        )
      )
    )
    const address = server.address
    const port = address._tag === 'TcpAddress' ? address.port : options.port
    const host = options.host.includes(':') ? `[${options.host}]` : options.host
    return { host: options.host, port, url: `http://${host}:${port}` }
  })
