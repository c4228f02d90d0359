/**
 * Settings of a cluster node: identity, security, membership timing and discovery.
 * Declared once: every field is an `effect/Schema` with its rule, default and description
 * (`fields`), the same schemas check what `layer(input)` is given, what `layerConfig` reads
 * from the environment (`config`) and what the `mycorrizal` executable reads from flags. A bad
 * value fails with a `ConfigError` naming the field and what is allowed.
 *
 * @since 0.1.0
 */
import * as Config from 'effect/Config'
import * as Duration from 'effect/Duration'
import * as Effect from 'effect/Effect'
import * as Either from 'effect/Either'
import * as Option from 'effect/Option'
import type * as ParseResult from 'effect/ParseResult'
import type * as Redacted from 'effect/Redacted'
import { randomBytes } from 'node:crypto'
import type * as Schemas from './internal/nodosumSchemas.js'
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
  | { readonly _tag: 'Consul'; readonly url: string; readonly service: string; readonly token?: Redacted.Redacted<string> | undefined }

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
  /** Consul ACL token (sent as `X-Consul-Token`). Credentials in the URL are sent as `Authorization: Basic`. */
  readonly consulToken?: string | Redacted.Redacted<string>
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

const fail = (field: string, message: string) => Either.left(new ConfigError({ field, message }))

/** Parses `host:port` or `[v6]:port`. */
export const parseAddress = (text: string): Address | undefined => {
  const match = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:[\]]+):(\d{1,5})$/.exec(text)
  if (match === null) return undefined
  const port = Number(match[2])
  return port >= 1 && port <= 65535 ? { host: match[1]!, port } : undefined
}

/** Shortest cluster secret accepted: it is a key, not a password (`mycorrizal secret` prints 43 characters). */
export const MIN_SECRET_LENGTH = 32

/**
 * What every field of `NodosumSettingsInput` is, in a few words: the descriptions of the schemas
 * in `fields`, of the `config` variables and of the executable's flags.
 */
export const descriptions = {
  nodeId: 'stable id of this node (default: MYCORRIZAL_ID, else generated)',
  clusterId: 'nodes of different clusters refuse each other (default "mycorrizal")',
  host: 'address to bind for QUIC (default 0.0.0.0)',
  port: 'UDP port for QUIC (0 picks a free one)',
  advertiseHost: 'address peers dial (default: the bound one)',
  advertisePort: 'port peers dial (default: the bound one)',
  clusterSecret: 'shared secret that authenticates nodes (HMAC challenge-response)',
  tls: "mTLS: PEM strings of the cluster CA, this node's certificate (CN = node id) and key",
  seeds: 'static seeds, host:port',
  dns: 'DNS name whose A/AAAA records (with dnsPort) or SRV records (a name starting with "_") are the seeds',
  dnsPort: 'QUIC port of the addresses dns resolves to',
  dnsServer: "a DNS server to ask instead of the system's",
  consul: 'Consul agent URL; the seeds are the healthy instances of consulService',
  consulService: 'Consul service name (default "mycorrizal")',
  consulToken: 'Consul ACL token, sent as X-Consul-Token (credentials in the consul URL go as Authorization: Basic)',
  single: 'run alone: no cluster, no authentication needed',
  heartbeatInterval: 'how often peers are pinged (default 500 ms)',
  failureTimeout: 'silence after which a peer counts as failed (default 2 s; longer than heartbeatInterval)',
  reconnectInitial: 'first wait before a failed peer is dialed again (default 200 ms)',
  reconnectMax: 'longest wait between redials (default 5 s)',
  reconnectGiveUp: 'how long a failed peer is redialed (default 5 minutes)',
  discoveryInterval: 'how often the seeds are resolved again (default 10 s)',
  maxMessageSize: 'largest application message in bytes',
  transport: 'QUIC transport settings (TransportConfig)',
} as const satisfies Record<string, string>

let schemas: typeof Schemas | undefined

/*
 * The schemas are live bindings, set by `load`: importing the package does not load
 * `effect/Schema` (about as much again as `effect/Effect` itself); they are built where input
 * is validated (`make`, the layers, `layerConfig`, the executable). Undefined before `load`.
 */

/**
 * A node id (and the shape of a cluster id): 1 to 128 of `A-Z a-z 0-9 . _ : -`, starting with
 * a letter or digit. The one definition used by the handshake, the umbrella and the CLI.
 * Built by `load`.
 */
export let NodeId: typeof Schemas.NodeId

/**
 * The rule of every field of `NodosumSettingsInput`, as a schema of what callers pass
 * (`unknown` in, the decoded value out) annotated with its description (`descriptions`).
 * Messages carry no field name ("must be ..."): the caller names the field its own way
 * (`nodeId`, `--node-id`). Built by `load`.
 */
export let fields: typeof Schemas.fields

/** The schema of what callers pass: every field optional, each checked by its rule in `fields`. Built by `load`. */
export let Input: typeof Schemas.Input

/**
 * Loads `effect/Schema` and builds the schemas of the cluster and transport settings, once.
 * `make` and the layers run it before validating; after it, `validate` and the schemas above
 * can be used synchronously.
 */
export const load: Effect.Effect<void> = Effect.zipRight(
  TransportConfig.load,
  Effect.suspend(() =>
    schemas !== undefined
      ? Effect.void
      : Effect.map(
          Effect.promise(() => import('./internal/nodosumSchemas.js')),
          (m) => {
            schemas = m
            NodeId = m.NodeId
            fields = m.fields
            Input = m.Input
          }
        )
  )
)

/** True once `load` has built the schemas. */
export const isLoaded = (): boolean => schemas !== undefined && TransportConfig.isLoaded()

const loaded = (what: string): typeof Schemas => {
  if (schemas === undefined) throw new Error(`NodosumConfig.${what} needs the schemas: run NodosumConfig.load first (NodosumConfig.make and the layers do)`)
  return schemas
}

/** The defaults of the fields that have one. */
export const defaults = {
  clusterId: 'mycorrizal',
  consulService: 'mycorrizal',
  single: false,
  heartbeatInterval: Duration.millis(500),
  failureTimeout: Duration.seconds(2),
  reconnectInitial: Duration.millis(200),
  reconnectMax: Duration.seconds(5),
  reconnectGiveUp: Duration.minutes(5),
  discoveryInterval: Duration.seconds(10),
  maxMessageSize: 16 * 1024 * 1024
} as const

/** The path of a schema issue as a field name: `tls.key`, `seeds[0]`. */
export const fieldName = (path: ReadonlyArray<PropertyKey>): string =>
  path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('')

/** The first issue of a decoding error as a `ConfigError`, its message prefixed by the field (after `load`). */
export const toConfigError = (error: ParseResult.ParseError, prefix: ReadonlyArray<PropertyKey> = []): ConfigError =>
  loaded('toConfigError').toConfigError(error, prefix)

/**
 * Validates settings; the environment supplies `MYCORRIZAL_ID` when `nodeId` is absent.
 * Synchronous, so the schemas must be loaded (`load`; `make` does it): before, it throws.
 */
export const validate = (
  input: NodosumSettingsInput,
  env: Record<string, string | undefined> = process.env
): Either.Either<NodosumSettings, ConfigError> => {
  const { decodeInput, toConfigError } = loaded('validate')
  return Either.gen(function* () {
    // the choices between fields first: a node authenticates one way and discovers one way
    if (input.clusterSecret !== undefined && input.tls !== undefined) return yield* fail('clusterSecret', 'give either clusterSecret or tls, not both')
    if ([input.seeds, input.dns, input.consul].filter((x) => x !== undefined).length > 1) return yield* fail('seeds', 'choose one discovery mode: seeds, dns or consul')
    const v = yield* Either.mapLeft(decodeInput({ ...input, nodeId: input.nodeId ?? env['MYCORRIZAL_ID'] }), (e) => toConfigError(e))
    const transport = yield* TransportConfig.validate({
      ...v.transport,
      ...(v.host === undefined ? {} : { host: v.host }),
      ...(v.port === undefined ? {} : { port: v.port })
    }).pipe(Either.mapLeft((e) => new ConfigError({ field: e.field === 'host' || e.field === 'port' ? e.field : `transport.${e.field}`, message: e.message })))
    const single = v.single ?? defaults.single
    const auth: Auth | undefined =
      v.clusterSecret !== undefined ? { _tag: 'Secret', secret: v.clusterSecret } : v.tls !== undefined ? { _tag: 'Tls', ...v.tls } : undefined
    if (auth === undefined && !single) {
      return yield* fail('clusterSecret', 'a cluster needs authentication: set clusterSecret (at least 32 characters) or tls { ca, cert, key }, or single: true')
    }
    if (v.dns !== undefined && !v.dns.startsWith('_') && v.dnsPort === undefined) {
      return yield* fail('dnsPort', 'dnsPort is needed with an A/AAAA name (SRV names, starting with "_", carry their ports)')
    }
    const discovery: Discovery =
      v.dns !== undefined
        ? { _tag: 'Dns', name: v.dns, port: v.dnsPort, server: v.dnsServer }
        : v.consul !== undefined
          ? { _tag: 'Consul', url: v.consul, service: v.consulService ?? defaults.consulService, ...(v.consulToken === undefined ? {} : { token: v.consulToken }) }
          : { _tag: 'Static', seeds: v.seeds ?? [] }
    const heartbeatInterval = v.heartbeatInterval ?? defaults.heartbeatInterval
    const failureTimeout = v.failureTimeout ?? defaults.failureTimeout
    if (Duration.lessThanOrEqualTo(failureTimeout, heartbeatInterval)) {
      return yield* fail('failureTimeout', 'failureTimeout must be longer than heartbeatInterval (several heartbeats may be missed before a peer counts as failed)')
    }
    return {
      nodeId: v.nodeId ?? `node-${randomBytes(6).toString('hex')}`,
      clusterId: v.clusterId ?? defaults.clusterId,
      maxMessageSize: v.maxMessageSize ?? defaults.maxMessageSize,
      advertise: {
        ...(v.advertiseHost === undefined ? {} : { host: v.advertiseHost }),
        ...(v.advertisePort === undefined ? {} : { port: v.advertisePort })
      },
      auth,
      discovery,
      single,
      heartbeatInterval,
      failureTimeout,
      reconnectInitial: v.reconnectInitial ?? defaults.reconnectInitial,
      reconnectMax: v.reconnectMax ?? defaults.reconnectMax,
      reconnectGiveUp: v.reconnectGiveUp ?? defaults.reconnectGiveUp,
      discoveryInterval: v.discoveryInterval ?? defaults.discoveryInterval,
      transport
    }
  })
}

const described = <A>(config: Config.Config<A>, field: keyof typeof descriptions) => Config.withDescription(config, descriptions[field]).pipe(Config.option)

/**
 * The settings from Effect `Config` (the environment by default): `NODE_ID`, `CLUSTER_ID`,
 * `HOST`, `PORT`, `ADVERTISE_HOST`, `ADVERTISE_PORT`, `CLUSTER_SECRET`, `SEEDS` (comma
 * separated), `DNS`, `DNS_PORT`, `DNS_SERVER`, `CONSUL`, `CONSUL_SERVICE`, `SINGLE`,
 * `HEARTBEAT_INTERVAL`, `FAILURE_TIMEOUT`, `RECONNECT_INITIAL`, `RECONNECT_MAX`,
 * `RECONNECT_GIVE_UP`, `DISCOVERY_INTERVAL`, `MAX_MESSAGE_SIZE` and `TRANSPORT_*`
 * (`TransportConfig.config`); `layerConfig` nests them under `MYCORRIZAL_`. The values read
 * are checked by `validate`, the same schemas as any other input.
 */
export const config: Config.Config<NodosumSettingsInput> = Config.all({
  nodeId: described(Config.string('NODE_ID'), 'nodeId'),
  clusterId: described(Config.string('CLUSTER_ID'), 'clusterId'),
  host: described(Config.string('HOST'), 'host'),
  port: described(Config.integer('PORT'), 'port'),
  advertiseHost: described(Config.string('ADVERTISE_HOST'), 'advertiseHost'),
  advertisePort: described(Config.integer('ADVERTISE_PORT'), 'advertisePort'),
  clusterSecret: described(Config.redacted('CLUSTER_SECRET'), 'clusterSecret'),
  seeds: described(Config.array(Config.string(), 'SEEDS'), 'seeds'),
  dns: described(Config.string('DNS'), 'dns'),
  dnsPort: described(Config.integer('DNS_PORT'), 'dnsPort'),
  dnsServer: described(Config.string('DNS_SERVER'), 'dnsServer'),
  consul: described(Config.string('CONSUL'), 'consul'),
  consulService: described(Config.string('CONSUL_SERVICE'), 'consulService'),
  consulToken: described(Config.redacted('CONSUL_TOKEN'), 'consulToken'),
  single: described(Config.boolean('SINGLE'), 'single'),
  heartbeatInterval: described(Config.duration('HEARTBEAT_INTERVAL'), 'heartbeatInterval'),
  failureTimeout: described(Config.duration('FAILURE_TIMEOUT'), 'failureTimeout'),
  reconnectInitial: described(Config.duration('RECONNECT_INITIAL'), 'reconnectInitial'),
  reconnectMax: described(Config.duration('RECONNECT_MAX'), 'reconnectMax'),
  reconnectGiveUp: described(Config.duration('RECONNECT_GIVE_UP'), 'reconnectGiveUp'),
  discoveryInterval: described(Config.duration('DISCOVERY_INTERVAL'), 'discoveryInterval'),
  maxMessageSize: described(Config.integer('MAX_MESSAGE_SIZE'), 'maxMessageSize'),
  transport: Config.nested(TransportConfig.config, 'TRANSPORT')
}).pipe(
  Config.map(({ transport, ...values }) => {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(values) as Array<[string, Option.Option<unknown>]>) if (Option.isSome(v)) out[k] = v.value
    if (Object.keys(transport).length > 0) out['transport'] = transport
    return out as NodosumSettingsInput
  })
)

/** `validate` as an Effect. */
export const make = (input: NodosumSettingsInput): Effect.Effect<NodosumSettings, ConfigError> =>
  Effect.zipRight(
    load,
    Effect.suspend(() => validate(input))
  )
