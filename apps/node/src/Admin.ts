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
 *   PUT    /v1/cache/:bucket/:key        raw bytes body; 204
 *   GET    /v1/cache/:bucket/:key        the bytes, or 404
 *   DELETE /v1/cache/:bucket/:key        204
 *
 * Access: with no token configured the API is open (it then listens on loopback only). With
 * an admin token, reads need the read or the admin token and writes need the admin token, as
 * `Authorization: Bearer <token>`; metrics and health stay open for scrapers and probes.
 *
 * @since 0.1.0
 */
import { HttpRouter, type HttpServerError, HttpServerRequest, HttpServerResponse } from '@effect/platform'
import { NodeHttpServer } from '@effect/platform-node'
import type { MycelError } from 'mycorrizal'
import { Mycel, Nodosum, Streams, type StreamStats } from 'mycorrizal'
import { Effect, Redacted, type Scope } from 'effect'
import { createHash, timingSafeEqual } from 'node:crypto'
import type { StreamView } from './Client.js'
import { createServer } from 'node:http'

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
  ValueTooLarge: 413,
  Timeout: 504,
  Unavailable: 503,
  Closed: 503,
  Overloaded: 503,
  Refused: 503,
  Conflict: 409
}

const MAX_KEY_BYTES = 1024


/** Starts the admin API; the scope's close stops it. */
export const make = (
  options: AdminOptions
): Effect.Effect<AdminServer, HttpServerError.ServeError, Scope.Scope | Nodosum.Nodosum | Streams.Streams | Mycel.Mycel> =>
  Effect.gen(function* () {
    const nodosum = yield* Nodosum.Nodosum
    const streams = yield* Streams.Streams
    const mycel = yield* Mycel.Mycel
    const tokens = {
      write: options.adminToken === undefined ? undefined : digest(Redacted.value(options.adminToken)),
      read: options.readToken === undefined ? undefined : digest(Redacted.value(options.readToken))
    }

    const granted = (header: string | undefined): Scope_ | undefined => {
      if (tokens.write === undefined) return 'write'
      const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header)
      if (match === null) return undefined
      const given = digest(match[1]!)
      if (timingSafeEqual(given, tokens.write)) return 'write'
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
        if (scope === 'write' && has === 'read') return Effect.succeed(problem(403, 'Forbidden', 'the read-only token may not change the cache'))
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
            const length = Number(request.headers['content-length'] ?? '0')
            if (length > nodosum.maxMessageSize) return problem(413, 'ValueTooLarge', `a value is at most ${nodosum.maxMessageSize} bytes`)
            const body = yield* request.arrayBuffer.pipe(Effect.orElseSucceed(() => undefined))
            if (body === undefined) return problem(400, 'BadBody', 'the request body could not be read')
            yield* mycel.put(bucket, key, new Uint8Array(body))
            return HttpServerResponse.empty({ status: 204 })
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
    yield* server.serve(
      app.pipe(
        Effect.catchTag('RouteNotFound', () => Effect.succeed(problem(404, 'NotFound', 'no such route; see GET /debug/members, /debug/streams, /metrics, /v1/cache/:bucket/:key'))),
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
