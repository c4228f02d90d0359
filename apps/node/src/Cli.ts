/**
 * The `mycorrizal` command line, built with `@effect/cli`:
 *
 *   mycorrizal node [flags]                          run one node
 *   mycorrizal cluster --nodes N                     N local nodes on loopback
 *   mycorrizal members --admin URL                   the members a node sees
 *   mycorrizal topics --admin URL                    the topics of a node: subscribers, messages
 *   mycorrizal locks --admin URL                     lock counts and the locks a node holds
 *   mycorrizal leaders --admin URL                   the elections a node stands in and their leaders
 *   mycorrizal debug stream APP STREAM --admin URL   one stream's stats
 *   mycorrizal cache get|put|delete BUCKET KEY [VALUE] --admin URL
 *   mycorrizal certs --out DIR --nodes n1,n2         a CA and node certificates for mTLS
 *   mycorrizal secret                                a fresh cluster secret (256 bits, base64url)
 *
 * @since 0.1.0
 */
import { Args, Command, Options } from '@effect/cli'
import { Certificates, NodosumConfig } from 'mycorrizal'
import * as Duration from 'effect/Duration'
import * as Effect from 'effect/Effect'
import * as Either from 'effect/Either'
import * as Option from 'effect/Option'
import * as Schedule from 'effect/Schedule'
import * as Schema from 'effect/Schema'
import { randomBytes } from 'node:crypto'
import { closeSync, constants, existsSync, fchmodSync, lstatSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs'
import { basename, dirname, join, resolve as resolvePath } from 'node:path'
import * as Client from './Client.js'
import * as Cluster from './Cluster.js'
import * as Logging from './Logging.js'
import * as Node from './Node.js'
import { describeField, fields, LogLevels, type NodeConfigError, resolve, type RawSettings, secretFields } from './NodeConfig.js'
import { redactUrlCredentials } from './Redact.js'

const isNodeId = Schema.is(NodosumConfig.NodeId)

/** Exit code of a command refused for its arguments or settings. */
export const EXIT_USAGE = 2

const fail = (message: string, code = 1) =>
  Effect.sync(() => {
    process.stderr.write(`error: ${redactUrlCredentials(message)}\n`)
    process.exitCode = code
  })

const warn = (message: string) => Effect.sync(() => void process.stderr.write(`warning: ${message}\n`))

// ---- mycorrizal node -----------------------------------------------------------------------

const nodeOptions = Object.fromEntries(
  fields.map((f) => {
    if (f.key === 'buckets') return [f.key, Options.text(f.flag).pipe(Options.withDescription(`${f.help} [${f.env}]`), Options.repeated)]
    if (f.key === 'single') return [f.key, Options.boolean(f.flag).pipe(Options.withDescription(`${f.help} [${f.env}]`))]
    return [f.key, Options.text(f.flag).pipe(Options.withDescription(`${f.help} [${f.env}]`), Options.optional)]
  })
) as Record<string, Options.Options<Option.Option<string> | ReadonlyArray<string> | boolean>>

/** The flags given, as raw settings (absent ones left out so environment and file apply). */
const rawFlags = (values: Record<string, Option.Option<string> | ReadonlyArray<string> | boolean>): RawSettings => {
  const out: Record<string, string> = {}
  for (const [key, value] of Object.entries(values)) {
    if (typeof value === 'boolean') {
      if (value) out[key] = 'true'
    } else if (Array.isArray(value)) {
      if (value.length > 0) out[key] = value.join(',')
    } else if (Option.isOption(value) && Option.isSome(value)) {
      out[key] = value.value
    }
  }
  return out
}

/** Reports to the parent process (`mycorrizal cluster`) when there is one. */
const report = (running: Node.RunningNode) =>
  Effect.gen(function* () {
    const send = process.send?.bind(process)
    if (send === undefined || !process.connected) return
    send({ type: 'ready', id: running.id, quicPort: running.quic.port, adminUrl: running.admin.url } satisfies Cluster.NodeMessage)
    let last = ''
    yield* Effect.sync(() => {
      const nodes = running.nodes()
      const view = nodes.join(',')
      if (view !== last && process.connected) {
        last = view
        send({ type: 'members', id: running.id, nodes } satisfies Cluster.NodeMessage)
      }
    }).pipe(Effect.repeat(Schedule.spaced(Duration.millis(250))), Effect.forkScoped)
  })

/** Completes when the parent process goes away (never without one). */
const parentGone = Effect.async<void>((resume) => {
  if (process.send === undefined) return
  const gone = () => resume(Effect.void)
  process.once('disconnect', gone)
  return Effect.sync(() => process.removeListener('disconnect', gone))
})

const nodeCommand = Command.make('node', nodeOptions, (values) =>
  Effect.gen(function* () {
    const settings = resolve(rawFlags(values), process.env)
    if (Either.isLeft(settings)) return yield* fail(settings.left.message, EXIT_USAGE)
    const log = Logging.makePino(settings.right.logLevel, process.stdout.isTTY === true)
    const flags = rawFlags(values)
    const program = Effect.scoped(
      Effect.gen(function* () {
        // a secret given as a flag is readable by every user of the machine (ps, /proc/<pid>/cmdline)
        for (const { key, file } of secretFields) {
          if (flags[key] !== undefined) {
            yield* Effect.logWarning(`${describeField(key)} was given on the command line, where the process list shows it; use --${fields.find((f) => f.key === file)!.flag} or the environment variable`)
          }
        }
        const running = yield* Node.start(settings.right)
        yield* report(running)
        yield* parentGone
      })
    ).pipe(
      Effect.catchTags({
        NodeConfigError: (e: NodeConfigError) => fail(e.message, EXIT_USAGE),
        NodeStartError: (e) => Effect.logError('node could not start', e.message).pipe(Effect.zipRight(fail(e.message)))
      }),
      Effect.ensuring(Effect.sync(() => log.flush()))
    )
    yield* program.pipe(Effect.provide(Logging.layer(log, settings.right.logLevel)))
  })
).pipe(Command.withDescription('Run one node: joins the cluster over QUIC, serves the admin HTTP API (metrics, health, debug, cache). Every flag may also come from MYCORRIZAL_<FLAG> or a --config JSON file.'))

// ---- mycorrizal cluster --------------------------------------------------------------------

const clusterCommand = Command.make(
  'cluster',
  {
    nodes: Options.integer('nodes').pipe(Options.withDefault(3), Options.withDescription('how many nodes (1 to 50)')),
    bucket: Options.text('bucket').pipe(Options.repeated, Options.withDescription(`bucket of every node, name:ttl:maxSize (default ${Cluster.DEFAULT_BUCKETS.join(', ')})`)),
    logLevel: Options.choice('log-level', LogLevels).pipe(Options.withDefault('warn' as const), Options.withDescription('log level of the nodes'))
  },
  ({ nodes, bucket, logLevel }) =>
    Effect.gen(function* () {
      if (!Number.isInteger(nodes) || nodes < 1 || nodes > 50) return yield* fail(`--nodes must be an integer from 1 to 50, got ${nodes}`, EXIT_USAGE)
      yield* Effect.scoped(
        Cluster.start({ nodes, buckets: bucket, logLevel, print: (line) => process.stdout.write(`${line}\n`) }).pipe(Effect.zipRight(Effect.never))
      ).pipe(Effect.catchTag('ClusterError', (e) => fail(e.message)))
    })
).pipe(Command.withDescription('Start N nodes on loopback with embedded defaults (generated secret, free ports, default buckets); Ctrl-C stops them all.'))

// ---- admin API clients ---------------------------------------------------------------------

const adminOptions = {
  admin: Options.text('admin').pipe(
    Options.withDefault(process.env['MYCORRIZAL_ADMIN'] ?? 'http://127.0.0.1:7401'),
    Options.withDescription('URL of a node admin API [MYCORRIZAL_ADMIN]')
  ),
  token: Options.text('token').pipe(
    Options.optional,
    Options.withDescription('bearer token of the admin API (shows in the process list: prefer --token-file or the variable) [MYCORRIZAL_ADMIN_TOKEN]')
  ),
  tokenFile: Options.text('token-file').pipe(Options.optional, Options.withDescription('file holding the bearer token [MYCORRIZAL_ADMIN_TOKEN_FILE]'))
}

type AdminFlags = { admin: string; token: Option.Option<string>; tokenFile: Option.Option<string> }

/** Reads a token file: its content without surrounding whitespace. */
const readTokenFile = (what: string, path: string): Either.Either<string, string> => {
  try {
    const token = readFileSync(path, 'utf8').trim()
    return token.length === 0 ? Either.left(`${what} names an empty file (${path})`) : Either.right(token)
  } catch (e) {
    return Either.left(`${what} names a file that could not be read: ${(e as Error).message}`)
  }
}

/** The token: --token, else --token-file, else MYCORRIZAL_ADMIN_TOKEN, else MYCORRIZAL_ADMIN_TOKEN_FILE. */
export const resolveToken = (o: { token: Option.Option<string>; tokenFile: Option.Option<string> }, env: Record<string, string | undefined>): Either.Either<string | undefined, string> => {
  if (Option.isSome(o.token) && Option.isSome(o.tokenFile)) return Either.left('--token and --token-file exclude each other: give the token one way')
  if (Option.isSome(o.token)) return Either.right(o.token.value)
  if (Option.isSome(o.tokenFile)) return readTokenFile('--token-file', o.tokenFile.value)
  if (env['MYCORRIZAL_ADMIN_TOKEN'] !== undefined) return Either.right(env['MYCORRIZAL_ADMIN_TOKEN'])
  if (env['MYCORRIZAL_ADMIN_TOKEN_FILE'] !== undefined) return readTokenFile('MYCORRIZAL_ADMIN_TOKEN_FILE', env['MYCORRIZAL_ADMIN_TOKEN_FILE'])
  return Either.right(undefined)
}

const validUrl = (url: string) => {
  try {
    const u = new URL(url)
    return u.protocol === 'http:' || u.protocol === 'https:'
  } catch {
    return false
  }
}

/** Runs a client command: a bad --admin URL, a bad token file and API errors become one line on stderr. */
const client = <A>(o: AdminFlags, f: (t: Client.Target) => Effect.Effect<A, Client.ClientError>) =>
  Effect.gen(function* () {
    if (!validUrl(o.admin)) return yield* fail(`--admin must be an http(s) URL such as http://127.0.0.1:7401, got ${JSON.stringify(o.admin)}`, EXIT_USAGE)
    const token = resolveToken(o, process.env)
    if (Either.isLeft(token)) return yield* fail(token.left, EXIT_USAGE)
    if (Option.isSome(o.token)) yield* warn('--token shows in the process list; prefer --token-file or MYCORRIZAL_ADMIN_TOKEN')
    yield* f({ url: o.admin, token: token.right }).pipe(
      Effect.asVoid,
      Effect.catchTag('ClientError', (e) => fail(e.message))
    )
  })

const path = (...parts: ReadonlyArray<string>) => `/${parts.map(encodeURIComponent).join('/')}`

const out = (text: string) => Effect.sync(() => process.stdout.write(`${text}\n`))

const membersCommand = Command.make('members', adminOptions, (o) =>
  client(o, (t) =>
    Client.request(t, 'GET', '/debug/members').pipe(
      Effect.flatMap(Client.json<ReadonlyArray<Client.MemberView>>),
      Effect.flatMap((members) => out(Client.formatMembers(members)))
    )
  )
).pipe(Command.withDescription('List the members a node sees: id, address, state.'))

const topicsCommand = Command.make('topics', adminOptions, (o) =>
  client(o, (t) =>
    Client.request(t, 'GET', '/debug/topics').pipe(
      Effect.flatMap(Client.json<ReadonlyArray<Client.TopicView>>),
      Effect.flatMap((topics) => out(Client.formatTopics(topics)))
    )
  )
).pipe(Command.withDescription('List the topics of a node: local subscribers, other nodes with one, messages published and delivered, pending and failed publishes.'))

const locksCommand = Command.make('locks', adminOptions, (o) =>
  client(o, (t) =>
    Client.request(t, 'GET', '/debug/locks').pipe(
      Effect.flatMap(Client.json<Client.LocksView>),
      Effect.flatMap((view) => out(Client.formatLocks(view)))
    )
  )
).pipe(Command.withDescription('Show the locks of a node: acquires, contention, timeouts, and the locks it holds with their fencing token and lease left.'))

const leadersCommand = Command.make('leaders', adminOptions, (o) =>
  client(o, (t) =>
    Client.request(t, 'GET', '/debug/elections').pipe(
      Effect.flatMap(Client.json<Client.ElectionsView>),
      Effect.flatMap((view) => out(Client.formatLeaders(view)))
    )
  )
).pipe(Command.withDescription('List the elections a node stands in: the leader, whether it is this node, the term token.'))

const debugStream = Command.make(
  'stream',
  { ...adminOptions, app: Args.text({ name: 'APP' }), stream: Args.text({ name: 'STREAM' }) },
  (o) =>
    client(o, (t) =>
      Client.request(t, 'GET', path('debug', 'streams', o.app, o.stream)).pipe(
        Effect.flatMap(Client.json<Client.StreamView>),
        Effect.flatMap((view) => out(Client.formatStream(view, Date.now())))
      )
    )
).pipe(Command.withDescription('Show one stream of an application ("default" is its default stream): active nodes, bytes, messages, error rate, last activity.'))

const debugCommand = Command.make('debug').pipe(Command.withSubcommands([debugStream]), Command.withDescription('Inspect a node.'))

const cacheArgs = { ...adminOptions, bucket: Args.text({ name: 'BUCKET' }), key: Args.text({ name: 'KEY' }) }

const readStdin = Effect.promise(async () => {
  const chunks: Array<Buffer> = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return new Uint8Array(Buffer.concat(chunks))
})

const cacheGet = Command.make('get', cacheArgs, (o) =>
  client(o, (t) =>
    Client.request(t, 'GET', path('v1', 'cache', o.bucket, o.key)).pipe(
      Effect.flatMap((reply) => Client.expectStatus(reply, 200)),
      Effect.flatMap((reply) => Effect.sync(() => process.stdout.write(reply.body)))
    )
  )
).pipe(Command.withDescription('Print the value of KEY (raw bytes); a miss exits with 1.'))

const cachePut = Command.make('put', { ...cacheArgs, value: Args.text({ name: 'VALUE' }).pipe(Args.optional) }, (o) =>
  client(o, (t) =>
    Effect.gen(function* () {
      const body = Option.isSome(o.value) ? new TextEncoder().encode(o.value.value) : yield* readStdin
      yield* Client.request(t, 'PUT', path('v1', 'cache', o.bucket, o.key), body).pipe(Effect.flatMap((reply) => Client.expectStatus(reply, 204)))
    })
  )
).pipe(Command.withDescription('Store VALUE (or standard input) under KEY.'))

const cacheDelete = Command.make('delete', cacheArgs, (o) =>
  client(o, (t) => Client.request(t, 'DELETE', path('v1', 'cache', o.bucket, o.key)).pipe(Effect.flatMap((reply) => Client.expectStatus(reply, 204))))
).pipe(Command.withDescription('Delete KEY.'))

const cacheCommand = Command.make('cache').pipe(Command.withSubcommands([cacheGet, cachePut, cacheDelete]), Command.withDescription('Read and write the distributed cache through a node.'))

// ---- mycorrizal certs ----------------------------------------------------------------------

/**
 * Writes a file with `mode` whatever existed before: a temporary file created with that mode
 * is renamed over the path, so the content is never readable with looser permissions, not
 * even for a moment when an older file was 0644. A symbolic link at the path is refused: the
 * write would otherwise land wherever the link points.
 */
export const writeFileSecure = (path: string, data: string, mode: number): void => {
  let existing
  try {
    existing = lstatSync(path)
  } catch {
    existing = undefined
  }
  if (existing?.isSymbolicLink()) throw new Error(`refusing to write ${path}: it is a symbolic link (remove it, or choose another --out)`)
  if (existing !== undefined && !existing.isFile()) throw new Error(`refusing to write ${path}: it is not a regular file`)
  const temporary = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`)
  const fd = openSync(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (constants.O_NOFOLLOW ?? 0), mode)
  try {
    fchmodSync(fd, mode)
    writeSync(fd, data)
  } catch (e) {
    closeSync(fd)
    rmSync(temporary, { force: true })
    throw e
  }
  closeSync(fd)
  renameSync(temporary, path)
}

/** The directory of the CA next to an output directory: `certs` -> `certs-ca`. */
export const defaultCaDir = (out: string): string => `${resolvePath(out)}-ca`

const certsCommand = Command.make(
  'certs',
  {
    out: Options.directory('out', { exists: 'either' }).pipe(
      Options.withDefault('certs'),
      Options.withDescription('directory of what nodes need: ca.pem, <id>.pem and <id>-key.pem')
    ),
    caDir: Options.directory('ca-dir', { exists: 'either' }).pipe(
      Options.optional,
      Options.withDescription('directory of the CA key (and a copy of its certificate), apart from the node keys; default <out>-ca. Keep it offline')
    ),
    nodes: Options.text('nodes').pipe(Options.withDescription('node ids, comma-separated; each gets <id>.pem and <id>-key.pem')),
    hosts: Options.text('hosts').pipe(Options.withDefault('localhost,127.0.0.1,::1'), Options.withDescription('DNS names and IPs in every node certificate')),
    days: Options.integer('days').pipe(Options.withDefault(825), Options.withDescription('validity of the node certificates'))
  },
  (o) =>
    Effect.gen(function* () {
      const ids = o.nodes
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s.length > 0)
      const bad = ids.find((id) => !isNodeId(id))
      if (ids.length === 0 || bad !== undefined) return yield* fail(`--nodes must list node ids (letters, digits, ".", "_", ":", "-"), got ${JSON.stringify(bad ?? o.nodes)}`, EXIT_USAGE)
      if (!Number.isInteger(o.days) || o.days < 1 || o.days > 3650) return yield* fail(`--days must be an integer from 1 to 3650, got ${o.days}`, EXIT_USAGE)
      const caDir = Option.getOrElse(o.caDir, () => defaultCaDir(o.out))
      if (resolvePath(caDir) === resolvePath(o.out)) return yield* fail('--ca-dir must differ from --out: the CA key is kept apart from the node keys', EXIT_USAGE)
      const legacyKey = join(o.out, 'ca-key.pem')
      if (existsSync(legacyKey)) {
        return yield* fail(
          `${legacyKey} is a CA key beside the node keys; move the CA to its own directory and run again: mkdir -p ${caDir} && mv ${legacyKey} ${join(o.out, 'ca.pem')} ${caDir}/`,
          EXIT_USAGE
        )
      }
      const caPath = join(caDir, 'ca.pem')
      const caKeyPath = join(caDir, 'ca-key.pem')
      const [hasCert, hasKey] = [existsSync(caPath), existsSync(caKeyPath)]
      if (hasCert !== hasKey) return yield* fail(`${caDir} holds ${hasCert ? 'ca.pem without ca-key.pem' : 'ca-key.pem without ca.pem'}: restore the pair or remove it to create a new CA`)
      const written = yield* Effect.try({
        try: () => {
          mkdirSync(caDir, { recursive: true, mode: 0o700 })
          mkdirSync(o.out, { recursive: true })
          return true
        },
        catch: (e) => (e as Error).message
      }).pipe(Effect.catchAll((message) => Effect.as(fail(message), false)))
      if (!written) return
      const ca = hasCert ? { cert: readFileSync(caPath, 'utf8'), key: readFileSync(caKeyPath, 'utf8') } : yield* Certificates.createCa()
      const hosts = o.hosts
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s.length > 0)
      const pairs = yield* Effect.forEach(ids, (id) => Effect.map(Certificates.createNodeCertificate(ca, { nodeId: id, hosts, validityDays: o.days }), (pair) => ({ id, ...pair })))
      const files: Array<readonly [string, string, number]> = [
        ...(hasCert ? [] : ([[caKeyPath, ca.key, 0o600], [caPath, ca.cert, 0o644]] as const)),
        [join(o.out, 'ca.pem'), ca.cert, 0o644],
        ...pairs.flatMap(({ id, cert, key }) => [[join(o.out, `${id}.pem`), cert, 0o644] as const, [join(o.out, `${id}-key.pem`), key, 0o600] as const])
      ]
      for (const [path, data, mode] of files) {
        const error = yield* Effect.try({ try: () => writeFileSecure(path, data, mode), catch: (e) => (e as Error).message }).pipe(Effect.flip, Effect.option)
        if (Option.isSome(error)) return yield* fail(error.value)
      }
      yield* out(hasCert ? `signing with the existing CA in ${caDir}` : `wrote ${caPath} and ${caKeyPath} (mode 0600): keep this directory offline, apart from the nodes`)
      for (const { id } of pairs) yield* out(`wrote ${join(o.out, `${id}.pem`)} and ${join(o.out, `${id}-key.pem`)} (mode 0600)`)
      yield* out(`run a node with: mycorrizal node --node-id ${ids[0]} --tls-ca ${join(o.out, 'ca.pem')} --tls-cert ${join(o.out, `${ids[0]}.pem`)} --tls-key ${join(o.out, `${ids[0]}-key.pem`)}`)
    })
).pipe(
  Command.withDescription(
    'Create a cluster CA in --ca-dir (default <out>-ca; or reuse the one there) and a certificate per node in --out, for mTLS. Key files are written with mode 0600, never through a symbolic link.'
  )
)

// ---- mycorrizal secret ---------------------------------------------------------------------

/** A fresh cluster secret: 256 random bits, base64url (43 characters). */
export const freshSecret = (): string => randomBytes(32).toString('base64url')

const secretCommand = Command.make('secret').pipe(
  Command.withHandler(() => out(freshSecret())),
  Command.withDescription(
    'Print a fresh cluster secret (256 random bits, base64url). Store it in a file for --cluster-secret-file or in MYCORRIZAL_CLUSTER_SECRET, e.g. mycorrizal secret > secret && chmod 600 secret'
  )
)

// ---- the program ---------------------------------------------------------------------------

/** The whole command line. */
export const command = Command.make('mycorrizal').pipe(
  Command.withSubcommands([nodeCommand, clusterCommand, membersCommand, topicsCommand, locksCommand, leadersCommand, debugCommand, cacheCommand, certsCommand, secretCommand]),
  Command.withDescription('Mycorrizal: embedded clustering for Node.js services. Run nodes, a local cluster, and inspect them.')
)

/** Runs the command line on `argv` (as `process.argv`). */
export const run = (argv: ReadonlyArray<string>, version: string) => Command.run(command, { name: 'mycorrizal', version })(argv)

