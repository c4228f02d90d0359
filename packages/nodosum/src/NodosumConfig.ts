/**
 * Settings of a cluster node: identity, security, membership timing and discovery.
 * Declared once, validated by plain checks (no `effect/Schema`: it and the fast-check it loads
 * would double the import time); a bad value fails with a `ConfigError`
 * naming the field and what is allowed.
 *
 * @since 0.1.0
 */
import { Duration, Effect, Either, Redacted } from 'effect'
import { randomBytes } from 'node:crypto'
import { ConfigError } from './NodosumError.js'
import type { Address } from './Transport.js'
import * as TransportConfig from './TransportConfig.js'

/** How nodes prove they belong to the cluster. */
export type Auth =
  | { readonly _tag: 'Secret'; readonly secret: Redacted.Redacted<string> }
  | { readonly _tag: 'Tls'; readonly ca: string; readonly cert: string; readonly key: Redacted.Redacted<string> }

/** Where seeds come from. */
export type Discovery =
  | { readonly _tag: 'Static'; readonly seeds: ReadonlyArray<Address> }
  | { readonly _tag: 'Dns'; readonly name: string; readonly port: number | undefined; readonly server: Address | undefined }
  | { readonly _tag: 'Consul'; readonly url: string; readonly service: string }

/** Validated settings. */
export interface NodosumSettings {
  readonly nodeId: string
  readonly clusterId: string
  /** Address peers should dial; defaults to the bound host and port. */
  readonly advertise: Partial<Address>
  readonly auth: Auth | undefined
  readonly discovery: Discovery
  /** No cluster at all: local features only. */
  readonly single: boolean
  readonly heartbeatInterval: Duration.Duration
  readonly failureTimeout: Duration.Duration
  readonly reconnectInitial: Duration.Duration
  readonly reconnectMax: Duration.Duration
  readonly reconnectGiveUp: Duration.Duration
  readonly discoveryInterval: Duration.Duration
  /** Largest application message in bytes. */
  readonly maxMessageSize: number
  readonly transport: TransportConfig.TransportSettings
}

/** What callers pass. */
export interface NodosumSettingsInput {
  /** Stable id of this node; else `MYCORRIZAL_ID`; else generated. */
  readonly nodeId?: string
  readonly clusterId?: string
  readonly host?: string
  readonly port?: number
  readonly advertiseHost?: string
  readonly advertisePort?: number
  /** Cluster secret (HMAC challenge-response). */
  readonly clusterSecret?: string | Redacted.Redacted<string>
  /** mTLS: PEM strings of the cluster CA, this node's certificate and key. */
  readonly tls?: { readonly ca: string; readonly cert: string; readonly key: string | Redacted.Redacted<string> }
  /** Static seeds as `host:port` or addresses. */
  readonly seeds?: ReadonlyArray<string | Address>
  /** DNS name to resolve for seeds (A/AAAA with `dnsPort`, or SRV when the name starts with `_`). */
  readonly dns?: string
  readonly dnsPort?: number
  /** A DNS server to ask instead of the system's (`host:port`). */
  readonly dnsServer?: string
  /** Consul agent URL and service name. */
  readonly consul?: string
  readonly consulService?: string
  readonly single?: boolean
  readonly heartbeatInterval?: Duration.DurationInput
  readonly failureTimeout?: Duration.DurationInput
  readonly reconnectInitial?: Duration.DurationInput
  readonly reconnectMax?: Duration.DurationInput
  readonly reconnectGiveUp?: Duration.DurationInput
  readonly discoveryInterval?: Duration.DurationInput
  /** Largest application message in bytes (default 16 MiB). */
  readonly maxMessageSize?: number
  readonly transport?: TransportConfig.TransportSettingsInput
}

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/

const fail = (field: string, message: string) => Either.left(new ConfigError({ field, message }))

/** Parses `host:port` or `[v6]:port`. */
export const parseAddress = (text: string): Address | undefined => {
  const match = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:[\]]+):(\d{1,5})$/.exec(text)
  if (match === null) return undefined
  const port = Number(match[2])
  return port >= 1 && port <= 65535 ? { host: match[1]!, port } : undefined
}

const durationField = (
  field: string,
  value: Duration.DurationInput | undefined,
  fallback: Duration.Duration,
  minMs: number,
  maxMs: number
): Either.Either<Duration.Duration, ConfigError> => {
  if (value === undefined) return Either.right(fallback)
  const decoded = Duration.decodeUnknown(value)
  if (decoded._tag === 'None') return fail(field, `${field} must be a duration such as 500 (ms) or "2 seconds"`)
  const ms = Duration.toMillis(decoded.value)
  if (!(ms >= minMs && ms <= maxMs)) return fail(field, `${field} must be from ${minMs} ms to ${maxMs} ms, got ${ms} ms`)
  return Either.right(decoded.value)
}

const isPort = (port: unknown): port is number => typeof port === 'number' && Number.isInteger(port) && port >= 1 && port <= 65535

/** Validates settings; the environment supplies `MYCORRIZAL_ID` when `nodeId` is absent. */
export const validate = (
  input: NodosumSettingsInput,
  env: Record<string, string | undefined> = process.env
): Either.Either<NodosumSettings, ConfigError> =>
  Either.gen(function* () {
    const nodeId = input.nodeId ?? env['MYCORRIZAL_ID'] ?? `node-${randomBytes(6).toString('hex')}`
    if (!ID_PATTERN.test(nodeId)) {
      return yield* fail('nodeId', 'nodeId must be 1-128 characters of letters, digits, ".", "_", ":" or "-", starting with a letter or digit')
    }
    const clusterId = input.clusterId ?? 'mycorrizal'
    if (!ID_PATTERN.test(clusterId)) {
      return yield* fail('clusterId', 'clusterId must be 1-128 characters of letters, digits, ".", "_", ":" or "-", starting with a letter or digit')
    }
    const transport = yield* TransportConfig.validate({
      ...input.transport,
      ...(input.host === undefined ? {} : { host: input.host }),
      ...(input.port === undefined ? {} : { port: input.port })
    }).pipe(Either.mapLeft((e) => new ConfigError({ field: e.field === 'host' || e.field === 'port' ? e.field : `transport.${e.field}`, message: e.message })))
    if (input.advertisePort !== undefined && !isPort(input.advertisePort)) {
      return yield* fail('advertisePort', 'advertisePort must be an integer from 1 to 65535')
    }
    if (input.advertiseHost !== undefined && input.advertiseHost.length === 0) {
      return yield* fail('advertiseHost', 'advertiseHost must be a host name or IP address peers can reach')
    }
    const single = input.single ?? false
    let auth: Auth | undefined
    if (input.clusterSecret !== undefined && input.tls !== undefined) {
      return yield* fail('clusterSecret', 'give either clusterSecret or tls, not both')
    }
    if (input.clusterSecret !== undefined) {
      const secret = Redacted.isRedacted(input.clusterSecret) ? input.clusterSecret : Redacted.make(input.clusterSecret)
      // a key, not a password: long enough that guessing it offline is hopeless
      if (Redacted.value(secret).length < 32) {
        return yield* fail(
          'clusterSecret',
          'clusterSecret must be at least 32 characters: it is a key, not a password; use 32 random bytes, e.g. from `mycorrizal secret` or `openssl rand -base64 32`'
        )
      }
      auth = { _tag: 'Secret', secret }
    } else if (input.tls !== undefined) {
      const { ca, cert, key } = input.tls
      for (const [name, pem] of [['tls.ca', ca], ['tls.cert', cert]] as const) {
        if (typeof pem !== 'string' || !pem.includes('-----BEGIN CERTIFICATE-----')) {
          return yield* fail(name, `${name} must be a PEM certificate (-----BEGIN CERTIFICATE-----)`)
        }
      }
      const keyValue = Redacted.isRedacted(key) ? key : Redacted.make(key)
      if (!/-----BEGIN (EC |RSA )?PRIVATE KEY-----/.test(Redacted.value(keyValue))) {
        return yield* fail('tls.key', 'tls.key must be a PEM private key (-----BEGIN PRIVATE KEY-----)')
      }
      auth = { _tag: 'Tls', ca, cert, key: keyValue }
    } else if (!single) {
      return yield* fail('clusterSecret', 'a cluster needs authentication: set clusterSecret (at least 32 characters) or tls { ca, cert, key }, or single: true')
    }
    const modes = [input.seeds !== undefined, input.dns !== undefined, input.consul !== undefined].filter(Boolean).length
    if (modes > 1) return yield* fail('seeds', 'choose one discovery mode: seeds, dns or consul')
    let discovery: Discovery = { _tag: 'Static', seeds: [] }
    if (input.seeds !== undefined) {
      const seeds: Array<Address> = []
      for (const [i, seed] of input.seeds.entries()) {
        const address = typeof seed === 'string' ? parseAddress(seed) : isPort(seed.port) && seed.host.length > 0 ? seed : undefined
        if (address === undefined) return yield* fail(`seeds[${i}]`, `seeds[${i}] must be host:port with a port from 1 to 65535, got ${JSON.stringify(seed)}`)
        seeds.push(address)
      }
      discovery = { _tag: 'Static', seeds }
    } else if (input.dns !== undefined) {
      if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(input.dns)) return yield* fail('dns', 'dns must be a DNS name, e.g. mycorrizal.default.svc.cluster.local or _mycorrizal._udp.example.org')
      if (input.dnsPort !== undefined && !isPort(input.dnsPort)) return yield* fail('dnsPort', 'dnsPort must be an integer from 1 to 65535')
      const server = input.dnsServer === undefined ? undefined : parseAddress(input.dnsServer)
      if (input.dnsServer !== undefined && server === undefined) return yield* fail('dnsServer', 'dnsServer must be host:port')
      if (!input.dns.startsWith('_') && input.dnsPort === undefined) {
        return yield* fail('dnsPort', 'dnsPort is needed with an A/AAAA name (SRV names, starting with "_", carry their ports)')
      }
      discovery = { _tag: 'Dns', name: input.dns, port: input.dnsPort, server }
    } else if (input.consul !== undefined) {
      let url: URL
      try {
        url = new URL(input.consul)
      } catch {
        return yield* fail('consul', 'consul must be the agent URL, e.g. http://127.0.0.1:8500')
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') return yield* fail('consul', 'consul must be an http:// or https:// URL')
      discovery = { _tag: 'Consul', url: url.toString().replace(/\/$/, ''), service: input.consulService ?? 'mycorrizal' }
    }
    const heartbeatInterval = yield* durationField('heartbeatInterval', input.heartbeatInterval, Duration.millis(500), 10, 60_000)
    const failureTimeout = yield* durationField('failureTimeout', input.failureTimeout, Duration.millis(2_000), 50, 600_000)
    if (Duration.lessThanOrEqualTo(failureTimeout, heartbeatInterval)) {
      return yield* fail('failureTimeout', 'failureTimeout must be longer than heartbeatInterval (several heartbeats may be missed before a peer counts as failed)')
    }
    const maxMessageSize = input.maxMessageSize ?? 16 * 1024 * 1024
    if (!Number.isInteger(maxMessageSize) || maxMessageSize < 1024 || maxMessageSize > 1024 * 1024 * 1024) {
      return yield* fail('maxMessageSize', 'maxMessageSize must be an integer number of bytes from 1024 to 1 GiB (default 16 MiB)')
    }
    return {
      nodeId,
      clusterId,
      maxMessageSize,
      advertise: {
        ...(input.advertiseHost === undefined ? {} : { host: input.advertiseHost }),
        ...(input.advertisePort === undefined ? {} : { port: input.advertisePort })
      },
      auth,
      discovery,
      single,
      heartbeatInterval,
      failureTimeout,
      reconnectInitial: yield* durationField('reconnectInitial', input.reconnectInitial, Duration.millis(200), 1, 60_000),
      reconnectMax: yield* durationField('reconnectMax', input.reconnectMax, Duration.seconds(5), 1, 600_000),
      reconnectGiveUp: yield* durationField('reconnectGiveUp', input.reconnectGiveUp, Duration.minutes(5), 0, 86_400_000),
      discoveryInterval: yield* durationField('discoveryInterval', input.discoveryInterval, Duration.seconds(10), 100, 86_400_000),
      transport
    }
  })

/** `validate` as an Effect. */
export const make = (input: NodosumSettingsInput): Effect.Effect<NodosumSettings, ConfigError> =>
  Either.match(validate(input), { onLeft: Effect.fail, onRight: Effect.succeed })
