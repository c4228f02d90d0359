/**
 * The QUIC binding's cost per packet, against a UDP datagram. Two quiche connections of
 * `@matrixai/quic`'s `native` binding in this process (the calls the transport's driver makes,
 * `packages/nodosum/src/internal/quic`), exchanging 100-byte stream messages in ping-pong: each
 * side writes its message (`streamSend`), drains quiche's send queue (`send` until it says
 * done), the other side takes the datagram (`recv`) and reads the message (`streamRecv`).
 * Every call is timed, its cost per packet is the median over BENCH_ROUNDS rounds (default 7)
 * of BENCH_PACKETS packets each (default 20,000). Also timed: the calls of a turn that carry no
 * data (`isReadable`, `streamReadable`, `timeout`, `isClosed`: `small_call_us`, their mean).
 * The baseline, in the same run: a UDP datagram of the same size between two `node:dgram` sockets
 * on loopback in this process (send, then its 'message' event), per datagram.
 * Last line: {"packet_us","send_us","send_done_us","recv_us","stream_send_us","stream_recv_us",
 * "small_call_us","udp_datagram_us","ratio_udp"} (packet_us = send + recv of one packet,
 * ratio_udp = packet_us / udp_datagram_us).
 * What it answers: how much of a QUIC round trip between two nodes the binding itself costs, so
 * that a change of `@matrixai/quic` (or of the calls the driver makes per packet) is measured.
 * A hot loop: the figures are lower bounds; a node that wakes up for one packet pays more
 * (caches cold; docs/performance.md).
 */
import * as native from '@matrixai/quic/native/index.js'
import { Certificates } from '@mycorrizal/nodosum'
import * as Effect from 'effect/Effect'
import { randomBytes } from 'node:crypto'
import dgram from 'node:dgram'
import { percentile, printResult } from './report.js'

const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 7)
const PACKETS = Number(process.env['BENCH_PACKETS'] ?? 20_000)
const MESSAGE = new Uint8Array(104).fill(1)
const DATAGRAM = 1452
const CID_LEN = 20

const quiche = native.quiche
type Conn = native.Connection

const median = (xs: ReadonlyArray<number>): number => percentile(xs, 0.5)

/** A client and a server connection, handshake done, one stream (0) open. */
const pair = async () => {
  const tls = await Effect.runPromise(Certificates.createSelfSigned('bench'))
  const pem = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'))
  const config = () => {
    const c = quiche.Config.withBoringSslCtx(true, true, null, [pem(tls.key)], [pem(tls.cert)], 'ecdsa_secp256r1_sha256')
    c.setApplicationProtos(['mycorrizal/1'])
    c.setMaxIdleTimeout(60_000)
    c.setMaxSendUdpPayloadSize(DATAGRAM)
    c.setMaxRecvUdpPayloadSize(DATAGRAM)
    c.setInitialMaxData(64 * 1024 * 1024)
    c.setInitialMaxStreamDataBidiLocal(16 * 1024 * 1024)
    c.setInitialMaxStreamDataBidiRemote(16 * 1024 * 1024)
    c.setInitialMaxStreamsBidi(100)
    c.setDisableActiveMigration(true)
    c.grease(false)
    return c
  }
  const a = { host: '127.0.0.1', port: 40_001 }
  const b = { host: '127.0.0.1', port: 40_002 }
  const toServer = { from: a, to: b }
  const toClient = { from: b, to: a }
  const buf = Buffer.allocUnsafeSlow(DATAGRAM)
  const client = quiche.Connection.connect(null, randomBytes(CID_LEN), a, b, config())
  const first = client.send(buf)
  if (first === null) throw new Error('the client sent no Initial packet')
  const server = quiche.Connection.accept(randomBytes(CID_LEN), null, b, a, config())
  server.recv(buf.subarray(0, first[0]), toServer)
  const pump = (from: Conn, to: Conn, info: native.RecvInfo) => {
    for (let r = from.send(buf); r !== null; r = from.send(buf)) to.recv(buf.subarray(0, r[0]), info)
  }
  for (let i = 0; i < 10 && !(client.isEstablished() && server.isEstablished()); i++) {
    pump(server, client, toClient)
    pump(client, server, toServer)
  }
  if (!client.isEstablished() || !server.isEstablished()) throw new Error('no QUIC handshake between the two connections')
  return { client, server, toServer, toClient, buf }
}

/** One round of `PACKETS` packets; each call's time per packet (µs). */
const quicRound = (p: Awaited<ReturnType<typeof pair>>) => {
  const { client, server, toServer, toClient, buf } = p
  const readBuf = Buffer.allocUnsafeSlow(64 * 1024)
  const t = { send: 0, done: 0, recv: 0, streamSend: 0, streamRecv: 0, small: 0 }
  let packets = 0
  let small = 0
  const hop = (from: Conn, to: Conn, info: native.RecvInfo) => {
    let t0 = performance.now()
    from.streamSend(0, MESSAGE, false)
    t.streamSend += performance.now() - t0
    for (;;) {
      t0 = performance.now()
      const r = from.send(buf)
      const took = performance.now() - t0
      if (r === null) {
        t.done += took
        break
      }
      t.send += took
      packets++
      t0 = performance.now()
      to.recv(buf.subarray(0, r[0]), info)
      t.recv += performance.now() - t0
    }
    t0 = performance.now()
    to.isReadable()
    to.streamReadable(0)
    to.timeout()
    to.isClosed()
    t.small += performance.now() - t0
    small += 4
    t0 = performance.now()
    to.streamRecv(0, readBuf)
    t.streamRecv += performance.now() - t0
  }
  while (packets < PACKETS) {
    hop(client, server, toServer)
    hop(server, client, toClient)
  }
  const per = (ms: number) => (ms * 1000) / packets
  return { send: per(t.send), done: per(t.done), recv: per(t.recv), streamSend: per(t.streamSend), streamRecv: per(t.streamRecv), small: (t.small * 1000) / small }
}

/** µs per UDP datagram of `bytes` (the size of a QUIC packet here), sent and received on loopback within this process. */
const udpRound = async (bytes: number): Promise<number> => {
  const receiver = dgram.createSocket('udp4')
  const sender = dgram.createSocket('udp4')
  await new Promise<void>((resolve) => receiver.bind(0, '127.0.0.1', resolve))
  await new Promise<void>((resolve) => sender.bind(0, '127.0.0.1', resolve))
  const port = receiver.address().port
  const payload = Buffer.alloc(bytes, 1)
  // ping-pong of datagrams within the process: each one sent after the previous arrived (none dropped)
  const started = performance.now()
  await new Promise<void>((resolve) => {
    let got = 0
    receiver.on('message', () => {
      if (++got >= PACKETS) return resolve()
      sender.send(payload, port, '127.0.0.1')
    })
    sender.send(payload, port, '127.0.0.1')
  })
  const us = ((performance.now() - started) * 1000) / PACKETS
  receiver.close()
  sender.close()
  return us
}

const main = async () => {
  const p = await pair()
  // the size of a packet carrying one message (header, ACK and STREAM frames, AEAD tag)
  p.client.streamSend(0, MESSAGE, false)
  const r = p.client.send(p.buf)
  if (r === null) throw new Error('no packet for a stream message')
  p.server.recv(p.buf.subarray(0, r[0]), p.toServer)
  p.server.streamRecv(0, Buffer.allocUnsafeSlow(1024))
  const bytes = r[0]
  quicRound(p) // warm-up (JIT)
  await udpRound(bytes)
  const quic: Array<ReturnType<typeof quicRound>> = []
  const udp: Array<number> = []
  for (let i = 0; i < ROUNDS; i++) {
    quic.push(quicRound(p))
    udp.push(await udpRound(bytes))
  }
  const m = (k: keyof ReturnType<typeof quicRound>) => median(quic.map((q) => q[k]))
  const packet = median(quic.map((q) => q.send + q.recv))
  const udpUs = median(udp)
  console.log(`quic packet (${bytes} B, one 100-byte message): send ${m('send').toFixed(2)} us, recv ${m('recv').toFixed(2)} us, send when done ${m('done').toFixed(2)} us; streamSend ${m('streamSend').toFixed(2)} us, streamRecv ${m('streamRecv').toFixed(2)} us; a call without data ${m('small').toFixed(2)} us`)
  console.log(`udp datagram (${bytes} B, loopback, send to 'message'): ${udpUs.toFixed(2)} us; medians of ${ROUNDS} rounds of ${PACKETS} packets`)
  const r2 = (x: number) => Number(x.toFixed(2))
  printResult({
    packet_us: r2(packet),
    send_us: r2(m('send')),
    send_done_us: r2(m('done')),
    recv_us: r2(m('recv')),
    stream_send_us: r2(m('streamSend')),
    stream_recv_us: r2(m('streamRecv')),
    small_call_us: r2(m('small')),
    udp_datagram_us: r2(udpUs),
    ratio_udp: r2(packet / udpUs)
  })
}

await main()
