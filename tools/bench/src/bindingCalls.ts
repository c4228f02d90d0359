/**
 * Times the calls a process makes into the QUIC binding (`@matrixai/quic`'s quiche
 * `Connection`), by wrapping the class's methods: count and total time per method. A
 * diagnostic (BENCH_BINDING_TIMES=1 in `transport.ts`): the wrapper itself adds two clock reads
 * per call (~0.1-0.2 µs here), so it is off unless asked for.
 */
import * as native from '@matrixai/quic/native/index.js'

export interface CallTimes {
  /** Per method: calls, and their total time (µs). `send` returning nothing is `send (done)`. */
  readonly [method: string]: { readonly calls: number; readonly us: number }
}

const METHODS = ['recv', 'send', 'streamSend', 'streamRecv', 'streamReadable', 'isReadable', 'readable', 'timeout', 'onTimeout', 'streamCapacity', 'isEstablished', 'isClosed'] as const

/** Wraps the binding's methods once per process; returns a function that takes the times so far and starts again. */
export const timeBindingCalls = (): (() => CallTimes) => {
  const proto = (native.quiche.Connection as unknown as { prototype: Record<string, (...args: Array<unknown>) => unknown> }).prototype
  const times: Record<string, { calls: number; us: number }> = {}
  const slot = (name: string) => (times[name] ??= { calls: 0, us: 0 })
  for (const name of METHODS) {
    const original = proto[name]
    if (typeof original !== 'function') continue
    proto[name] = function (this: unknown, ...args: Array<unknown>) {
      const t = performance.now()
      let result: unknown
      try {
        result = original.apply(this, args)
        return result
      } finally {
        const s = slot(name === 'send' && result === null ? 'send (done)' : name)
        s.us += (performance.now() - t) * 1000
        s.calls++
      }
    }
  }
  return () => {
    const taken: Record<string, { calls: number; us: number }> = {}
    for (const [name, s] of Object.entries(times)) {
      taken[name] = { ...s }
      s.calls = 0
      s.us = 0
    }
    return taken
  }
}

/** One line per side: each method's calls per round trip and µs per call, then the total µs per round trip. */
export const describeCallTimes = (side: string, times: CallTimes, roundTrips: number): string => {
  let total = 0
  const parts = Object.entries(times)
    .filter(([, s]) => s.calls > 0)
    .sort(([, a], [, b]) => b.us - a.us)
    .map(([name, s]) => {
      total += s.us
      return `${name} ${(s.calls / roundTrips).toFixed(2)} x ${(s.us / s.calls).toFixed(2)} us`
    })
  return `${side}: ${(total / roundTrips).toFixed(1)} us in the binding per round trip (${parts.join(', ')})`
}
