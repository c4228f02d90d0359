/**
 * The `mycorrizal` command line, built with `@effect/cli`:
 *
 *   mycorrizal node [flags]                          run one node
 *   mycorrizal cluster --nodes N                     N local nodes on loopback
 *   mycorrizal members --admin URL                   the members a node sees
 *   mycorrizal debug stream APP STREAM --admin URL   one stream's stats
 *   mycorrizal cache get|put|delete BUCKET KEY [VALUE] --admin URL
 *   mycorrizal certs --out DIR --nodes n1,n2         a CA and node certificates for mTLS
 *
 * @since 0.1.0
 */
import { Args, Command, Options } from '@effect/cli'
import { Certificates } from 'mycorrizal'
import { Duration, Effect, Either, Option, Schedule } from 'effect'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as Client from './Client.js'
import * as Cluster from './Cluster.js'
import * as Logging from './Logging.js'
import * as Node from './Node.js'
import { fields, LogLevels, type NodeConfigError, resolve, type RawSettings } from './NodeConfig.js'

/** Exit code of a command refused for its arguments or settings. */
export const EXIT_USAGE = 2

const fail = (message: string, code = 1) =>
  Effect.sync(() => {
    process.stderr.write(`error: ${message}\n`)
    process.exitCode = code
  })

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
    const program = Effect.scoped(
      Effect.gen(function* () {
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
  token: Options.text('token').pipe(Options.optional, Options.withDescription('bearer token of the admin API [MYCORRIZAL_ADMIN_TOKEN]'))
}

const target = (o: { admin: string; token: Option.Option<string> }): Client.Target => ({
  url: o.admin,
  token: Option.getOrUndefined(o.token) ?? process.env['MYCORRIZAL_ADMIN_TOKEN']
})

const validUrl = (url: string) => {
  try {
    const u = new URL(url)
    return u.protocol === 'http:' || u.protocol === 'https:'
  } catch {
    return false
  }
}

/** Runs a client command: a bad --admin URL and API errors become one line on stderr. */
const client = <A>(o: { admin: string; token: Option.Option<string> }, f: (t: Client.Target) => Effect.Effect<A, Client.ClientError>) =>
  validUrl(o.admin)
    ? f(target(o)).pipe(
        Effect.asVoid,
        Effect.catchTag('ClientError', (e) => fail(e.message))
      )
    : fail(`--admin must be an http(s) URL such as http://127.0.0.1:7401, got ${JSON.stringify(o.admin)}`, EXIT_USAGE)

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

const certsCommand = Command.make(
  'certs',
  {
    out: Options.directory('out', { exists: 'either' }).pipe(Options.withDefault('certs'), Options.withDescription('directory for the PEM files')),
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
      const bad = ids.find((id) => !/^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/.test(id))
      if (ids.length === 0 || bad !== undefined) return yield* fail(`--nodes must list node ids (letters, digits, ".", "_", ":", "-"), got ${JSON.stringify(bad ?? o.nodes)}`, EXIT_USAGE)
      if (!Number.isInteger(o.days) || o.days < 1 || o.days > 3650) return yield* fail(`--days must be an integer from 1 to 3650, got ${o.days}`, EXIT_USAGE)
      mkdirSync(o.out, { recursive: true })
      const caPath = join(o.out, 'ca.pem')
      const caKeyPath = join(o.out, 'ca-key.pem')
      const reuse = existsSync(caPath) && existsSync(caKeyPath)
      const ca = reuse ? { cert: readFileSync(caPath, 'utf8'), key: readFileSync(caKeyPath, 'utf8') } : yield* Certificates.createCa()
      if (!reuse) {
        writeFileSync(caPath, ca.cert)
        writeFileSync(caKeyPath, ca.key, { mode: 0o600 })
        yield* out(`wrote ${caPath} and ${caKeyPath} (keep the CA key offline)`)
      } else {
        yield* out(`signing with the existing CA in ${o.out}`)
      }
      const hosts = o.hosts
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s.length > 0)
      for (const id of ids) {
        const pair = yield* Certificates.createNodeCertificate(ca, { nodeId: id, hosts, validityDays: o.days })
        writeFileSync(join(o.out, `${id}.pem`), pair.cert)
        writeFileSync(join(o.out, `${id}-key.pem`), pair.key, { mode: 0o600 })
        yield* out(`wrote ${join(o.out, `${id}.pem`)} and ${join(o.out, `${id}-key.pem`)}`)
      }
      yield* out(`run a node with: mycorrizal node --node-id ${ids[0]} --tls-ca ${caPath} --tls-cert ${join(o.out, `${ids[0]}.pem`)} --tls-key ${join(o.out, `${ids[0]}-key.pem`)}`)
    })
).pipe(Command.withDescription('Create a cluster CA (or reuse the one in --out) and a certificate per node, for mTLS.'))

// ---- the program ---------------------------------------------------------------------------

/** The whole command line. */
export const command = Command.make('mycorrizal').pipe(
  Command.withSubcommands([nodeCommand, clusterCommand, membersCommand, debugCommand, cacheCommand, certsCommand]),
  Command.withDescription('Mycorrizal: embedded clustering for Node.js services. Run nodes, a local cluster, and inspect them.')
)

/** Runs the command line on `argv` (as `process.argv`). */
export const run = (argv: ReadonlyArray<string>, version: string) => Command.run(command, { name: 'mycorrizal', version })(argv)

