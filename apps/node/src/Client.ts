/**
 * The CLI's side of the admin HTTP API: requests with the bearer token, and the text the
 * operator reads (the stream block of `mycorrizal debug stream`, the member table).
 *
 * @since 0.1.0
 */
import type { StreamStats } from 'mycorrizal'
import * as Data from 'effect/Data'
import * as Effect from 'effect/Effect'

/** The admin API could not be reached or answered with an error. */
export class ClientError extends Data.TaggedError('ClientError')<{
  readonly status: number | undefined
  readonly message: string
}> {}

/** Where the admin API is and the token to show it. */
export interface Target {
  readonly url: string
  readonly token: string | undefined
}

/** A response with its body read. */
export interface Reply {
  readonly status: number
  readonly body: Uint8Array
}

const TIMEOUT_MS = 10_000

/** One request; network failures and timeouts become `ClientError`. */
export const request = (target: Target, method: 'GET' | 'PUT' | 'DELETE', path: string, body?: Uint8Array): Effect.Effect<Reply, ClientError> =>
  Effect.tryPromise({
    try: async (signal) => {
      const headers: Record<string, string> = {}
      if (target.token !== undefined) headers['authorization'] = `Bearer ${target.token}`
      if (body !== undefined) headers['content-type'] = 'application/octet-stream'
      const response = await fetch(new URL(path, target.url), {
        method,
        headers,
        body,
        signal: AbortSignal.any([signal, AbortSignal.timeout(TIMEOUT_MS)])
      })
      return { status: response.status, body: new Uint8Array(await response.arrayBuffer()) }
    },
    catch: (e) => new ClientError({ status: undefined, message: `could not reach the admin API at ${target.url}: ${(e as Error).message}` })
  })

/** The reply's JSON, or a `ClientError` with the API's own message for a status of 400 or more. */
export const json = <A>(reply: Reply): Effect.Effect<A, ClientError> => {
  const text = new TextDecoder().decode(reply.body)
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return Effect.fail(new ClientError({ status: reply.status, message: `the admin API answered ${reply.status} with a body that is not JSON` }))
  }
  if (reply.status >= 400) return Effect.fail(failure(reply.status, parsed))
  return Effect.succeed(parsed as A)
}

/** The error a failed reply carries. */
export const failure = (status: number, body: unknown): ClientError => {
  const message = typeof body === 'object' && body !== null && typeof (body as { message?: unknown }).message === 'string' ? (body as { message: string }).message : `HTTP ${status}`
  return new ClientError({ status, message: status === 401 ? `${message} (pass --token-file or set MYCORRIZAL_ADMIN_TOKEN or MYCORRIZAL_ADMIN_TOKEN_FILE)` : message })
}

/** Fails with the API's message unless the status is one of `ok`. */
export const expectStatus = (reply: Reply, ...ok: ReadonlyArray<number>): Effect.Effect<Reply, ClientError> => {
  if (ok.includes(reply.status)) return Effect.succeed(reply)
  let body: unknown
  try {
    body = JSON.parse(new TextDecoder().decode(reply.body))
  } catch {
    body = undefined
  }
  return Effect.fail(failure(reply.status, body))
}

/** Bytes in binary units: 512 B, 1.5 KiB, 10.0 MiB. */
export const formatBytes = (n: number): string => {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']
  let value = n
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${units[unit]}`
}

/** A duration in the past: `now`, `2s ago`, `3m 5s ago`, `1h 2m ago`, `4d 1h ago`. */
export const formatAgo = (ms: number): string => {
  const s = Math.max(0, Math.floor(ms / 1000))
  if (s === 0) return 'now'
  const [d, h, m] = [Math.floor(s / 86_400), Math.floor((s % 86_400) / 3600), Math.floor((s % 3600) / 60)]
  if (d > 0) return `${d}d ${h}h ago`
  if (h > 0) return `${h}h ${m}m ago`
  if (m > 0) return `${m}m ${s % 60}s ago`
  return `${s}s ago`
}

/** What `/debug/streams/:app/:stream` answers: the stream's stats with its names. */
export interface StreamView extends StreamStats {
  readonly app: string
  readonly stream: string
}

/** The spec's block of `debug stream`, with a few more lines below it. */
export const formatStream = (view: StreamView, now: number): string =>
  [
    `Stream: ${view.stream}`,
    `Active nodes: [${view.activeNodes.join(', ')}]`,
    `Bytes sent: ${formatBytes(view.bytesSent)}`,
    `Messages: ${view.messagesOut + view.messagesIn} (${view.messagesOut} out, ${view.messagesIn} in)`,
    `Error rate: ${(view.errorRate * 100).toFixed(2)}%`,
    `Last active: ${formatAgo(now - view.lastActive)}`,
    `Application: ${view.app}`,
    `Bytes received: ${formatBytes(view.bytesReceived)}`,
    `Failed sends: ${view.failedSends}, receive errors: ${view.receiveErrors}`,
    `Queued: ${view.queuedMessages} messages, ${formatBytes(view.queuedBytes)}`,
    `Created: ${formatAgo(now - view.createdAt)}`
  ].join('\n')

/** Rows as columns aligned by padding, two spaces apart (the last column unpadded). */
const table = (rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n')
}

/** What `/debug/topics` answers for one topic. */
export interface TopicView {
  readonly topic: string
  readonly localSubscribers: number
  readonly subscriberNodes: ReadonlyArray<string>
  readonly published: number
  readonly delivered: number
  readonly pending: number
  readonly failedPublishes: number
}

/** Topics as an aligned table. */
export const formatTopics = (topics: ReadonlyArray<TopicView>): string => {
  if (topics.length === 0) return 'no topics on this node'
  const rows = [
    ['TOPIC', 'LOCAL', 'NODES', 'PUBLISHED', 'DELIVERED', 'PENDING', 'FAILED'],
    ...topics.map((t) => [
      t.topic,
      String(t.localSubscribers),
      t.subscriberNodes.length === 0 ? '-' : t.subscriberNodes.join(','),
      String(t.published),
      String(t.delivered),
      String(t.pending),
      String(t.failedPublishes)
    ])
  ]
  return table(rows)
}

/** What `/debug/locks` answers. */
export interface LocksView {
  readonly acquires: number
  readonly contended: number
  readonly timeouts: number
  readonly releases: number
  readonly lost: number
  readonly refused: number
  readonly held: ReadonlyArray<{ readonly name: string; readonly token: string; readonly remainingMs: number }>
}

/** The locks of a node: its counts, then the locks it holds as a table. */
export const formatLocks = (view: LocksView): string => {
  const counts = `Acquired ${view.acquires}, contended ${view.contended}, timed out ${view.timeouts}, released ${view.releases}, lost ${view.lost}, refused ${view.refused}`
  if (view.held.length === 0) return `${counts}
no locks held by this node`
  return `${counts}
${table([['LOCK', 'TOKEN', 'LEASE LEFT'], ...view.held.map((h) => [h.name, h.token, `${(h.remainingMs / 1000).toFixed(1)}s`])])}`
}

/** What `/debug/elections` answers. */
export interface ElectionsView {
  readonly led: number
  readonly revoked: number
  readonly elections: ReadonlyArray<{ readonly name: string; readonly isLeader: boolean; readonly leader: string | null; readonly token: string | null; readonly terms: number }>
}

/** The elections a node stands in, as a table. */
export const formatLeaders = (view: ElectionsView): string => {
  if (view.elections.length === 0) return 'no elections on this node'
  const rows = [
    ['ELECTION', 'LEADER', 'THIS NODE', 'TOKEN', 'TERMS'],
    ...view.elections.map((e) => [e.name, e.leader ?? '-', e.isLeader ? 'leader' : 'candidate', e.token ?? '-', String(e.terms)])
  ]
  return `${table(rows)}
Terms led ${view.led}, revoked ${view.revoked}`
}

/** What `/debug/members` answers. */
export interface MemberView {
  readonly id: string
  readonly address: string
  readonly state: string
  readonly since?: string
  readonly self?: boolean
}

/** Members as an aligned table. */
export const formatMembers = (members: ReadonlyArray<MemberView>): string => {
  const rows = [['ID', 'ADDRESS', 'STATE', 'SINCE'], ...members.map((m) => [m.self === true ? `${m.id} (self)` : m.id, m.address, m.state, m.since ?? ''])]
  return table(rows)
}
