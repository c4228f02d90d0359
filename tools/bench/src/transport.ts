/**
 * Transport benchmark: one QUIC stream between two nodes — two processes on loopback, as two
 * nodes of a service would be — against Node `net` TCP between the same two processes,
 * measured in the same run; plus a ping-pong of 100-byte messages.
 * The receiver measures throughput (bytes it got over a timed window after a warm-up).
 * Last line: {"lan":{...},"jumbo":{...},"loopback":{...},"rtt":{...}}
 * BENCH_SOCKET_BUFFER=<bytes> runs the QUIC side with another UDP socket buffer size.
 * BENCH_MAX_STREAM_WINDOW=<bytes> runs it with another largest per-stream receive window.
 * BENCH_BINDING_TIMES=1 times every call both processes make into the QUIC binding during the
 * ping-pong and prints, per side, the calls per round trip and their cost (`bindingCalls.ts`).
 */
import { Certificates, DatagramSize, QuicTransport, type TransportConnection } from '@mycorrizal/nodosum'
import * as Effect from 'effect/Effect'
import { type ChildProcess, fork } from 'node:child_process'
import { once } from 'node:events'
import { createServer, connect as tcpConnect } from 'node:net'
import { type CallTimes, describeCallTimes, timeBindingCalls } from './bindingCalls.js'
import { sockets, windows } from './node.js'
import { percentile, printResult } from './report.js'

const seconds = Number(process.env['BENCH_SECONDS'] ?? 3)
const rounds = Number(process.env['BENCH_ROUNDS'] ?? 5000)
const WARMUP_MS = 500
const CHUNK = 64 * 1024
/** Ping-pong round trips before the measured ones. */
const PING_WARMUP = 500

type Mode = { readonly kind: 'quic-sink'; readonly datagram: number } | { readonly kind: 'quic-echo'; readonly datagram: number } | { readonly kind: 'tcp-sink' } | { readonly kind: 'tcp-echo' }

/** Time the binding's calls of the ping-pong (wrapped in its two processes only, so the throughput runs stay as they are). */
const BINDING_TIMES = process.env['BENCH_BINDING_TIMES'] === '1'

const identity = () => Effect.runPromise(Certificates.createSelfSigned('bench'))
const reply = (value: unknown) => process.send!(value)

/** Counts bytes; reports MB/s over `seconds` after the warm-up, from the first byte on. */
const meter = () => {
  let total = 0
  let firstAt = 0
  let startBytes = 0
  let measuring = false
  let done = false
  return (n: number) => {
    if (done) return
    const now = performance.now()
    if (firstAt === 0) firstAt = now
    total += n
    if (!measuring && now - firstAt >= WARMUP_MS) {
      measuring = true
      startBytes = total
      firstAt = now
    } else if (measuring && now - firstAt >= seconds * 1000) {
      done = true
      reply({ mb_s: (total - startBytes) / 1e6 / ((now - firstAt) / 1000) })
      // leave on our own (a profile, when asked for, is written at a normal exit)
      setTimeout(() => process.exit(0), 200)
    }
  }
}

/** The receiving process. */
const receiver = async (mode: Mode) => {
  if (mode.kind === 'tcp-sink' || mode.kind === 'tcp-echo') {
    const count = meter()
    const server = createServer((socket) => {
      socket.setNoDelay(true)
      socket.on('data', (d) => (mode.kind === 'tcp-echo' ? socket.write(d) : count(d.byteLength)))
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    reply({ port: (server.address() as { port: number }).port })
    return
  }
  const tls = await identity()
  const program = Effect.gen(function* () {
    const transport = yield* QuicTransport.make({ host: '127.0.0.1', port: 0, datagramSize: mode.datagram, tls: { ...tls, ca: undefined }, ...windows, ...sockets })
    const bindingTimes = BINDING_TIMES && mode.kind === 'quic-echo' ? timeBindingCalls() : undefined
    reply({ port: transport.address.port })
    if (bindingTimes !== undefined) process.on('message', (m) => m === 'binding-times' && reply({ bindingTimes: bindingTimes() }))
    const connection = yield* transport.accept
    const count = meter()
    connection.setHandler({
      onStream: (s) => s.setHandler({ onData: (chunk) => (mode.kind === 'quic-echo' ? s.write(chunk) : count(chunk.byteLength)) })
    })
    yield* Effect.never
  })
  Effect.runFork(Effect.scoped(program))
}

const child = async (mode: Mode): Promise<{ proc: ChildProcess; port: number; result: Promise<number> }> => {
  const profile = process.env['BENCH_PROFILE_DIR']
  const execArgv = profile === undefined ? process.execArgv : [...process.execArgv, '--cpu-prof', `--cpu-prof-dir=${profile}`]
  const proc = fork(new URL(import.meta.url).pathname, ['receiver', JSON.stringify(mode)], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const port = await new Promise<number>((resolve) => proc.once('message', (m: { port: number }) => resolve(m.port)))
  const result = new Promise<number>((resolve) => proc.once('message', (m: { mb_s: number }) => resolve(m.mb_s)))
  return { proc, port, result }
}

/** Parent side of a throughput run over QUIC: write until the receiver reports. */
const quicThroughput = async (datagram: number): Promise<number> => {
  const { proc, port, result } = await child({ kind: 'quic-sink', datagram })
  const tls = await identity()
  const mbs = await Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const transport = yield* QuicTransport.make({ host: '127.0.0.1', port: 0, datagramSize: datagram, tls: { ...tls, ca: undefined }, ...windows, ...sockets })
        const connection: TransportConnection = yield* transport.connect({ host: '127.0.0.1', port })
        const payload = new Uint8Array(CHUNK).fill(7)
        let finished = false
        const stream = connection.openStream({ onData: () => {}, onDrain: () => pump() })
        const pump = () => {
          while (!finished && stream.write(payload)) {
            // keep writing until the transport asks to wait
          }
        }
        pump()
        const value = yield* Effect.promise(() => result)
        finished = true
        return value
      })
    )
  )
  proc.kill()
  return mbs
}

const tcpThroughput = async (): Promise<number> => {
  const { proc, port, result } = await child({ kind: 'tcp-sink' })
  const socket = tcpConnect(port, '127.0.0.1')
  await once(socket, 'connect')
  const payload = Buffer.alloc(CHUNK, 7)
  let finished = false
  const pump = () => {
    while (!finished) {
      if (!socket.write(payload)) {
        socket.once('drain', pump)
        return
      }
    }
  }
  pump()
  const mbs = await result
  finished = true
  socket.destroy()
  proc.kill()
  return mbs
}

/** Ping-pong of 100-byte messages; round-trip times in microseconds. */
const pingPong = (send: (m: Uint8Array) => void, onReply: (cb: (n: number) => void) => void): Promise<Array<number>> =>
  new Promise((resolve) => {
    const samples: Array<number> = []
    const message = new Uint8Array(100).fill(1)
    let got = 0
    let i = 0
    let sentAt = performance.now()
    onReply((n) => {
      got += n
      if (got < 100) return
      got -= 100
      samples.push((performance.now() - sentAt) * 1000)
      if (++i >= rounds + PING_WARMUP) return resolve(samples.slice(PING_WARMUP))
      sentAt = performance.now()
      send(message)
    })
    send(message)
  })

const quicRtt = async (): Promise<Array<number>> => {
  const { proc, port } = await child({ kind: 'quic-echo', datagram: DatagramSize.lan })
  const tls = await identity()
  const samples = await Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const transport = yield* QuicTransport.make({ host: '127.0.0.1', port: 0, datagramSize: DatagramSize.lan, tls: { ...tls, ca: undefined }, ...windows, ...sockets })
        const connection = yield* transport.connect({ host: '127.0.0.1', port })
        let handler: (n: number) => void = () => {}
        const stream = connection.openStream({ onData: (chunk) => handler(chunk.byteLength) })
        // both sides count from here (the handshake left out)
        const bindingTimes = BINDING_TIMES ? timeBindingCalls() : undefined
        if (bindingTimes !== undefined) yield* Effect.promise(() => childTimes(proc))
        const samples = yield* Effect.promise(() =>
          pingPong(
            (m) => stream.write(m),
            (cb) => (handler = cb)
          )
        )
        if (bindingTimes !== undefined) {
          const roundTrips = rounds + PING_WARMUP
          console.log(describeCallTimes('quic ping-pong, sender', bindingTimes(), roundTrips))
          console.log(describeCallTimes('quic ping-pong, echo', yield* Effect.promise(() => childTimes(proc)), roundTrips))
        }
        return samples
      })
    )
  )
  proc.kill()
  return samples
}

/** The echo process's binding call times so far (it starts again from zero). */
const childTimes = (proc: ChildProcess): Promise<CallTimes> =>
  new Promise((resolve) => {
    const onMessage = (m: { bindingTimes?: CallTimes }) => {
      if (m.bindingTimes === undefined) return
      proc.off('message', onMessage)
      resolve(m.bindingTimes)
    }
    proc.on('message', onMessage)
    proc.send('binding-times')
  })

const tcpRtt = async (): Promise<Array<number>> => {
  const { proc, port } = await child({ kind: 'tcp-echo' })
  const socket = tcpConnect(port, '127.0.0.1')
  socket.setNoDelay(true)
  await once(socket, 'connect')
  const samples = await pingPong(
    (m) => socket.write(m),
    (cb) => socket.on('data', (d) => cb(d.byteLength))
  )
  socket.destroy()
  proc.kill()
  return samples
}

const main = async () => {
  const tcp = await tcpThroughput()
  console.log(`tcp: ${tcp.toFixed(1)} MB/s (two processes, loopback)`)
  const result: Record<string, unknown> = {}
  const only = process.env['BENCH_ONLY']?.split(',')
  for (const [name, datagram] of [
    ['lan', DatagramSize.lan],
    ['jumbo', DatagramSize.jumbo],
    ['loopback', 16_384]
  ] as const) {
    if (only !== undefined && !only.includes(name)) continue
    const mbs = await quicThroughput(datagram)
    console.log(`quic ${name} (${datagram} B datagrams): ${mbs.toFixed(1)} MB/s, ${(mbs / tcp).toFixed(3)} of TCP`)
    result[name] = { datagram, mb_s: Number(mbs.toFixed(1)), ratio_tcp: Number((mbs / tcp).toFixed(3)) }
  }
  const quic = await quicRtt()
  const tcpSamples = await tcpRtt()
  result['rtt'] = {
    p50_us: Math.round(percentile(quic, 0.5)),
    p99_us: Math.round(percentile(quic, 0.99)),
    tcp_p50_us: Math.round(percentile(tcpSamples, 0.5)),
    tcp_p99_us: Math.round(percentile(tcpSamples, 0.99))
  }
  console.log(`rtt (100 B ping-pong, ${rounds} rounds): quic p50 ${percentile(quic, 0.5).toFixed(0)} us p99 ${percentile(quic, 0.99).toFixed(0)} us; tcp p50 ${percentile(tcpSamples, 0.5).toFixed(0)} us p99 ${percentile(tcpSamples, 0.99).toFixed(0)} us`)
  printResult(result)
  process.exit(0)
}

if (process.argv[2] === 'receiver') await receiver(JSON.parse(process.argv[3]!) as Mode)
else await main()
