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

import type * as Schemas from './internal/transportSchemas.js'

let schemas: typeof Schemas | undefined

/**
 * The schema of transport settings (all fields present after defaults). Built by `load` (on
 * first use: `make` and the layers load it), so that importing the package does not load
 * `effect/Schema`; undefined before.
 */
export let TransportSettings: typeof Schemas.TransportSettings

/** Loads `effect/Schema` and builds the schemas, once; `make` and the layers do it before validating. */
export const load: Effect.Effect<void> = Effect.suspend(() =>
  schemas !== undefined
    ? Effect.void
    : Effect.map(
        Effect.promise(() => import('./internal/transportSchemas.js')),
        (m) => {
          schemas = m
          TransportSettings = m.TransportSettings
        }
      )
)

/** True once `load` has built the schemas (then `validate` can run synchronously). */
export const isLoaded = (): boolean => schemas !== undefined

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
  // The spec's LAN profile lets a stream's window grow to 6 MiB. Where the receiving process is
  // the bottleneck (loopback, a busy node) a bulk stream keeps its whole window queued in the
  // receiver's UDP socket, in front of every other stream's packets and the heartbeats: a small
  // request waited 5-8x its idle time with 6 MiB, 1.6-3.4x with 1 MiB, and 512 KiB gave a lower
  // tail than 1 MiB in every pair of runs made together (docs/performance.md). 512 KiB per
  // round trip still carries 5 GB/s at 0.1 ms, 512 MB/s at 1 ms and 256 MB/s at 2 ms.
  maxStreamWindow: 512 * KiB,
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

/**
 * Validates settings over the defaults; the error names the first bad field. Synchronous, so
 * the schemas must be loaded (`load`; `make` does it): before, it throws.
 */
export const validate = (input: TransportSettingsInput = {}): Either.Either<TransportSettings, ConfigError> => {
  if (schemas === undefined) throw new Error('TransportConfig.validate needs the schemas: run TransportConfig.load first (TransportConfig.make does)')
  const merged: Record<string, unknown> = { ...defaults, ...input }
  for (const field of ['handshakeTimeout', 'idleTimeout'] as const) {
    const decoded = Duration.decodeUnknown(merged[field])
    if (decoded._tag === 'None') {
      return Either.left(new ConfigError({ field, message: `${field} must be a duration: a Duration, a number of milliseconds or a string like "5 seconds"` }))
    }
    merged[field] = decoded.value
  }
  return schemas.check(merged)
}

/** `validate` as an Effect. */
export const make = (input: TransportSettingsInput = {}): Effect.Effect<TransportSettings, ConfigError> =>
  Effect.zipRight(
    load,
    Effect.suspend(() => validate(input))
  )

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
