/**
 * The schemas of `NodosumConfig` (`NodeId`, `fields`, `Input`), built on first use: this module
 * is the only one of the cluster settings that imports `effect/Schema`, and
 * `NodosumConfig.load` imports it dynamically, so importing the package does not load Schema.
 */
import * as Duration from 'effect/Duration'
import * as Option from 'effect/Option'
import * as ParseResult from 'effect/ParseResult'
import * as Redacted from 'effect/Redacted'
import * as Schema from 'effect/Schema'
import { descriptions, fieldName, MIN_SECRET_LENGTH, parseAddress } from '../NodosumConfig.js'
import { ConfigError } from '../NodosumError.js'
import type { Address } from '../Transport.js'
import type * as TransportConfig from '../TransportConfig.js'
import { NODE_ID_PATTERN } from './protocol.js'

const GiB = 1024 * 1024 * 1024

const ID_RULE = '1-128 characters of letters, digits, ".", "_", ":" or "-", starting with a letter or digit'

/**
 * A node id (and the shape of a cluster id): 1 to 128 of `A-Z a-z 0-9 . _ : -`, starting with
 * a letter or digit. The one definition used by the handshake, the umbrella and the CLI.
 */
export const NodeId = Schema.String.pipe(Schema.pattern(NODE_ID_PATTERN)).annotations({
  identifier: 'NodeId',
  description: `a node id: ${ID_RULE}`,
  message: () => `must be ${ID_RULE}`
})

/** A schema of `unknown` that a parse function turns into `A`, or fails with `message`. */
const parsed = <A>(identifier: string, parse: (u: unknown) => A | undefined, message: string): Schema.Schema<A, unknown> =>
  Schema.transformOrFail(Schema.Unknown, Schema.Any as Schema.Schema<A>, {
    strict: true,
    decode: (u, _, ast) => {
      const a = parse(u)
      return a === undefined ? ParseResult.fail(new ParseResult.Type(ast, u, message)) : ParseResult.succeed(a)
    },
    encode: ParseResult.succeed
  }).annotations({ identifier, message: () => message })

const integer = (min: number, max: number, what: string) =>
  parsed('Integer', (u) => (typeof u === 'number' && Number.isInteger(u) && u >= min && u <= max ? u : undefined), `must be an integer ${what}`)

const nonEmpty = (what: string) => parsed('NonEmptyString', (u) => (typeof u === 'string' && u.length > 0 ? u : undefined), `must be ${what}`)

const duration = (minMs: number, maxMs: number) =>
  parsed(
    'Duration',
    // Duration clamps a negative number to zero: a negative value is a mistake, not zero
    (u) => (typeof u === 'number' && !(u >= 0) ? undefined : Option.getOrUndefined(Duration.decodeUnknown(u))),
    'must be a duration: a Duration, a number of milliseconds or a string like "2 seconds"'
  ).pipe(
    Schema.filter(
      (d) => {
        const ms = Duration.toMillis(d)
        return ms >= minMs && ms <= maxMs
      },
      { message: () => `must be a duration from ${minMs} ms to ${maxMs} ms` }
    )
  )

const redacted = (what: string, ok: (value: string) => boolean) =>
  parsed(
    'Redacted',
    (u) => {
      const r = Redacted.isRedacted(u) ? (u as Redacted.Redacted<unknown>) : typeof u === 'string' ? Redacted.make(u) : undefined
      return r !== undefined && typeof Redacted.value(r) === 'string' && ok(Redacted.value(r) as string) ? (r as Redacted.Redacted<string>) : undefined
    },
    `must be ${what}`
  )

const certificate = parsed('Certificate', (u) => (typeof u === 'string' && u.includes('-----BEGIN CERTIFICATE-----') ? u : undefined), 'must be a PEM certificate (-----BEGIN CERTIFICATE-----)')

const seed = parsed<Address>(
  'Seed',
  (u) =>
    typeof u === 'string'
      ? parseAddress(u)
      : typeof u === 'object' && u !== null && typeof (u as Address).host === 'string' && (u as Address).host.length > 0 && Number.isInteger((u as Address).port) && (u as Address).port >= 1 && (u as Address).port <= 65535
        ? { host: (u as Address).host, port: (u as Address).port }
        : undefined,
  'must be host:port with a port from 1 to 65535'
)

const consulUrl = parsed(
  'ConsulUrl',
  (u) => {
    if (typeof u !== 'string') return undefined
    try {
      const url = new URL(u)
      return url.protocol === 'http:' || url.protocol === 'https:' ? url.toString().replace(/\/$/, '') : undefined
    } catch {
      return undefined
    }
  },
  'must be the http:// or https:// URL of the Consul agent, e.g. http://127.0.0.1:8500'
)

/**
 * The rule of every field of `NodosumSettingsInput`, as a schema of what callers pass
 * (`unknown` in, the decoded value out) annotated with a description. Messages carry no field
 * name ("must be ..."): the caller names the field its own way (`nodeId`, `--node-id`).
 */
export const fields = {
  nodeId: NodeId.annotations({ description: descriptions.nodeId }),
  clusterId: NodeId.annotations({ identifier: 'ClusterId', description: descriptions.clusterId }),
  host: nonEmpty('a non-empty address to bind, e.g. 0.0.0.0 or 127.0.0.1').annotations({ description: descriptions.host }),
  port: integer(0, 65535, 'from 0 to 65535').annotations({ description: descriptions.port }),
  advertiseHost: nonEmpty('a host name or IP address peers can reach').annotations({ description: descriptions.advertiseHost }),
  advertisePort: integer(1, 65535, 'from 1 to 65535').annotations({ description: descriptions.advertisePort }),
  clusterSecret: redacted(
    `at least ${MIN_SECRET_LENGTH} characters: it is a key, not a password; use 32 random bytes, e.g. from \`mycorrizal secret\` or \`openssl rand -base64 32\``,
    (s) => s.length >= MIN_SECRET_LENGTH
  ).annotations({ description: descriptions.clusterSecret }),
  tls: Schema.Struct({
    ca: certificate,
    cert: certificate,
    key: redacted('a PEM private key (-----BEGIN PRIVATE KEY-----)', (s) => /-----BEGIN (EC |RSA )?PRIVATE KEY-----/.test(s))
  }).annotations({ description: descriptions.tls }),
  seeds: Schema.Array(seed).annotations({ description: descriptions.seeds }),
  dns: parsed('DnsName', (u) => (typeof u === 'string' && /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(u) ? u : undefined), 'must be a DNS name, e.g. mycorrizal.default.svc.cluster.local or _mycorrizal._udp.example.org').annotations({
    description: descriptions.dns
  }),
  dnsPort: integer(1, 65535, 'from 1 to 65535').annotations({ description: descriptions.dnsPort }),
  dnsServer: parsed('Address', (u) => (typeof u === 'string' ? parseAddress(u) : undefined), 'must be host:port').annotations({ description: descriptions.dnsServer }),
  consul: consulUrl.annotations({ description: descriptions.consul }),
  consulService: nonEmpty('a Consul service name').annotations({ description: descriptions.consulService }),
  consulToken: redacted('a non-empty Consul ACL token', (s) => s.length > 0).annotations({ description: descriptions.consulToken }),
  single: parsed('Boolean', (u) => (typeof u === 'boolean' ? u : undefined), 'must be true or false').annotations({ description: descriptions.single }),
  heartbeatInterval: duration(10, 60_000).annotations({ description: descriptions.heartbeatInterval }),
  failureTimeout: duration(50, 600_000).annotations({ description: descriptions.failureTimeout }),
  reconnectInitial: duration(1, 60_000).annotations({ description: descriptions.reconnectInitial }),
  reconnectMax: duration(1, 600_000).annotations({ description: descriptions.reconnectMax }),
  reconnectGiveUp: duration(0, 86_400_000).annotations({ description: descriptions.reconnectGiveUp }),
  discoveryInterval: duration(100, 86_400_000).annotations({ description: descriptions.discoveryInterval }),
  maxMessageSize: integer(1024, GiB, 'number of bytes from 1024 to 1 GiB (default 16 MiB)').annotations({ description: descriptions.maxMessageSize }),
  transport: parsed('Object', (u) => (typeof u === 'object' && u !== null ? (u as TransportConfig.TransportSettingsInput) : undefined), 'must be an object of transport settings').annotations({
    description: descriptions.transport
  })
} as const

/** The schema of what callers pass: every field optional, each checked by its rule in `fields`. */
export const Input = Schema.Struct(
  Object.fromEntries(Object.entries(fields).map(([k, s]) => [k, Schema.optional(s as Schema.Schema<unknown, unknown>)])) as {
    readonly [K in keyof typeof fields]: Schema.optional<(typeof fields)[K]>
  }
)

/** The first issue of a decoding error as a `ConfigError`, its message prefixed by the field. */
export const toConfigError = (error: ParseResult.ParseError, prefix: ReadonlyArray<PropertyKey> = []): ConfigError => {
  const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
  const field = fieldName([...prefix, ...(issue?.path ?? [])]) || 'settings'
  return new ConfigError({ field, message: `${field} ${issue?.message ?? 'is not valid'}` })
}

export const decodeInput = Schema.decodeUnknownEither(Input, { errors: 'first', onExcessProperty: 'ignore' })

