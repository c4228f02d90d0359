/** A benchmark node: cluster + streams over QUIC on loopback, in the current scope. */
import { Nodosum } from '@mycorrizal/nodosum'
import { Streams } from '@mycorrizal/streams'
import * as Context from 'effect/Context'
import * as Effect from 'effect/Effect'
import * as Layer from 'effect/Layer'
import * as Logger from 'effect/Logger'
import * as LogLevel from 'effect/LogLevel'

/** BENCH_MAX_STREAM_WINDOW (bytes) replaces the transport's largest per-stream receive window. */
export const maxStreamWindow = process.env['BENCH_MAX_STREAM_WINDOW'] === undefined ? undefined : Number(process.env['BENCH_MAX_STREAM_WINDOW'])

export const windows = maxStreamWindow === undefined ? {} : { maxStreamWindow, streamWindow: Math.min(512 * 1024, maxStreamWindow) }

/** BENCH_SOCKET_BUFFER (bytes) replaces the UDP socket's send and receive buffer size. */
export const sockets = process.env['BENCH_SOCKET_BUFFER'] === undefined ? {} : { socketBufferSize: Number(process.env['BENCH_SOCKET_BUFFER']) }

export const benchNode = (nodeId: string, seeds: ReadonlyArray<string> = []) =>
  Layer.build(
    Streams.layer().pipe(
      Layer.provideMerge(
        Nodosum.layer({ nodeId, host: '127.0.0.1', port: 0, clusterSecret: 'bench-cluster-secret-of-at-least-32-characters', seeds: [...seeds], transport: { datagramSize: 16_384, ...windows, ...sockets } })
      ),
      Layer.provide(Logger.minimumLogLevel(LogLevel.Error))
    )
  ).pipe(Effect.map((ctx) => ({ streams: Context.get(ctx, Streams.Streams), nodosum: Context.get(ctx, Nodosum.Nodosum) })))

/** Polls until `n` members are alive (bounded). */
export const untilMembers = (nodosum: Nodosum.Nodosum['Type'], n: number) =>
  Effect.gen(function* () {
    for (let i = 0; i < 1_000 && nodosum.nodes().length < n; i++) yield* Effect.sleep('20 millis')
    if (nodosum.nodes().length < n) return yield* Effect.die(new Error(`only ${nodosum.nodes().length} of ${n} members`))
  })
