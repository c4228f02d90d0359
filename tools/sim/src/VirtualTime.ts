/**
 * Virtual time for a simulation run: a `Clock` whose time only the driver moves, with every
 * timer of the code under test on it.
 *
 * - Effect code (nodosum, streams, Mycel, the memory network) sleeps on the Effect `Clock`:
 *   the run provides `VirtualClock` (each node gets a view of it with its own skew).
 * - Plain `setTimeout` calls (Mycel's request timeouts and retry pauses today) are routed onto
 *   the same clock while a run is installed; `setTimeout(f, 0)` (Effect's scheduler yields)
 *   becomes `setImmediate`, whose order is fixed, where a real 0 ms timer's order against
 *   immediates depends on wall time.
 * - `setImmediate` is counted, so the driver lets the process run until nothing is left to do
 *   before it moves the clock. The same seed then replays the same interleaving.
 *
 * Why not `TestClock`: its `adjust` sorts every pending sleep at each wake-up and keeps
 * interrupted sleeps until they are due; with seven nodes' heartbeats and request timeouts a run
 * spent most of its time there (29 s of wall time for 22 s of virtual time). This clock is the
 * same idea, on a binary heap, and fires each instant's timers in order with the process idle
 * in between.
 */
import * as Clock from 'effect/Clock'
import * as Duration from 'effect/Duration'
import * as Effect from 'effect/Effect'

interface Timer {
  readonly at: number
  readonly seq: number
  readonly fire: () => void
  cancelled: boolean
}

const before = (a: Timer, b: Timer) => a.at < b.at || (a.at === b.at && a.seq < b.seq)

/** A min-heap of timers by (time, insertion order). */
class TimerHeap {
  private readonly items: Array<Timer> = []

  get size(): number {
    return this.items.length
  }

  peek(): Timer | undefined {
    return this.items[0]
  }

  push(timer: Timer): void {
    const items = this.items
    items.push(timer)
    let i = items.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!before(items[i]!, items[parent]!)) break
      ;[items[i], items[parent]] = [items[parent]!, items[i]!]
      i = parent
    }
  }

  pop(): Timer | undefined {
    const items = this.items
    const top = items[0]
    const last = items.pop()
    if (top === undefined || last === undefined || items.length === 0) return top
    items[0] = last
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let best = i
      if (l < items.length && before(items[l]!, items[best]!)) best = l
      if (r < items.length && before(items[r]!, items[best]!)) best = r
      if (best === i) break
      ;[items[i], items[best]] = [items[best]!, items[i]!]
      i = best
    }
    return top
  }
}

const real = {
  setTimeout: globalThis.setTimeout,
  clearTimeout: globalThis.clearTimeout,
  setImmediate: globalThis.setImmediate,
  clearImmediate: globalThis.clearImmediate
}

/** True while a run has the global timers. */
let installed = false

/** A node's pause switch: its due sleeps wait in `parked` while it is paused. */
export interface Gate {
  paused: boolean
  readonly parked: Array<() => void>
}

/** The handle a routed `setTimeout` returns. */
interface TimeoutHandle {
  readonly timer: Timer
  unref(): TimeoutHandle
  ref(): TimeoutHandle
  hasRef(): boolean
}

export class VirtualTime {
  private current = 0
  private seq = 0
  private readonly timers = new TimerHeap()
  /** Immediates scheduled by the code under test and not run yet. */
  private outstanding = 0
  private readonly live = new Set<NodeJS.Immediate>()
  private owner = false

  /** Virtual milliseconds since the run started. */
  now(): number {
    return this.current
  }

  /** Calls `fire` once the clock reaches now + ms; returns the timer (cancel by setting `cancelled`). */
  schedule(ms: number, fire: () => void): Timer {
    const timer: Timer = { at: this.current + Math.max(0, ms), seq: this.seq++, fire, cancelled: false }
    this.timers.push(timer)
    return timer
  }

  sleep(duration: Duration.Duration | number, gate?: Gate): Effect.Effect<void> {
    const ms = typeof duration === 'number' ? duration : Duration.toMillis(duration)
    if (!Number.isFinite(ms)) return Effect.never
    return Effect.async<void>((resume) => {
      const wake = () => resume(Effect.void)
      const timer = this.schedule(ms, () => {
        if (gate?.paused === true) gate.parked.push(wake)
        else wake()
      })
      return Effect.sync(() => {
        timer.cancelled = true
      })
    })
  }

  /**
   * The clock as seen by a node whose clock is `offset()` ms off (sleeps are not affected by the
   * offset). While `gate.paused`, the node's sleeps that come due wait; they all wake when it resumes.
   */
  clock(offset: () => number = () => 0, gate?: Gate): Clock.Clock {
    const millis = () => this.current + offset()
    return {
      [Clock.ClockTypeId]: Clock.ClockTypeId,
      unsafeCurrentTimeMillis: millis,
      currentTimeMillis: Effect.sync(millis),
      unsafeCurrentTimeNanos: () => BigInt(Math.round(millis() * 1_000_000)),
      currentTimeNanos: Effect.sync(() => BigInt(Math.round(millis() * 1_000_000))),
      sleep: (duration) => this.sleep(duration, gate)
    }
  }

  /** Moves the clock to `target`, firing due timers instant by instant, the process idle in between. */
  async advanceTo(target: number): Promise<void> {
    await this.settle()
    for (;;) {
      const top = this.timers.peek()
      if (top === undefined || top.at > target) break
      this.current = top.at
      while (this.timers.peek() !== undefined && this.timers.peek()!.at === this.current) {
        const timer = this.timers.pop()!
        if (!timer.cancelled) timer.fire()
      }
      await this.settle()
    }
    this.current = Math.max(this.current, target)
  }

  install(): void {
    if (installed) throw new Error('a simulation is already running in this process')
    installed = true
    this.owner = true
    const setImmediateV = (callback: (...args: Array<unknown>) => void, ...args: Array<unknown>): NodeJS.Immediate => {
      this.outstanding++
      const handle: NodeJS.Immediate = real.setImmediate(() => {
        if (this.live.delete(handle)) this.outstanding--
        callback(...args)
      })
      this.live.add(handle)
      return handle
    }
    const clearImmediateV = (handle: NodeJS.Immediate | undefined): void => {
      if (handle !== undefined && this.live.delete(handle)) this.outstanding--
      real.clearImmediate(handle)
    }
    const setTimeoutV = (callback: (...args: Array<unknown>) => void, ms?: number, ...args: Array<unknown>): unknown => {
      const delay = Math.max(0, Number(ms ?? 0) || 0)
      if (delay === 0) return setImmediateV(callback, ...args)
      const handle: TimeoutHandle = {
        timer: this.schedule(delay, () => callback(...args)),
        unref: () => handle,
        ref: () => handle,
        hasRef: () => true
      }
      return handle
    }
    const clearTimeoutV = (handle: unknown): void => {
      if (handle === undefined || handle === null) return
      if (typeof handle === 'object' && 'timer' in handle) (handle as TimeoutHandle).timer.cancelled = true
      else if (this.live.has(handle as NodeJS.Immediate)) clearImmediateV(handle as NodeJS.Immediate)
      else real.clearTimeout(handle as NodeJS.Timeout)
    }
    Object.assign(globalThis, { setImmediate: setImmediateV, clearImmediate: clearImmediateV, setTimeout: setTimeoutV, clearTimeout: clearTimeoutV })
  }

  uninstall(): void {
    if (!this.owner) return
    Object.assign(globalThis, real)
    installed = false
    this.owner = false
  }

  /**
   * Lets the process run until no immediate of the code under test is pending for two turns
   * in a row, or `maxTurns` turns passed (a busy loop). Microtasks run between turns.
   */
  settle(maxTurns = 2_000): Promise<number> {
    return new Promise((resolve) => {
      let turns = 0
      let idle = 0
      const turn = () => {
        turns++
        if (this.outstanding === 0) idle++
        else idle = 0
        if (idle >= 2 || turns >= maxTurns) resolve(turns)
        else real.setImmediate(turn)
      }
      real.setImmediate(turn)
    })
  }
}
