/**
 * Every application of this node, and the routing of incoming transport streams to them.
 * Plain TypeScript: the Effect shell (`service.ts`) gives it a clock, a scope-owned timer and
 * a logger.
 */
import { ErrorCode, type Nodosum, type PeerStream } from '@mycorrizal/nodosum'
import * as Either from 'effect/Either'
import type { ApplicationConfig } from '../Application.js'
import { StreamsError } from '../StreamsError.js'
import { AppImpl, type ApplicationHost, type HeldStream } from './application.js'
import { resolveConfig } from './config.js'
import { BufferPool } from './pool.js'
import { Held } from './routing.js'
import type { Log } from './stream.js'

/** Streams per connection above which a warning is logged (spec threshold). */
export const WARN_STREAMS_PER_CONNECTION = 50
/** Outgoing copies from this size on come from the pool (smaller ones are framed into a batch at once). */
const POOLED_MIN_BYTES = 64 * 1024
/** Free pooled buffers kept at most, and how long they are kept without use. */
const POOL_RETAINED_BYTES = 64 * 1024 * 1024
const POOL_IDLE_MS = 10_000

export interface RegistryOptions {
  /** How long an incoming stream for a name not created yet is held before it is refused (ms). */
  readonly graceMs: number
  readonly maxMessageSize: number
  /** Streams a peer allows per connection (the transport's `maxStreams`), for the error threshold. */
  readonly connectionStreamLimit: number
  /** Free pooled buffers kept at most (bytes; default 64 MiB). */
  readonly poolRetainedBytes?: number
  /** Free pooled buffers are dropped after this long without use (ms; default 10 s). */
  readonly poolIdleMs?: number
}

/** The clock, timer and logger the Effect shell gives the registry. */
export interface RegistryRuntime {
  /** Milliseconds on the Effect clock. */
  readonly now: () => number
  /** Runs `f` after `ms` on the Effect clock in a fiber of the service's scope; returns a cancel. */
  readonly later: (ms: number, f: () => void) => () => void
  readonly log: Log
}

export class Registry implements ApplicationHost {
  readonly apps = new Map<string, AppImpl>()
  /** Incoming streams of applications not registered yet, with their refusal timers. */
  private readonly heldApps = new Held<HeldStream>()
  /** Copies of large outgoing messages, reused once the transport is done with them. */
  readonly pool: BufferPool
  readonly now: () => number
  readonly log: Log
  readonly maxMessageSize: number
  private readonly later: RegistryRuntime['later']

  constructor(
    readonly nodosum: Nodosum.Nodosum['Type'],
    readonly options: RegistryOptions,
    runtime: RegistryRuntime
  ) {
    this.now = runtime.now
    this.later = runtime.later
    this.log = (level, message, annotations) => runtime.log(level, message, { node: nodosum.nodeId, ...annotations })
    this.maxMessageSize = options.maxMessageSize
    this.pool = new BufferPool({
      minBytes: POOLED_MIN_BYTES,
      maxRetainedBytes: options.poolRetainedBytes ?? POOL_RETAINED_BYTES,
      idleMs: options.poolIdleMs ?? POOL_IDLE_MS,
      schedule: runtime.later
    })
    nodosum.setStreamAcceptor((ps) => {
      const app = this.apps.get(ps.appId)
      if (app !== undefined) return app.accept(ps)
      // the application may not be registered yet (services register after joining): hold it too
      this.hold(this.heldApps, ps.appId, ps, this.options.graceMs, 'incoming stream refused: application not registered here within the grace period')
      return true
    })
  }

  /**
   * Holds an incoming stream (not read, so its sender is held back by flow control) under `key`
   * until it is claimed or `graceMs` pass; then it is refused with UnknownStream and logged.
   */
  hold = (held: Held<HeldStream>, key: string, ps: PeerStream, graceMs: number, refusal: string): void => {
    ps.pause()
    const entry: HeldStream = {
      ps,
      cancel: this.later(graceMs, () => {
        if (!held.expire(key, entry)) return
        this.log('Warning', refusal, { app: ps.appId, stream: ps.streamName, node: ps.peer, graceMs })
        ps.reset(ErrorCode.UnknownStream)
      })
    }
    held.hold(key, entry)
  }

  register(config: ApplicationConfig): Either.Either<AppImpl, StreamsError> {
    const resolved = resolveConfig(config, this.options)
    if (Either.isLeft(resolved)) return Either.left(resolved.left)
    if (this.apps.has(config.id)) {
      return Either.left(new StreamsError({ reason: 'DuplicateApplication', message: `application '${config.id}' is already registered` }))
    }
    const app = new AppImpl(this, config.id, resolved.right)
    this.apps.set(config.id, app)
    for (const h of this.heldApps.claim(config.id)) {
      h.cancel()
      if (!h.ps.isClosed()) app.accept(h.ps)
    }
    return Either.right(app)
  }

  /** Logs the spec's thresholds for streams per connection. */
  checkStreamCount = (node: string): void => {
    const peer = this.nodosum.stats().peers.find((p) => p.id === node)
    if (peer === undefined) return
    const limit = this.options.connectionStreamLimit
    if (peer.streamsOpen >= limit) {
      this.log('Error', 'stream limit reached', { node, count: peer.streamsOpen, limit })
    } else if (peer.streamsOpen > WARN_STREAMS_PER_CONNECTION) {
      this.log('Warning', 'high stream count', { node, count: peer.streamsOpen, expected: 30 })
    }
  }

  forget(node: string): void {
    for (const app of this.apps.values()) app.forget(node)
  }

  close(): void {
    for (const app of this.apps.values()) app.close()
    this.apps.clear()
    for (const h of this.heldApps.clear()) h.cancel()
    this.pool.clear()
  }
}
