/**
 * Messages benchmark: 1 KiB messages one way through `Stream.send` between two node processes
 * on loopback, against length-prefixed 1 KiB messages over Node TCP between two processes in
 * the same run. The receiver counts whole messages over a timed window after a warm-up.
 * Last line: {"msgs_s":N,"ratio_tcp":R}
 */
import * as Effect from 'effect/Effect'
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { createServer, connect as tcpConnect } from 'node:net'
import { benchNode, untilMembers } from './node.js'
import { printResult } from './report.js'

const SIZE = 1024
const WARMUP_MS = 500
const seconds = Number(process.env['BENCH_SECONDS'] ?? 3)

/** Counts messages; reports msgs/s over `seconds` after the warm-up. */
const meter = (report: (msgsS: number) => void) => {
  let total = 0
  let start = 0
  let startCount = 0
  let measuring = false
  let done = false
  return () => {
    if (done) return
    total++
    const now = performance.now()
    if (start === 0) start = now
    if (!measuring && now - start >= WARMUP_MS) {
      measuring = true
      start = now
      startCount = total
    } else if (measuring && now - start >= seconds * 1000) {
      done = true
      report((total - startCount) / ((now - start) / 1000))
    }
  }
}

const reply = (m: unknown) => process.send!(m)

const receiver = async (kind: 'mycel' | 'tcp') => {
  const report = (msgsS: number) => {
    reply({ msgs_s: msgsS })
    setTimeout(() => process.exit(0), 200)
  }
  if (kind === 'tcp') {
    const count = meter(report)
    const server = createServer((socket) => {
      // real framing: [u32 BE length][payload]
      let pending = Buffer.alloc(0)
      socket.on('data', (d) => {
        pending = pending.length === 0 ? d : Buffer.concat([pending, d])
        let o = 0
        while (pending.length - o >= 4) {
          const n = pending.readUInt32BE(o)
          if (pending.length - o - 4 < n) break
          o += 4 + n
          count()
        }
        pending = pending.subarray(o)
      })
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    reply({ port: (server.address() as { port: number }).port })
    return
  }
  await Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const { streams, nodosum } = yield* benchNode('receiver')
        const app = yield* streams.registerApplication('bench')
        const stream = yield* app.createStream('messages')
        stream.setReceiveFunc(meter(report))
        reply({ port: nodosum.boundAddress.port })
        yield* Effect.never
      })
    )
  )
}

const runTcp = async (): Promise<number> => {
  const child = fork(new URL(import.meta.url).pathname, ['receiver', 'tcp'], { execArgv: process.execArgv })
  const port = await new Promise<number>((resolve) => child.once('message', (m: { port: number }) => resolve(m.port)))
  const result = new Promise<number>((resolve) => child.on('message', (m: { msgs_s?: number }) => m.msgs_s !== undefined && resolve(m.msgs_s)))
  const socket = tcpConnect(port, '127.0.0.1')
  await once(socket, 'connect')
  const frame = Buffer.alloc(4 + SIZE, 7)
  frame.writeUInt32BE(SIZE, 0)
  let finished = false
  const pump = () => {
    while (!finished) {
      if (!socket.write(frame)) {
        socket.once('drain', pump)
        return
      }
    }
  }
  pump()
  const msgsS = await result
  finished = true
  socket.destroy()
  child.kill()
  return msgsS
}

const runMycorrizal = async (): Promise<number> => {
  const child = fork(new URL(import.meta.url).pathname, ['receiver', 'mycel'], { execArgv: process.execArgv })
  const port = await new Promise<number>((resolve) => child.once('message', (m: { port: number }) => resolve(m.port)))
  const result = new Promise<number>((resolve) => child.on('message', (m: { msgs_s?: number }) => m.msgs_s !== undefined && resolve(m.msgs_s)))
  const msgsS = await Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const { streams, nodosum } = yield* benchNode('sender', [`127.0.0.1:${port}`])
        yield* untilMembers(nodosum, 2)
        const app = yield* streams.registerApplication('bench')
        const stream = yield* app.createStream('messages')
        const payload = new Uint8Array(SIZE).fill(7)
        const target = ['receiver']
        let finished = false
        const fiber = yield* Effect.fork(
          Effect.whileLoop({
            while: () => !finished,
            body: () => stream.send(payload, target),
            step: () => {}
          })
        )
        const value = yield* Effect.promise(() => result)
        finished = true
        yield* fiber.await
        return value
      })
    )
  )
  child.kill()
  return msgsS
}

const main = async () => {
  const tcp = await runTcp()
  console.log(`tcp: ${Math.round(tcp)} msgs/s of 1 KiB (length-prefixed, two processes)`)
  const mycorrizal = await runMycorrizal()
  console.log(`mycorrizal Stream.send: ${Math.round(mycorrizal)} msgs/s of 1 KiB, ${(mycorrizal / tcp).toFixed(3)} of TCP`)
  printResult({ msgs_s: Math.round(mycorrizal), ratio_tcp: Number((mycorrizal / tcp).toFixed(3)), tcp_msgs_s: Math.round(tcp) })
  process.exit(0)
}

if (process.argv[2] === 'receiver') await receiver(process.argv[3] as 'mycel' | 'tcp')
else await main()
