/**
 * The schemas of `TransportConfig`, built on first use: this module is the only one of the
 * transport settings that imports `effect/Schema`, and `TransportConfig.load` imports it
 * dynamically, so importing the package does not load Schema.
 */
import * as Duration from 'effect/Duration'
import * as Either from 'effect/Either'
import * as ParseResult from 'effect/ParseResult'
import * as Schema from 'effect/Schema'
import { ConfigError } from '../NodosumError.js'

const KiB = 1024
const MiB = 1024 * KiB

const int = (field: string, min: number, max: number, hint: string) => {
  // a value of the wrong type gets the field's rule too, not the schema's "Expected number"
  const message = () => `${field} must be an integer from ${min} to ${max}${hint ? ` (${hint})` : ''}`
  return Schema.Number.annotations({ message }).pipe(Schema.filter((n) => Number.isInteger(n) && n >= min && n <= max, { message }))
}

const duration = (field: string, minMillis: number, maxMillis: number) =>
  Schema.DurationFromSelf.pipe(
    Schema.filter(
      (d) => {
        const ms = Duration.toMillis(d)
        return Number.isFinite(ms) && ms >= minMillis && ms <= maxMillis
      },
      { message: () => `${field} must be a duration from ${minMillis} ms to ${maxMillis} ms` }
    )
  )

/** The schema of transport settings (all fields present after defaults). */
export const TransportSettings = Schema.Struct({
  host: Schema.String.annotations({ message: () => 'host must be a non-empty address to bind, e.g. 0.0.0.0 or 127.0.0.1' }).pipe(
    Schema.filter((s) => s.length > 0, { message: () => 'host must be a non-empty address to bind, e.g. 0.0.0.0 or 127.0.0.1' })
  ),
  port: int('port', 0, 65535, '0 picks a free port'),
  datagramSize: int('datagramSize', 1200, 65527, 'QUIC needs at least 1200; 1452 for a 1500-byte LAN MTU, 8952 for jumbo frames, 65527 on loopback'),
  maxStreams: int('maxStreams', 1, 10_000, 'streams a peer may keep open at once'),
  streamWindow: int('streamWindow', 16 * KiB, 1024 * MiB, 'initial per-stream receive window in bytes'),
  maxStreamWindow: int('maxStreamWindow', 16 * KiB, 1024 * MiB, 'largest per-stream receive window in bytes'),
  connectionWindow: int('connectionWindow', 16 * KiB, 1024 * MiB, 'initial per-connection receive window in bytes'),
  maxConnectionWindow: int('maxConnectionWindow', 16 * KiB, 1024 * MiB, 'largest per-connection receive window in bytes'),
  writeHighWaterMark: int('writeHighWaterMark', 1, 1024 * MiB, 'bytes queued per stream before write() asks the caller to wait'),
  socketBufferSize: int('socketBufferSize', 64 * KiB, 256 * MiB, 'UDP socket send and receive buffer in bytes'),
  handshakeTimeout: duration('handshakeTimeout', 100, 120_000),
  idleTimeout: duration('idleTimeout', 100, 3_600_000),
  maxPendingHandshakes: int('maxPendingHandshakes', 1, 100_000, 'accepted connections still in their QUIC handshake; new Initial packets beyond are dropped'),
  retryThreshold: int('retryThreshold', 0, 100_000, 'handshakes in progress above which a new source must answer a QUIC Retry first (address validation); 0 always asks'),
  maxHandshakesPerSource: int('maxHandshakesPerSource', 1, 100_000, 'unvalidated handshakes in progress from one source address before it must answer a Retry'),
  maxNewConnectionsPerSource: int('maxNewConnectionsPerSource', 1, 1_000_000, 'validated new connections accepted from one source address per second'),
  maxUnauthenticatedConnections: int('maxUnauthenticatedConnections', 1, 100_000, 'accepted connections past TLS that have not finished the cluster handshake; more are closed'),
  maxUnauthenticatedBytes: int('maxUnauthenticatedBytes', 16 * KiB, 1024 * MiB, 'bytes a connection may send before it finishes the cluster handshake; beyond, it is closed')
}).pipe(
  Schema.filter((s) =>
    s.maxStreamWindow < s.streamWindow
      ? { path: ['maxStreamWindow'], message: 'maxStreamWindow must be at least streamWindow' }
      : s.maxConnectionWindow < s.connectionWindow
        ? { path: ['maxConnectionWindow'], message: 'maxConnectionWindow must be at least connectionWindow' }
        : s.connectionWindow < s.streamWindow
          ? { path: ['connectionWindow'], message: 'connectionWindow must be at least streamWindow' }
          : undefined
  )
)

const firstIssue = (error: ParseResult.ParseError): ConfigError => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  const issue = issues[0]
  const field = issue === undefined || issue.path.length === 0 ? 'transport' : issue.path.join('.')
  return new ConfigError({ field, message: issue?.message ?? String(error) })
}

const decode = Schema.decodeUnknownEither(TransportSettings)

/** Checks merged settings (durations already decoded); the error names the first bad field. */
export const check = (merged: unknown): Either.Either<Schema.Schema.Type<typeof TransportSettings>, ConfigError> =>
  Either.mapLeft(decode(merged, { errors: 'first' }), firstIssue)
