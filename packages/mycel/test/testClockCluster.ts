/**
 * Cache nodes over MemoryTransport on the TestClock, as the atomic-operation and near-cache
 * tests build them: nodes, streams and the cache as in production, time moved by the test.
 */
import * as Testing from '@mycorrizal/testing'
import { type MemoryTransport, Nodosum } from '@mycorrizal/nodosum'
import { Streams } from '@mycorrizal/streams'
import { Context, Effect, Layer, type Scope } from 'effect'
import * as Mycel from '../src/Mycel.js'

const secret = 'mycel-test-secret-of-at-least-32-characters'
export type Node = { readonly id: string; readonly mycel: Mycel.Mycel['Type']; readonly nodosum: Nodosum.Nodosum['Type'] }

/** A node with 500 ms requests, a 3 s ready timeout, no leave wait, 50 ms heartbeats and a 300 ms failure timeout. */
export const node = (id: string, seeds: ReadonlyArray<string>): Effect.Effect<Node, unknown, MemoryTransport.MemoryNetwork | Scope.Scope> =>
  Layer.build(
    Mycel.layer({ requestTimeout: '500 millis', readyTimeout: '3 seconds', leaveTimeout: 0 }).pipe(
      Layer.provideMerge(Streams.layer()),
      Layer.provideMerge(Nodosum.layerMemory({ nodeId: id, host: id, port: 7001, clusterSecret: secret, seeds: [...seeds], heartbeatInterval: 50, failureTimeout: 300 }))
    )
  ).pipe(Effect.map((ctx): Node => ({ id, mycel: Context.get(ctx, Mycel.Mycel), nodosum: Context.get(ctx, Nodosum.Nodosum) })))

/** The TestClock moves 10 ms at a time, with 10 event-loop turns after each step. */
export const advanceUntil = (condition: () => boolean, what: string, maxMs = 20_000) => Testing.advanceUntil(condition, what, maxMs, 10, 10)
/** Runs `effect` to its end while the TestClock moves. */
export const drive = <A, E>(effect: Effect.Effect<A, E>, what: string, maxMs = 20_000) => Testing.advanceWhile(effect, what, maxMs, 10, 10)
