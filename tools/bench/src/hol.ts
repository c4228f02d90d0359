/**
 * Head-of-line benchmark (the spec's scenario) on real QUIC between two node processes:
 * a small request/response (100 bytes, echoed) runs while 10 MiB transfers go back to back,
 * first with no bulk (idle), then with bulk on a separate named stream, then with bulk on the
 * same stream as the small operation. Reports the small operation's round-trip p99 per phase.
 * Last line: {"idle_p99_us":N,"separate_p99_us":N,"shared_p99_us":N, ...,"separate_ratio":R} (separate ÷ idle p99)
 * and the round trip split at the responder's handler (both processes read the system's monotonic
 * clock): `*_there_p99_us` from the driver's send to the responder's handler, `*_back_p99_us` from
 * there to the driver's handler.
 * BENCH_MAX_STREAM_WINDOW=<bytes> runs it with another largest per-stream receive window.
 * BENCH_SOCKET_BUFFER=<bytes> runs it with another UDP socket buffer size.
 * BENCH_PRIORITY=1 gives the small stream urgency 0 and the bulk stream urgency 7 on both nodes
 * (default: both at the default urgency 3). To make the sender the bottleneck, run it in a network
 * namespace whose loopback is rate-limited, e.g.
 * `unshare -n sh -c 'ip link set lo up; tc qdisc add dev lo root tbf rate 200mbit burst 64kb latency 50ms; npm run bench:hol'`.
 */
import * as Effect from 'effect/Effect'
import * as Fiber from 'effect/Fiber'
import { fork } from 'node:child_process'
import { benchNode, maxStreamWindow, untilMembers } from './node.js'
import { percentile, printResult } from './report.js'

const SAMPLES = Number(process.env['BENCH_SAMPLES'] ?? 1_000)
const BULK = 10 * 1024 * 1024
const SMALL = 100
const config = { id: 'hol', maxStreams: 4, streamBufferSize: 4 }
const prioritized = process.env['BENCH_PRIORITY'] === '1'
/** Microseconds on the system's monotonic clock (the same in both processes). */
const nowUs = () => Number(process.hrtime.bigint()) / 1000
const priorityOf = (name: string) => (prioritized ? { priority: { urgency: name === 'small' ? 0 : 7 } } : {})

/** The responder: echoes small messages on the stream they came on, swallows bulk. */
const responder = () =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const { streams, nodosum } = yield* benchNode('responder')
        const app = yield* streams.registerApplicationWithConfig(config)
        for (const name of ['small', 'bulk']) {
          const stream = yield* app.createStream(name, priorityOf(name))
          stream.setReceiveFunc((payload, from) => {
            if (payload.byteLength !== SMALL) return
            // when the request reached this handler, for the driver's split of the round trip
            new DataView(payload.buffer, payload.byteOffset, SMALL).setFloat64(8, nowUs())
            Effect.runFork(stream.send(payload, [from]).pipe(Effect.catchAll((e) => Effect.sync(() => console.error(`bench:hol: the responder's answer failed: ${e.message}`)))))
          })
        }
        process.send!({ port: nodosum.boundAddress.port })
        yield* Effect.never
      })
    )
  )

const driver = (port: number) =>
  Effect.scoped(
    Effect.gen(function* () {
      const { streams, nodosum } = yield* benchNode('driver', [`127.0.0.1:${port}`])
      yield* untilMembers(nodosum, 2)
      const app = yield* streams.registerApplicationWithConfig(config)
      const small = yield* app.createStream('small', priorityOf('small'))
      const bulk = yield* app.createStream('bulk', priorityOf('bulk'))
      let waiting: ((t: number, handledAt: number) => void) | undefined
      small.setReceiveFunc((payload) => {
        if (payload.byteLength === SMALL) waiting?.(nowUs(), new DataView(payload.buffer, payload.byteOffset, SMALL).getFloat64(8))
      })
      const target = ['responder']
      const request = new Uint8Array(SMALL).fill(1)
      /** Round trips (us), and each split at the responder's handler: request there, answer back. */
      const measure = (count: number) =>
        Effect.gen(function* () {
          const rtts: Array<number> = []
          const there: Array<number> = []
          const back: Array<number> = []
          for (let i = 0; i < count; i++) {
            const sentAt = nowUs()
            const answered = Effect.async<readonly [number, number]>((resume) => {
              waiting = (t, handledAt) => resume(Effect.succeed([t, handledAt] as const))
            })
            yield* small.send(request, target)
            const [at, handledAt] = yield* answered
            rtts.push(at - sentAt)
            there.push(handledAt - sentAt)
            back.push(at - handledAt)
          }
          return Object.assign(rtts, { there, back })
        })
      const payload = new Uint8Array(BULK).fill(9)
      const bulkOn = (stream: typeof small) =>
        Effect.fork(
          Effect.forever(stream.send(payload, target).pipe(Effect.andThen(Effect.yieldNow())))
        )
      // the first answer may be lost while the responder does not yet count the driver as a
      // member (the driver waited for its own view only): ask again until one comes back
      const firstAnswer = Effect.async<void>((resume) => {
        waiting = () => resume(Effect.void)
      })
      let answered = false
      for (let i = 0; i < 60 && !answered; i++) {
        yield* small.send(request, target)
        answered = (yield* Effect.timeoutOption(firstAnswer, '1 second'))._tag === 'Some'
      }
      if (!answered) return yield* Effect.die(new Error('the responder never answered'))
      yield* measure(200)
      const progress = (phase: string) => Effect.sync(() => console.error(`bench:hol: ${phase}`))
      yield* progress('idle')
      const idle = yield* measure(SAMPLES)
      const separateBulk = yield* bulkOn(bulk)
      yield* Effect.sleep('300 millis')
      yield* progress('separate')
      const separate = yield* measure(SAMPLES)
      yield* Fiber.interrupt(separateBulk)
      yield* Effect.sleep('300 millis')
      const sharedBulk = yield* bulkOn(small)
      yield* Effect.sleep('300 millis')
      yield* progress('shared')
      const shared = yield* measure(Math.max(50, Math.floor(SAMPLES / 10)))
      yield* Fiber.interrupt(sharedBulk)
      return { idle, separate, shared }
    })
  )

const main = async () => {
  const watchdog = setTimeout(() => {
    console.error('bench:hol did not finish within 5 minutes')
    process.exit(1)
  }, 300_000)
  const profile = process.env['BENCH_PROFILE_DIR']
  const execArgv = profile === undefined ? process.execArgv : [...process.execArgv, '--cpu-prof', `--cpu-prof-dir=${profile}`]
  const child = fork(new URL(import.meta.url).pathname, ['responder'], { execArgv })
  const port = await new Promise<number>((resolve) => child.once('message', (m: { port: number }) => resolve(m.port)))
  const { idle, separate, shared } = await Effect.runPromise(driver(port))
  child.send('exit')
  clearTimeout(watchdog)
  const p = (xs: Array<number>, q: number) => Math.round(percentile(xs, q))
  console.log(`small op alone:                 p50 ${p(idle, 0.5)} us, p99 ${p(idle, 0.99)} us`)
  console.log(`during bulk on a separate stream: p50 ${p(separate, 0.5)} us, p99 ${p(separate, 0.99)} us (${(p(separate, 0.99) / p(idle, 0.99)).toFixed(2)} x idle)`)
  console.log(`  split at the responder's handler: there p99 ${p(separate.there, 0.99)} us, back p99 ${p(separate.back, 0.99)} us (idle ${p(idle.there, 0.99)} / ${p(idle.back, 0.99)} us)`)
  console.log(`during bulk on the same stream:   p50 ${p(shared, 0.5)} us, p99 ${p(shared, 0.99)} us (${(p(shared, 0.99) / p(separate, 0.99)).toFixed(1)} x separate)`)
  printResult({
    idle_p99_us: p(idle, 0.99),
    separate_p99_us: p(separate, 0.99),
    shared_p99_us: p(shared, 0.99),
    idle_p50_us: p(idle, 0.5),
    separate_p50_us: p(separate, 0.5),
    shared_p50_us: p(shared, 0.5),
    separate_ratio: Number((p(separate, 0.99) / p(idle, 0.99)).toFixed(2)),
    separate_there_p99_us: p(separate.there, 0.99),
    separate_back_p99_us: p(separate.back, 0.99),
    idle_there_p99_us: p(idle.there, 0.99),
    idle_back_p99_us: p(idle.back, 0.99),
    max_stream_window: maxStreamWindow ?? 'default',
    priorities: prioritized ? 'small 0, bulk 7' : 'default'
  })
  process.exit(0)
}

if (process.argv[2] === 'responder') {
  // leave on request, so a profile (when asked for) is written
  process.on('message', (m) => m === 'exit' && process.exit(0))
  // and with the driver: a driver that exits before its message arrives leaves no responder behind
  process.on('disconnect', () => process.exit(0))
  await responder()
}
else await main()
