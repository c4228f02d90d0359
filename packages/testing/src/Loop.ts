/**
 * The event loop as tests see it: a number of turns (what `setImmediate` pumps need, which
 * are event-loop turns, not clock time) and the active libuv resources by type (to show that
 * nothing is left after a scope closes).
 */
import * as Effect from 'effect/Effect'

/** Lets `n` event-loop turns pass (pending `setImmediate` callbacks run). */
export const turns = (n = 5): Effect.Effect<void> =>
  Effect.promise(async () => {
    for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve))
  })

/** Active libuv resources (sockets, timers, immediates) by type, as Node reports them. */
export const activeResources = (): Record<string, number> => {
  const counts: Record<string, number> = {}
  for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] ?? 0) + 1
  return counts
}
