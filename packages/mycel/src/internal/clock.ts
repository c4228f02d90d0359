/**
 * The shell's clock: milliseconds since the epoch with sub-millisecond resolution, read on every
 * operation (deadlines, expiry, the latency histograms).
 *
 * Effect's live `Clock` answers `unsafeCurrentTimeNanos` from `process.hrtime.bigint()` plus an
 * origin: two BigInts built per reading, and a conversion. On that clock this reads
 * `performance.now()` instead — the same monotonic source (libuv's hrtime), a plain number —
 * against an origin taken once from the clock itself, so both readings agree. Any other clock (a
 * `TestClock`, one a user provides) is read through its own `unsafeCurrentTimeNanos`.
 */
import * as Clock from 'effect/Clock'
import * as Context from 'effect/Context'
import * as DefaultServices from 'effect/DefaultServices'

const live = Context.get(DefaultServices.liveServices, Clock.Clock)

/** A reader of `clock` in milliseconds. */
export const millisOf = (clock: Clock.Clock): (() => number) => {
  if (clock !== live) return () => Number(clock.unsafeCurrentTimeNanos()) / 1_000_000
  const origin = Number(clock.unsafeCurrentTimeNanos()) / 1_000_000 - performance.now()
  return () => origin + performance.now()
}
