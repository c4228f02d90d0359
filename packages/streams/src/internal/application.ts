/**
 * One registered application: its default stream, its named streams, and the incoming streams
 * held for names not created yet.
 */
import type { PeerStream, StreamPriority } from '@mycorrizal/nodosum'
import * as Effect from 'effect/Effect'
import * as Either from 'effect/Either'
import type { Application, ApplicationConfig, ApplicationStats, ReceiveFunc, Stream, StreamOptions } from '../Application.js'
import { StreamsError } from '../StreamsError.js'
import { resolvePriority, validStreamName } from './config.js'
import { Held, routeStream } from './routing.js'
import { applicationStats } from './stats.js'
import { StreamImpl, type StreamHost } from './stream.js'

/** An incoming stream waiting to be claimed, with the cancel of its refusal. */
export interface HeldStream {
  readonly ps: PeerStream
  readonly cancel: () => void
}

/** What an application needs from its node besides what its streams need. */
export interface ApplicationHost extends StreamHost {
  /** Holds `ps` under `key` of `held` for `graceMs`, then refuses it (logging `refusal`). */
  readonly hold: (held: Held<HeldStream>, key: string, ps: PeerStream, graceMs: number, refusal: string) => void
}

export class AppImpl implements Application {
  private readonly streams = new Map<string, StreamImpl>()
  readonly defaultStream: StreamImpl
  /** Incoming streams for names not created yet, with their refusal timers. */
  private readonly held = new Held<HeldStream>()

  constructor(
    private readonly host: ApplicationHost,
    readonly id: string,
    readonly config: Required<ApplicationConfig>
  ) {
    this.priority = Either.getOrThrow(resolvePriority(config.priority))
    this.defaultStream = new StreamImpl(host, this, '', this.priority)
  }

  /** The priority of the default stream and of named streams that set none. */
  readonly priority: StreamPriority

  send = (payload: Uint8Array, nodeIds?: ReadonlyArray<string>) => this.defaultStream.send(payload, nodeIds)

  setReceiveFunc = (fn: ReceiveFunc): void => this.defaultStream.setReceiveFunc(fn)

  nodes = (): ReadonlyArray<string> => this.host.nodosum.nodes()

  createStream = (name: string, options: StreamOptions = {}): Effect.Effect<Stream, StreamsError> =>
    Effect.suspend(() => {
      if (this.config.defaultStreamOnly) {
        return Effect.fail(new StreamsError({ reason: 'DefaultStreamOnly', message: `application '${this.id}' is configured for the default stream only` }))
      }
      const invalid = validStreamName(name)
      if (invalid !== undefined) return Effect.fail(invalid)
      if (this.streams.has(name)) return Effect.fail(new StreamsError({ reason: 'DuplicateStream', message: `stream '${name}' already exists in '${this.id}'` }))
      if (this.streams.size >= this.config.maxStreams) {
        return Effect.fail(
          new StreamsError({ reason: 'MaxStreamsReached', message: `application '${this.id}' has its maximum of ${this.config.maxStreams} streams` })
        )
      }
      const priority = resolvePriority(options.priority, this.priority)
      if (Either.isLeft(priority)) return Effect.fail(priority.left)
      const stream = new StreamImpl(this.host, this, name, priority.right)
      this.streams.set(name, stream)
      this.host.log('Info', 'stream created', { app: this.id, stream: name, maxNodes: this.host.nodosum.nodes().length })
      for (const h of this.held.claim(name)) {
        h.cancel()
        if (!h.ps.isClosed()) stream.attach(h.ps)
      }
      return Effect.succeed<Stream>(stream)
    })

  getStream = (name: string): Effect.Effect<Stream, StreamsError> =>
    Effect.suspend(() => {
      const stream = name === '' ? this.defaultStream : this.streams.get(name)
      return stream === undefined
        ? Effect.fail(new StreamsError({ reason: 'UnknownStream', message: `no stream '${name}' in '${this.id}'` }))
        : Effect.succeed<Stream>(stream)
    })

  closeStream = (name: string): Effect.Effect<void, StreamsError> =>
    Effect.suspend(() => {
      const stream = this.streams.get(name)
      if (stream === undefined) return Effect.fail(new StreamsError({ reason: 'UnknownStream', message: `no stream '${name}' in '${this.id}'` }))
      return stream.close
    })

  removeStream = (name: string): void => {
    this.streams.delete(name)
  }

  listStreams = (): ReadonlyArray<string> => [...this.streams.keys()]

  /** Routes an incoming transport stream to its stream, or holds it for the grace period. */
  accept(ps: PeerStream): boolean {
    const route = routeStream(this.defaultStream, this.streams, ps.streamName)
    if (route._tag === 'Attach') route.stream.attach(ps)
    else this.host.hold(this.held, ps.streamName, ps, this.config.unknownStreamGraceMs, 'incoming stream refused: not created here within the grace period')
    return true
  }

  stats = (): ApplicationStats =>
    applicationStats(
      this.defaultStream.stats(),
      [...this.streams].map(([name, s]) => [name, s.stats()] as const)
    )

  forget(node: string): void {
    this.defaultStream.forget(node)
    for (const s of this.streams.values()) s.forget(node)
  }

  close(): void {
    this.defaultStream.closeNow()
    for (const s of this.streams.values()) s.closeNow()
    this.streams.clear()
    for (const h of this.held.clear()) h.cancel()
  }
}
