/**
 * Waiting for a cluster built in a test to agree on its members: on the `TestClock`
 * (`advanceUntil`, `untilMesh`) or on the real one (`eventuallyMesh`). A node is anything with
 * `nodes()` (the alive member ids, sorted), so this kit needs no Mycorrizal package.
 */
import * as Duration from 'effect/Duration'
import * as Effect from 'effect/Effect'
import * as Fiber from 'effect/Fiber'
import * as TestClock from 'effect/TestClock'
import { turns } from './Loop.js'

/** What a mesh wait reads of a node. */
export interface MeshNode {
  readonly nodes: () => ReadonlyArray<string>
}

/**
 * Advances the `TestClock` by `stepMs` at a time (letting the event loop turn after each step)
 * until `condition` holds; fails after `maxMs` of test-clock time. Returns the test time it took.
 */
export const advanceUntil = (condition: () => boolean, what: string, maxMs = 10_000, stepMs = 50, turnsPerStep = 20): Effect.Effect<number, Error> =>
  Effect.gen(function* () {
    for (let elapsed = 0; elapsed <= maxMs; elapsed += stepMs) {
      yield* turns(turnsPerStep)
      if (condition()) return elapsed
      yield* TestClock.adjust(Duration.millis(stepMs))
    }
    return yield* Effect.fail(new Error(`${what} did not hold within ${maxMs} ms of test-clock time`))
  })

/** Runs `effect` to its end while `advanceUntil` moves the `TestClock` (same step arguments). */
export const advanceWhile = <A, E>(effect: Effect.Effect<A, E>, what: string, maxMs = 10_000, stepMs = 50, turnsPerStep = 20): Effect.Effect<A, E | Error> =>
  Effect.gen(function* () {
    const fiber = yield* Effect.fork(effect)
    let done = false
    yield* Effect.fork(Effect.andThen(Fiber.await(fiber), Effect.sync(() => (done = true))))
    yield* advanceUntil(() => done, what, maxMs, stepMs, turnsPerStep)
    return yield* Fiber.join(fiber)
  })

/** True when every node sees exactly `ids` alive. */
export const isMesh = (nodes: ReadonlyArray<MeshNode>, ids: ReadonlyArray<string>): boolean => {
  const want = JSON.stringify([...ids].sort())
  return nodes.every((n) => JSON.stringify(n.nodes()) === want)
}

/** Advances the `TestClock` until every node sees exactly `ids` alive. */
export const untilMesh = (nodes: ReadonlyArray<MeshNode>, ids: ReadonlyArray<string>, maxMs = 10_000) =>
  advanceUntil(() => isMesh(nodes, ids), `mesh of ${ids.join(',')}`, maxMs)

/** On the real clock: event-loop turns until every node sees `size` members; fails after `rounds`. */
export const eventuallyMesh = (nodes: ReadonlyArray<MeshNode>, size: number, rounds = 200): Effect.Effect<void, Error> =>
  Effect.gen(function* () {
    for (let i = 0; i < rounds; i++) {
      if (nodes.every((n) => n.nodes().length === size)) return
      yield* turns(5)
    }
    return yield* Effect.fail(new Error(`no mesh of ${size}: ${nodes.map((n) => n.nodes().join(',')).join(' | ')}`))
  })
