/**
 * Settings of a `mycorrizal node` process, from three sources: flags, `MYCORRIZAL_*`
 * environment variables and a JSON config file (in that order of precedence). Every value is
 * decoded with `effect/Schema`: the cluster settings with the library's own schemas
 * (`NodosumConfig.fields`, fed the text of a flag), the process's own settings (admin API,
 * buckets, log level, secret files) with the schemas here. A bad value stops start-up with a
 * `NodeConfigError` that names the field as a flag, variable and file key, and says what is
 * allowed.
 *
 * @since 0.1.0
 */
import { NodosumConfig } from 'mycorrizal'
import * as Data from 'effect/Data'
import * as Duration from 'effect/Duration'
import * as Effect from 'effect/Effect'
import * as Either from 'effect/Either'
import * as Option from 'effect/Option'
import * as ParseResult from 'effect/ParseResult'
import * as Redacted from 'effect/Redacted'
import * as Schema from 'effect/Schema'
import { readFileSync } from 'node:fs'
import { redactUrlCredentials } from './Redact.js'

// the executable validates its input with the library's schemas, which the library builds on
// first use (importing it does not load effect/Schema): build them before the flags' schemas
await Effect.runPromise(NodosumConfig.load)

/** A setting could not be used. */
export class NodeConfigError extends Data.TaggedError('NodeConfigError')<{
  /** The file key of the setting, e.g. `adminPort`. */
  readonly field: string
  readonly message: string
}> {}

/** Shortest cluster secret accepted: it is a key, not a password (`mycorrizal secret` prints 43 characters). */
export const MIN_SECRET_LENGTH = NodosumConfig.MIN_SECRET_LENGTH

/** A cache bucket the node creates at start-up. */
export interface BucketSpec {
  readonly name: string
  readonly ttlMs: number
  readonly maxSize: number
}

/** Log levels of the node. */
export const LogLevels = ['debug', 'info', 'warn', 'error', 'silent'] as const
export type LogLevel = (typeof LogLevels)[number]

/** Validated settings of one node process. */
export interface NodeSettings {
  readonly nodeId: string | undefined
  readonly clusterId: string | undefined
  readonly host: string
  readonly port: number
  readonly advertiseHost: string | undefined
  readonly advertisePort: number | undefined
  readonly adminHost: string
  /** 0 picks a free port. */
  readonly adminPort: number
  readonly seeds: ReadonlyArray<string>
  readonly dns: string | undefined
  readonly dnsPort: number | undefined
  readonly consul: string | undefined
  /** Consul ACL token, sent as `X-Consul-Token` (optional field: settings built elsewhere may leave it out). */
  readonly consulToken?: Redacted.Redacted<string> | undefined
  readonly clusterSecret: Redacted.Redacted<string> | undefined
  /** PEM contents read from the files named by `--tls-ca`, `--tls-cert` and `--tls-key`. */
  readonly tls: { readonly ca: string; readonly cert: string; readonly key: Redacted.Redacted<string> } | undefined
  readonly buckets: ReadonlyArray<BucketSpec>
  /** Milliseconds; undefined for the library's default. */
  readonly heartbeatIntervalMs: number | undefined
  readonly failureTimeoutMs: number | undefined
  readonly logLevel: LogLevel
  /** Bearer token for writes (and reads) on the admin API; required when the admin host is not loopback. */
  readonly adminToken: Redacted.Redacted<string> | undefined
  /** Bearer token for reads only. */
  readonly adminReadToken: Redacted.Redacted<string> | undefined
  readonly single: boolean
}

/** Raw text of each setting, keyed by file key; what the flags and environment give. */
export type RawSettings = Readonly<Record<string, string | undefined>>

/** The text of a flag as a number for a library schema: NaN (refused by every number rule) unless it is one. */
const numberText = Schema.transform(Schema.String, Schema.Number, {
  strict: true,
  decode: (s) => (/^\s*-?\d+(\.\d+)?\s*$/.test(s) ? Number(s) : NaN),
  encode: String
})

/** A flag whose value is checked by a field of the cluster settings (`NodosumConfig.fields`). */
const cluster = <A>(schema: Schema.Schema<A, never> | Schema.Schema.AnyNoContext, from: Schema.Schema.AnyNoContext = Schema.Trim) =>
  Schema.compose(from, schema as Schema.Schema.AnyNoContext, { strict: false }) as unknown as Schema.Schema<A, string>

/** A duration flag: `500ms`, `2s`, ... checked by the cluster settings' bounds, in milliseconds. */
const clusterDuration = (schema: Schema.Schema.AnyNoContext) =>
  Schema.transform(cluster<Duration.Duration>(schema, duration), Schema.Number, {
    strict: true,
    decode: (d) => Duration.toMillis(d),
    encode: (ms) => Duration.millis(ms)
  })

const text = (what: string) =>
  Schema.Trim.pipe(Schema.minLength(1)).annotations({ message: () => `must be ${what}` })

const oneOf = <const L extends ReadonlyArray<string>>(values: L) =>
  Schema.String.pipe(Schema.filter((s): s is L[number] => values.includes(s))).annotations({
    message: () => (values.length === 2 ? `must be ${values[0]} or ${values[1]}` : `must be one of ${values.join(', ')}`)
  })

const list = Schema.transform(Schema.String, Schema.Array(Schema.String), {
  strict: true,
  decode: (s) =>
    s
      .split(',')
      .map((x) => x.trim())
      .filter((x) => x.length > 0),
  encode: (xs) => xs.join(',')
})

const durationUnits: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** Parses `500ms`, `60s`, `5m`, `2h`, `1d` into milliseconds. */
export const parseDuration = (s: string): number | undefined => {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(s.trim())
  if (m === null) return undefined
  const ms = Math.round(Number(m[1]) * durationUnits[m[2]!]!)
  return ms >= 1 ? ms : undefined
}

const duration = Schema.transformOrFail(Schema.String, Schema.Number, {
  strict: true,
  decode: (text, _, ast) => {
    const ms = parseDuration(text)
    return ms === undefined ? ParseResult.fail(new ParseResult.Type(ast, text, 'must be a duration such as 500ms, 2s or 1m')) : ParseResult.succeed(ms)
  },
  encode: (ms) => ParseResult.succeed(`${ms}ms`)
}).annotations({ message: () => 'must be a duration such as 500ms, 2s or 1m' })

const seedList = list.pipe(
  Schema.filter((seeds) => Either.isRight(Schema.decodeUnknownEither(NodosumConfig.fields.seeds)(seeds)), {
    message: () => 'must be host:port[,host:port...] with ports from 1 to 65535'
  })
)

const BUCKET_NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$/

const bucket = Schema.transformOrFail(Schema.String, Schema.Struct({ name: Schema.String, ttlMs: Schema.Number, maxSize: Schema.Number }), {
  strict: true,
  decode: (spec, _, ast) => {
    const parts = spec.trim().split(':')
    const bad = (why: string) => ParseResult.fail(new ParseResult.Type(ast, spec, `${JSON.stringify(spec)}: ${why}`))
    if (parts.length < 3) return bad('expected name:ttl:maxSize, e.g. sessions:60s:10000')
    const maxSize = Number(parts.pop())
    const ttl = parts.pop()!
    const name = parts.join(':')
    if (!BUCKET_NAME.test(name)) return bad('the name must be 1-100 letters, digits, ".", "_", ":" or "-"')
    const ttlMs = parseDuration(ttl)
    if (ttlMs === undefined) return bad('the ttl must be a duration such as 500ms, 60s, 5m, 2h or 1d')
    if (!Number.isInteger(maxSize) || maxSize < 1 || maxSize > 100_000_000) return bad('maxSize must be an integer from 1 to 100000000')
    return ParseResult.succeed({ name, ttlMs, maxSize })
  },
  encode: (b, _, ast) => ParseResult.fail(new ParseResult.Forbidden(ast, b, 'bucket specs are not encoded'))
})

const buckets = Schema.compose(list, Schema.Array(bucket))

interface Field {
  /** Key in the config file and in `RawSettings`. */
  readonly key: string
  readonly flag: string
  readonly env: string
  readonly schema: Schema.Schema<unknown, string>
  readonly help: string
}

const field = <A, I extends string>(key: string, flag: string, schema: Schema.Schema<A, I>, help: string): Field => ({
  key,
  flag,
  env: `MYCORRIZAL_${flag.replace(/-/g, '_').toUpperCase()}`,
  schema: schema as unknown as Schema.Schema<unknown, string>,
  help
})

/** Every setting: file key, flag, environment variable, schema, and what it means. */
export const fields: ReadonlyArray<Field> = [
  field('config', 'config', text('a path to a JSON file'), 'JSON file with any of these settings, keyed like "nodeId" or "adminPort"'),
  field('nodeId', 'node-id', cluster(NodosumConfig.fields.nodeId, Schema.String), 'stable id of this node (default: generated)'),
  field('clusterId', 'cluster-id', cluster(NodosumConfig.fields.clusterId, Schema.String), 'nodes of different clusters refuse each other (default "mycorrizal")'),
  field('host', 'host', cluster(NodosumConfig.fields.host), 'address to bind for QUIC (default 127.0.0.1; 0.0.0.0 for every interface)'),
  field('port', 'port', cluster(NodosumConfig.fields.port, numberText), 'UDP port for QUIC (default 7400; 0 picks a free one)'),
  field('advertiseHost', 'advertise-host', cluster(NodosumConfig.fields.advertiseHost), 'address peers dial (default: the bound one), e.g. the pod IP'),
  field('advertisePort', 'advertise-port', cluster(NodosumConfig.fields.advertisePort, numberText), 'port peers dial (default: the bound one)'),
  field('adminHost', 'admin-host', text('a host name or IP address to bind'), 'address of the admin HTTP API (default 127.0.0.1; elsewhere a token is required)'),
  field('adminPort', 'admin-port', cluster(NodosumConfig.fields.port, numberText), 'port of the admin HTTP API (default 7401; 0 picks a free one)'),
  field('seeds', 'seeds', seedList, 'static seeds, host:port[,host:port...]'),
  field('dns', 'dns', cluster(NodosumConfig.fields.dns), 'DNS name whose A/AAAA records (with --dns-port) or SRV records (a name starting with "_") are the seeds'),
  field('dnsPort', 'dns-port', cluster(NodosumConfig.fields.dnsPort, numberText), 'QUIC port of the addresses --dns resolves to (default: --port)'),
  field('consul', 'consul', cluster(NodosumConfig.fields.consul), 'Consul agent URL; the seeds are the healthy instances of service "mycorrizal"'),
  field('consulToken', 'consul-token', text('a Consul ACL token'), 'Consul ACL token (sent as X-Consul-Token); prefer --consul-token-file or the variable. Credentials in the --consul URL go as Authorization: Basic'),
  field('consulTokenFile', 'consul-token-file', text('a path to a file'), 'file holding the Consul ACL token, instead of --consul-token'),
  field('clusterSecret', 'cluster-secret', text(`at least ${MIN_SECRET_LENGTH} characters`), `shared secret (a key of at least ${MIN_SECRET_LENGTH} characters; \`mycorrizal secret\` prints one) that authenticates nodes; prefer --cluster-secret-file or the variable: a flag shows in the process list`),
  field('clusterSecretFile', 'cluster-secret-file', text('a path to a file'), 'file holding the cluster secret (surrounding whitespace ignored), instead of --cluster-secret'),
  field('tlsCa', 'tls-ca', text('a path to a PEM file'), 'mTLS: PEM file of the cluster CA'),
  field('tlsCert', 'tls-cert', text('a path to a PEM file'), "mTLS: PEM file of this node's certificate (CN = node id)"),
  field('tlsKey', 'tls-key', text('a path to a PEM file'), "mTLS: PEM file of this node's private key"),
  field('heartbeatInterval', 'heartbeat-interval', clusterDuration(NodosumConfig.fields.heartbeatInterval), 'how often peers are pinged (default 500ms)'),
  field('failureTimeout', 'failure-timeout', clusterDuration(NodosumConfig.fields.failureTimeout), 'silence after which a peer counts as failed (default 2s; longer than the heartbeat interval)'),
  field('buckets', 'bucket', buckets, 'cache bucket name:ttl:maxSize, e.g. sessions:60s:10000 (repeat the flag, or comma-separate)'),
  field('logLevel', 'log-level', oneOf(LogLevels), 'least severe level logged (default info)'),
  field('adminToken', 'admin-token', text('at least 16 characters'), 'bearer token for reads and writes on the admin API'),
  field('adminTokenFile', 'admin-token-file', text('a path to a file'), 'file holding the admin token, instead of --admin-token'),
  field('adminReadToken', 'admin-read-token', text('at least 16 characters'), 'bearer token for reads only on the admin API'),
  field('adminReadTokenFile', 'admin-read-token-file', text('a path to a file'), 'file holding the read-only token, instead of --admin-read-token'),
  field('single', 'single', oneOf(['true', 'false'] as const), 'run alone: no cluster, no authentication needed')
]

const byKey = new Map(fields.map((f) => [f.key, f]))

/** The settings that are secrets, each with the setting that names a file holding it. */
export const secretFields = [
  { key: 'clusterSecret', file: 'clusterSecretFile' },
  { key: 'adminToken', file: 'adminTokenFile' },
  { key: 'adminReadToken', file: 'adminReadTokenFile' },
  { key: 'consulToken', file: 'consulTokenFile' }
] as const

/**
 * Reads a secret from a file: the whole file, surrounding whitespace (a trailing newline)
 * removed. An unreadable or empty file is an error naming `key`.
 */
export const readSecretFile = (key: string, path: string): Either.Either<string, NodeConfigError> => {
  let text: string
  try {
    text = readFileSync(path, 'utf8').trim()
  } catch (e) {
    return fail(key, `names a file that could not be read: ${(e as Error).message}`)
  }
  return text.length === 0 ? fail(key, `names an empty file (${path})`) : Either.right(text)
}

/** How a field is named to the operator: flag, variable and file key. */
export const describeField = (key: string): string => {
  const f = byKey.get(key)
  return f === undefined ? key : `--${f.flag} (${f.env}, "${f.key}" in the config file)`
}

const fail = (key: string, message: string) => Either.left(new NodeConfigError({ field: key, message: `${describeField(key)} ${message}` }))

/** Reads the `MYCORRIZAL_*` variables. */
export const fromEnv = (env: Record<string, string | undefined>): RawSettings =>
  Object.fromEntries(fields.flatMap((f) => (env[f.env] === undefined ? [] : [[f.key, env[f.env]]])))

/** Reads a JSON config file: an object keyed by file keys; lists may be arrays. */
export const fromFile = (path: string): Either.Either<RawSettings, NodeConfigError> => {
  let parsed: unknown
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'))
  } catch (e) {
    return fail('config', `could not be read as JSON: ${(e as Error).message}`)
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return fail('config', 'must hold a JSON object')
  const out: Record<string, string> = {}
  for (const [key, value] of Object.entries(parsed)) {
    if (!byKey.has(key) || key === 'config') return fail('config', `has an unknown key "${key}"; known keys: ${fields.map((f) => f.key).filter((k) => k !== 'config').join(', ')}`)
    if (Array.isArray(value) && value.every((v) => typeof v === 'string')) out[key] = value.join(',')
    else if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') out[key] = String(value)
    else return fail(key, 'must be a string, number, boolean or list of strings in the config file')
  }
  return Either.right(out)
}

const readPem = (key: string, path: string): Either.Either<string, NodeConfigError> => {
  try {
    return Either.right(readFileSync(path, 'utf8'))
  } catch (e) {
    return fail(key, `names a file that could not be read: ${(e as Error).message}`)
  }
}

const isLoopback = (host: string) => host === 'localhost' || host === '::1' || /^127\./.test(host)

/**
 * Merges flags over environment over the config file (the file named by either), decodes
 * every value and checks the combinations. Unknown keys in the file, malformed values and
 * contradictions fail with the field named.
 */
export const resolve = (flags: RawSettings, env: Record<string, string | undefined>): Either.Either<NodeSettings, NodeConfigError> =>
  Either.gen(function* () {
    const fromEnvironment = fromEnv(env)
    const configPath = flags['config'] ?? fromEnvironment['config']
    const file = configPath === undefined ? {} : yield* fromFile(configPath)
    const raw: Record<string, string | undefined> = { ...file, ...fromEnvironment, ...flags }
    const values: Record<string, unknown> = {}
    for (const f of fields) {
      const value = raw[f.key]
      if (value === undefined) continue
      const decoded = Schema.decodeUnknownEither(f.schema)(value)
      if (Either.isLeft(decoded)) {
        const issue = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)[0]
        const message = issue?.message ?? 'is not valid'
        const shown = secretFields.some((s) => s.key === f.key) ? '' : `, got ${JSON.stringify(redactUrlCredentials(value))}`
        return yield* fail(f.key, `${message.startsWith('"') ? `is not valid: ${message}` : message}${shown}`)
      }
      values[f.key] = decoded.right
    }
    const get = <A>(key: string): A | undefined => values[key] as A | undefined
    // a secret comes inline or from a file, never both; the file's content takes the inline value's place
    const source: Record<string, string> = {}
    for (const { key, file } of secretFields) {
      const path = get<string>(file)
      if (path === undefined) continue
      if (get(key) !== undefined) return yield* fail(file, `and ${describeField(key)} exclude each other: give the secret one way`)
      values[key] = yield* readSecretFile(file, path)
      source[key] = file
    }
    const secret = get<string>('clusterSecret')
    if (secret !== undefined && secret.length < MIN_SECRET_LENGTH) {
      return yield* fail(
        source['clusterSecret'] ?? 'clusterSecret',
        `must hold at least ${MIN_SECRET_LENGTH} characters: the cluster secret is a key, not a password; \`mycorrizal secret\` prints a fresh one`
      )
    }
    for (const key of ['adminToken', 'adminReadToken']) {
      const token = get<string>(key)
      if (token !== undefined && token.length < 16) return yield* fail(source[key] ?? key, 'must hold at least 16 characters')
    }
    const tlsKeys = ['tlsCa', 'tlsCert', 'tlsKey'] as const
    const tlsGiven = tlsKeys.filter((k) => get(k) !== undefined)
    if (tlsGiven.length > 0 && tlsGiven.length < 3) {
      const missing = tlsKeys.find((k) => get(k) === undefined)!
      return yield* fail(missing, 'is needed too: mTLS takes --tls-ca, --tls-cert and --tls-key together')
    }
    if (tlsGiven.length === 3 && secret !== undefined) return yield* fail('clusterSecret', 'and --tls-* exclude each other: choose one way to authenticate')
    const single = get<string>('single') === 'true'
    if (!single && secret === undefined && tlsGiven.length === 0) {
      return yield* fail('clusterSecret', `is needed: nodes authenticate with a cluster secret (at least ${MIN_SECRET_LENGTH} characters; --cluster-secret-file reads it from a file, \`mycorrizal secret\` prints one) or mTLS (--tls-ca, --tls-cert, --tls-key); --single true runs without a cluster`)
    }
    const discovery = (['seeds', 'dns', 'consul'] as const).filter((k) => get(k) !== undefined)
    if (discovery.length > 1) return yield* fail(discovery[1]!, `and ${describeField(discovery[0]!)} exclude each other: choose one discovery mode`)
    const tls =
      tlsGiven.length === 3
        ? {
            ca: yield* readPem('tlsCa', get<string>('tlsCa')!),
            cert: yield* readPem('tlsCert', get<string>('tlsCert')!),
            key: Redacted.make(yield* readPem('tlsKey', get<string>('tlsKey')!))
          }
        : undefined
    const adminHost = get<string>('adminHost') ?? '127.0.0.1'
    const adminToken = Option.fromNullable(get<string>('adminToken')).pipe(Option.map(Redacted.make), Option.getOrUndefined)
    if (!isLoopback(adminHost) && adminToken === undefined) {
      return yield* fail('adminToken', `is needed when the admin API listens on ${adminHost}, beyond loopback (at least 16 characters; --admin-read-token adds a read-only one)`)
    }
    const portValue = get<number>('port') ?? 7400
    const names = new Set<string>()
    for (const b of get<ReadonlyArray<BucketSpec>>('buckets') ?? []) {
      if (names.has(b.name)) return yield* fail('buckets', `names bucket "${b.name}" twice`)
      names.add(b.name)
    }
    return {
      nodeId: get<string>('nodeId'),
      clusterId: get<string>('clusterId'),
      host: get<string>('host') ?? '127.0.0.1',
      port: portValue,
      advertiseHost: get<string>('advertiseHost'),
      advertisePort: get<number>('advertisePort'),
      adminHost,
      adminPort: get<number>('adminPort') ?? 7401,
      seeds: get<ReadonlyArray<string>>('seeds') ?? [],
      dns: get<string>('dns'),
      dnsPort: get<number>('dnsPort') ?? (get<string>('dns') !== undefined && !get<string>('dns')!.startsWith('_') ? portValue || undefined : undefined),
      consul: get<string>('consul'),
      consulToken: Option.fromNullable(get<string>('consulToken')).pipe(Option.map(Redacted.make), Option.getOrUndefined),
      clusterSecret: secret === undefined ? undefined : Redacted.make(secret),
      tls,
      buckets: get<ReadonlyArray<BucketSpec>>('buckets') ?? [],
      heartbeatIntervalMs: get<number>('heartbeatInterval'),
      failureTimeoutMs: get<number>('failureTimeout'),
      logLevel: get<LogLevel>('logLevel') ?? 'info',
      adminToken,
      adminReadToken: Option.fromNullable(get<string>('adminReadToken')).pipe(Option.map(Redacted.make), Option.getOrUndefined),
      single
    }
  })

/** Maps a field of the cluster settings (as `NodosumConfig` names it) to this process's setting. */
export const clusterField = (field: string): string => {
  if (field.startsWith('seeds')) return 'seeds'
  if (field.startsWith('tls.')) return { 'tls.ca': 'tlsCa', 'tls.cert': 'tlsCert', 'tls.key': 'tlsKey' }[field] ?? field
  return field
}
