/**
 * Transport settings: the spec's LAN profile as defaults, every value validated with a
 * message that names the field and what is allowed.
 *
 * @since 0.1.0
 */
import * as Config from 'effect/Config'
import * as Duration from 'effect/Duration'
import * as Effect from 'effect/Effect'
import * as Either from 'effect/Either'
import * as ParseResult from 'effect/ParseResult'
import * as Schema from 'effect/Schema'
import { ConfigError } from './NodosumError.js'
import type { TransportLimits } from './Transport.js'

const KiB = 1024
const MiB = 1024 * KiB

/** Datagram sizes worth knowing: Ethernet LAN (1500 MTU minus IPv6 + UDP headers), jumbo frames, loopback. */
export const DatagramSize = {
  lan: 1452,
  jumbo: 8952,
  loopback: 65527
} as const

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

/** Validated transport settings. */
export interface TransportSettings {
  readonly host: string
  readonly port: number
  readonly datagramSize: number
  readonly maxStreams: number
  readonly streamWindow: number
  readonly maxStreamWindow: number
  readonly connectionWindow: number
  readonly maxConnectionWindow: number
  readonly writeHighWaterMark: number
  readonly socketBufferSize: number
  readonly handshakeTimeout: Duration.Duration
  readonly idleTimeout: Duration.Duration
  readonly maxPendingHandshakes: number
  readonly retryThreshold: number
  readonly maxHandshakesPerSource: number
  readonly maxNewConnectionsPerSource: number
  readonly maxUnauthenticatedConnections: number
  readonly maxUnauthenticatedBytes: number
}

/** What callers may pass: any subset, durations as `Duration` or milliseconds. */
export type TransportSettingsInput = Partial<
  Omit<TransportSettings, 'handshakeTimeout' | 'idleTimeout'> & {
    readonly handshakeTimeout: Duration.DurationInput
    readonly idleTimeout: Duration.DurationInput
  }
>

/** The spec's LAN profile. */
export const defaults: TransportSettings = {
  host: '0.0.0.0',
  port: 0,
  datagramSize: DatagramSize.lan,
  maxStreams: 100,
  streamWindow: 512 * KiB,
  maxStreamWindow: 6 * MiB,
  // The spec's LAN profile starts connections at 1 MiB. quiche returns connection credit only
  // as the application reads, so bytes waiting on a paused stream stay charged to the
  // connection, and once they reach half the window no other stream on it can move.
  // Starting at the maximum (15 MiB) keeps a paused stream from stalling its neighbours.
  connectionWindow: 15 * MiB,
  maxConnectionWindow: 15 * MiB,
  writeHighWaterMark: 256 * KiB,
  socketBufferSize: 8 * MiB,
  handshakeTimeout: Duration.seconds(5),
  idleTimeout: Duration.seconds(60),
  // admission (issue #16): a flood of Initials fills at most retryThreshold half-open
  // handshakes; past it every new source proves its address with a Retry first
  maxPendingHandshakes: 256,
  retryThreshold: 16,
  maxHandshakesPerSource: 8,
  maxNewConnectionsPerSource: 64,
  // a stranger past TLS holds at most this much before it proves the secret (or CA certificate):
  // 256 x 64 KiB = 16 MiB in all (a dialer's TLS flight and handshake messages take a few KiB;
  // a 100-node cluster restarting at once dials its seed 99 times)
  maxUnauthenticatedConnections: 256,
  maxUnauthenticatedBytes: 64 * KiB
}

/** The flow-control part of the defaults (the settings carry every limit). */
export const defaultLimits: TransportLimits = defaults

const firstIssue = (error: ParseResult.ParseError): ConfigError => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  const issue = issues[0]
  const field = issue === undefined || issue.path.length === 0 ? 'transport' : issue.path.join('.')
  return new ConfigError({ field, message: issue?.message ?? String(error) })
}

/** Validates settings over the defaults; the error names the first bad field. */
export const validate = (input: TransportSettingsInput = {}): Either.Either<TransportSettings, ConfigError> => {
  const merged: Record<string, unknown> = { ...defaults, ...input }
  for (const field of ['handshakeTimeout', 'idleTimeout'] as const) {
    const decoded = Duration.decodeUnknown(merged[field])
    if (decoded._tag === 'None') {
      return Either.left(new ConfigError({ field, message: `${field} must be a duration: a Duration, a number of milliseconds or a string like "5 seconds"` }))
    }
    merged[field] = decoded.value
  }
  return Either.mapLeft(Schema.decodeUnknownEither(TransportSettings)(merged, { errors: 'first' }), firstIssue)
}

/** `validate` as an Effect. */
export const make = (input: TransportSettingsInput = {}): Effect.Effect<TransportSettings, ConfigError> =>
  Either.match(validate(input), { onLeft: Effect.fail, onRight: Effect.succeed })

/**
 * Settings from the environment (`MYCORRIZAL_TRANSPORT_*` through Effect's `ConfigProvider`),
 * over the defaults.
 */
export const config: Config.Config<TransportSettingsInput> = Config.all({
  host: Config.string('HOST').pipe(Config.withDescription('address to bind'), Config.option),
  port: Config.integer('PORT').pipe(Config.withDescription('UDP port, 0 for any'), Config.option),
  datagramSize: Config.integer('DATAGRAM_SIZE').pipe(Config.withDescription('QUIC datagram size in bytes'), Config.option),
  maxStreams: Config.integer('MAX_STREAMS').pipe(Config.withDescription('streams a peer may keep open'), Config.option),
  idleTimeout: Config.duration('IDLE_TIMEOUT').pipe(Config.withDescription('QUIC idle timeout'), Config.option),
  handshakeTimeout: Config.duration('HANDSHAKE_TIMEOUT').pipe(Config.withDescription('QUIC handshake timeout'), Config.option)
}).pipe(
  Config.map((values) => {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(values)) if (v._tag === 'Some') out[k] = v.value
    return out as TransportSettingsInput
  })
)
