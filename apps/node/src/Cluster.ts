/**
 * A local cluster on loopback: N `mycorrizal node` processes with embedded defaults (a
 * generated cluster secret, free ports, the first node as everyone's seed, default buckets).
 * Each reports over IPC when it is up and when its view of the members changes. Closing the
 * scope (Ctrl-C) stops them all: each leaves the cluster, and one that does not exit within
 * 10 s is killed.
 *
 * @since 0.1.0
 */
import * as Data from 'effect/Data'
import * as Effect from 'effect/Effect'
import * as Scope from 'effect/Scope'
import { type ChildProcess, fork } from 'node:child_process'
import { randomBytes } from 'node:crypto'

/** A node process did not come up. */
export class ClusterError extends Data.TaggedError('ClusterError')<{ readonly message: string }> {}

/** Messages a node process sends its parent. */
export type NodeMessage =
  | { readonly type: 'ready'; readonly id: string; readonly quicPort: number; readonly adminUrl: string }
  | { readonly type: 'members'; readonly id: string; readonly nodes: ReadonlyArray<string> }

/** Options of `mycorrizal cluster`. */
export interface ClusterOptions {
  readonly nodes: number
  /** Buckets every node creates, `name:ttl:maxSize`. */
  readonly buckets: ReadonlyArray<string>
  readonly logLevel: string
  /** Where to write what happens (the terminal). */
  readonly print: (line: string) => void
}

/** Buckets of a local cluster when none are named. */
export const DEFAULT_BUCKETS = ['default:5m:100000', 'sessions:30m:100000']

const STOP_TIMEOUT_MS = 10_000
const START_TIMEOUT_MS = 60_000

/** Sends SIGTERM and waits for the exit; SIGKILL after the timeout. */
const stop = (child: ChildProcess): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    const killer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS)
    child.once('exit', () => {
      clearTimeout(killer)
      resume(Effect.void)
    })
    child.kill('SIGTERM')
    // interrupted: the timer goes, the child is killed at once
    return Effect.sync(() => {
      clearTimeout(killer)
      child.kill('SIGKILL')
    })
  })

/**
 * Forks `program`'s `node` command with `args` (this program's by default); resolves when the
 * node reports ready. The scope owns the process and the start timer: interrupted before the
 * node is ready (another node failed to start, Ctrl-C) the timer is cleared and the process
 * killed, so nothing outlives the scope.
 */
export const spawnNode = (
  id: string,
  args: ReadonlyArray<string>,
  env: NodeJS.ProcessEnv,
  onMessage: (m: NodeMessage) => void,
  program: string = process.argv[1]!
) =>
  Effect.acquireRelease(
    // interruptible while it waits for the node: the canceler below then kills it
    Effect.async<{ child: ChildProcess; ready: Extract<NodeMessage, { type: 'ready' }> }, ClusterError>((resume) => {
      const child = fork(program, ['node', ...args], { execArgv: process.execArgv, env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
      let done = false
      const timer = setTimeout(() => {
        if (!done) {
          done = true
          child.kill('SIGKILL')
          resume(Effect.fail(new ClusterError({ message: `node ${id} did not start within ${START_TIMEOUT_MS / 1000} s` })))
        }
      }, START_TIMEOUT_MS)
      child.on('message', (m: NodeMessage) => {
        if (m.type === 'ready' && !done) {
          done = true
          clearTimeout(timer)
          resume(Effect.succeed({ child, ready: m }))
        }
        onMessage(m)
      })
      child.once('exit', (code, signal) => {
        if (!done) {
          done = true
          clearTimeout(timer)
          resume(Effect.fail(new ClusterError({ message: `node ${id} exited before it was ready (${signal ?? `code ${code}`})` })))
        }
      })
      return Effect.sync(() => {
        done = true
        clearTimeout(timer)
        child.kill('SIGKILL')
      })
    }).pipe(Effect.interruptible),
    ({ child }) => stop(child)
  )

/** Starts the cluster in the current scope and prints each node's admin URL. */
export const start = (options: ClusterOptions): Effect.Effect<ReadonlyArray<NodeMessage & { type: 'ready' }>, ClusterError, Scope.Scope> =>
  Effect.gen(function* () {
    const secret = randomBytes(32).toString('base64url')
    // the secret goes by environment, not argv, so it does not show in the process list
    const { MYCORRIZAL_CLUSTER_SECRET_FILE: _file, ...inherited } = process.env
    const env = { ...inherited, MYCORRIZAL_CLUSTER_SECRET: secret }
    const buckets = (options.buckets.length > 0 ? options.buckets : DEFAULT_BUCKETS).flatMap((b) => ['--bucket', b])
    const common = ['--host', '127.0.0.1', '--port', '0', '--admin-host', '127.0.0.1', '--admin-port', '0', '--log-level', options.logLevel, ...buckets]
    let lastView = new Map<string, string>()
    const onMessage = (m: NodeMessage) => {
      if (m.type !== 'members') return
      const view = m.nodes.join(' ')
      if (lastView.get(m.id) === view) return
      lastView = new Map(lastView).set(m.id, view)
      options.print(`node ${m.id} sees ${m.nodes.length} members: ${view}`)
    }
    const scope = yield* Effect.scope
    yield* Scope.addFinalizer(scope, Effect.sync(() => options.print('every node stopped')))
    const first = yield* spawnNode('n1', ['--node-id', 'n1', ...common], env, onMessage)
    const seed = `127.0.0.1:${first.ready.quicPort}`
    const rest = yield* Effect.forEach(
      Array.from({ length: options.nodes - 1 }, (_, i) => `n${i + 2}`),
      (id) => spawnNode(id, ['--node-id', id, '--seeds', seed, ...common], env, onMessage),
      { concurrency: 'unbounded' }
    )
    // finalizers run last-in first: this line comes before the nodes stop
    yield* Scope.addFinalizer(scope, Effect.sync(() => options.print('stopping: every node leaves the cluster')))
    const ready = [first, ...rest].map((n) => n.ready)
    for (const node of ready) options.print(`node ${node.id} admin ${node.adminUrl}`)
    options.print(`${options.nodes} node${options.nodes === 1 ? '' : 's'} running on loopback (quic seed ${seed}); Ctrl-C stops them all`)
    return ready
  })
