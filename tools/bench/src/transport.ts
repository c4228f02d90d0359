/**
 * Transport benchmark: one QUIC stream between two transports on loopback against Node
 * `net` TCP measured in the same run, plus a ping-pong of 100-byte messages.
 * Last line: {"lan":{...},"jumbo":{...},"loopback":{...},"rtt":{...}}
 */
import { Certificates, DatagramSize, QuicTransport, type TransportStream } from '@mycorrizal/nodosum'
import { Effect } from 'effect'
import { once } from 'node:events'
import { createServer, connect as tcpConnect, type Socket } from 'node:net'
import { percentile, printResult } from './report.js'

const seconds = Number(process.env['BENCH_SECONDS'] ?? 3)
const rounds = Number(process.env['BENCH_ROUNDS'] ?? 5000)
const CHUNK = 64 * 1024

const identity = await Effect.runPromise(Certificates.createSelfSigned('bench'))

/** Two QUIC transports with the given datagram size, connected, with one stream open. */
const quicPair = (datagramSize: number) =>
  Effect.gen(function* () {
    const make = () => QuicTransport.make({ host: '127.0.0.1', port: 0, datagramSize, tls: { cert: identity.cert, key: identity.key, ca: undefined } })
    const a = yield* make()
    const b = yield* make()
    const client = yield* a.connect(b.address)
    const server = yield* b.accept
    return { client, server }
  })

/** Streams bytes for `seconds` with backpressure; returns MB/s seen by the receiver. */
const quicThroughput = (datagramSize: number) =>
  Effect.scoped(
    Effect.gen(function* () {
      const { client, server } = yield* quicPair(datagramSize)
      let received = 0
      server.setHandler({ onStream: (s) => s.setHandler({ onData: (chunk) => (received += chunk.byteLength) }) })
      const payload = new Uint8Array(CHUNK).fill(7)
      return yield* Effect.promise(
        () =>
          new Promise<number>((resolve) => {
            let stream: TransportStream
            const started = performance.now()
            let startBytes = 0
            let warm = false
            const pump = () => {
              for (;;) {
                const now = performance.now()
                if (!warm && now - started > 300) {
                  warm = true
                  startBytes = received
                  measureStart = now
                }
                if (warm && now - measureStart > seconds * 1000) {
                  resolve(((received - startBytes) / 1e6) / ((now - measureStart) / 1000))
                  return
                }
                if (!stream.write(payload)) return
              }
            }
            let measureStart = started
            stream = client.openStream({ onData: () => {}, onDrain: pump })
            pump()
          })
      )
    })
  )

const tcpThroughput = async (): Promise<number> => {
  let received = 0
  const server = createServer((socket) => socket.on('data', (d) => (received += d.byteLength)))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  const socket = tcpConnect(port, '127.0.0.1')
  await once(socket, 'connect')
  const payload = Buffer.alloc(CHUNK, 7)
  const mbs = await new Promise<number>((resolve) => {
    const started = performance.now()
    let warm = false
    let measureStart = started
    let startBytes = 0
    const pump = () => {
      for (;;) {
        const now = performance.now()
        if (!warm && now - started > 300) {
          warm = true
          startBytes = received
          measureStart = now
        }
        if (warm && now - measureStart > seconds * 1000) {
          resolve(((received - startBytes) / 1e6) / ((now - measureStart) / 1000))
          return
        }
        if (!socket.write(payload)) {
          socket.once('drain', pump)
          return
        }
      }
    }
    pump()
  })
  socket.destroy()
  server.close()
  return mbs
}

/** Ping-pong of 100-byte messages; returns round-trip times in microseconds. */
const quicRtt = Effect.scoped(
  Effect.gen(function* () {
    const { client, server } = yield* quicPair(DatagramSize.lan)
    server.setHandler({ onStream: (s) => s.setHandler({ onData: (chunk) => s.write(chunk) }) })
    return yield* Effect.promise(
      () =>
        new Promise<Array<number>>((resolve) => {
          const samples: Array<number> = []
          const message = new Uint8Array(100).fill(1)
          let got = 0
          let sentAt = 0
          let i = 0
          const stream = client.openStream({
            onData: (chunk) => {
              got += chunk.byteLength
              if (got < 100) return
              got -= 100
              samples.push((performance.now() - sentAt) * 1000)
              if (++i >= rounds + 200) return resolve(samples.slice(200))
              sentAt = performance.now()
              stream.write(message)
            }
          })
          sentAt = performance.now()
          stream.write(message)
        })
    )
  })
)

const tcpRtt = async (): Promise<Array<number>> => {
  const server = createServer((socket) => {
    socket.setNoDelay(true)
    socket.on('data', (d) => socket.write(d))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const socket: Socket = tcpConnect((server.address() as { port: number }).port, '127.0.0.1')
  socket.setNoDelay(true)
  await once(socket, 'connect')
  const samples = await new Promise<Array<number>>((resolve) => {
    const out: Array<number> = []
    const message = Buffer.alloc(100, 1)
    let got = 0
    let i = 0
    let sentAt = performance.now()
    socket.on('data', (d) => {
      got += d.byteLength
      if (got < 100) return
      got -= 100
      out.push((performance.now() - sentAt) * 1000)
      if (++i >= rounds + 200) return resolve(out.slice(200))
      sentAt = performance.now()
      socket.write(message)
    })
    socket.write(message)
  })
  socket.destroy()
  server.close()
  return samples
}

const tcp = await tcpThroughput()
console.log(`tcp: ${tcp.toFixed(1)} MB/s`)
const result: Record<string, unknown> = {}
for (const [name, datagram] of [
  ['lan', DatagramSize.lan],
  ['jumbo', DatagramSize.jumbo],
  ['loopback', 16_384]
] as const) {
  const mbs = await Effect.runPromise(quicThroughput(datagram))
  console.log(`quic ${name} (${datagram} B datagrams): ${mbs.toFixed(1)} MB/s, ${(mbs / tcp).toFixed(3)} of TCP`)
  result[name] = { datagram, mb_s: Number(mbs.toFixed(1)), ratio_tcp: Number((mbs / tcp).toFixed(3)) }
}
const quic = await Effect.runPromise(quicRtt)
const tcpSamples = await tcpRtt()
result['rtt'] = {
  p50_us: Math.round(percentile(quic, 0.5)),
  p99_us: Math.round(percentile(quic, 0.99)),
  tcp_p50_us: Math.round(percentile(tcpSamples, 0.5)),
  tcp_p99_us: Math.round(percentile(tcpSamples, 0.99))
}
console.log(`rtt quic p50 ${percentile(quic, 0.5).toFixed(0)} us p99 ${percentile(quic, 0.99).toFixed(0)} us; tcp p50 ${percentile(tcpSamples, 0.5).toFixed(0)} us`)
printResult(result)
