/**
 * The order in which one turn of a QUIC connection reads its streams, on a scripted quiche
 * connection (no sockets, no clock): a small message that arrived in the same burst as a bulk
 * stream's bytes is delivered, and its answer sent, before the bulk stream is read past one
 * small read.
 */
import { describe, expect, it } from 'vitest'
import type { ConnectionHost } from '../src/internal/quic/connection.js'
import { QuicConnection } from '../src/internal/quic/connection.js'
import { defaultLimits } from '../src/TransportConfig.js'

/** The first read of each stream in a turn (`FIRST_READ`) and a stream's budget per turn (`READ_BUDGET`). */
const FIRST_READ = 16 * 1024
const READ_BUDGET = 256 * 1024
const BULK = 0
const SMALL = 4

/** A quiche connection holding `pending` bytes per stream, recording what the driver does. */
const scripted = (pending: Map<number, number>, readableOrder: ReadonlyArray<number>) => {
  const log: Array<string> = []
  /** Calls that only ask quiche which streams have bytes. */
  const asked = { readable: 0, isReadable: 0, streamReadable: 0 }
  let datagrams = 0
  const qc = {
    isEstablished: () => true,
    recv: (data: Uint8Array) => data.byteLength,
    readable: () => {
      asked.readable++
      return readableOrder.filter((id) => (pending.get(id) ?? 0) > 0)
    },
    isReadable: () => {
      asked.isReadable++
      return readableOrder.some((id) => (pending.get(id) ?? 0) > 0)
    },
    streamReadable: (id: number) => {
      asked.streamReadable++
      return (pending.get(id) ?? 0) > 0
    },
    streamRecv: (id: number, buf: Uint8Array): [number, boolean] | null => {
      const left = pending.get(id) ?? 0
      if (left === 0) return null
      const n = Math.min(left, buf.byteLength)
      pending.set(id, left - n)
      log.push(`read ${id} ${n}`)
      return [n, false]
    },
    streamSend: (id: number, chunk: Uint8Array) => {
      log.push(`write ${id} ${chunk.byteLength}`)
      datagrams++
      return chunk.byteLength
    },
    streamCapacity: () => 1 << 20,
    streamPriority: () => undefined,
    send: (): [number, object] | null => {
      if (datagrams === 0) return null
      datagrams--
      log.push('send')
      return [1, {}]
    },
    isClosed: () => false,
    timeout: () => null
  }
  let dirty = 0
  const host: ConnectionHost = {
    localHost: { host: '127.0.0.1', port: 1 },
    address: { host: '127.0.0.1', port: 1 },
    options: { limits: defaultLimits, handshakeTimeoutMs: 1_000 },
    readBuf: Buffer.alloc(64 * 1024),
    scratch: Buffer.alloc(1500),
    connectionId: () => 'c1',
    // as the endpoint does: the connection is marked, and flushed once at the end of the turn
    markDirty: (c) => {
      c.dirty = true
      dirty++
    },
    sendDatagram: () => {},
    unregister: () => {},
    handshakeStarted: () => {},
    handshakeEnded: () => {},
    onAccept: () => {},
    onError: (e) => {
      throw e
    }
  }
  const connection = new QuicConnection(host, qc as never, false, new Uint8Array(20), { host: '127.0.0.1', port: 2 })
  /** One event-loop turn: a datagram arrives (the bytes set in `pending`), then the flush, as the endpoint runs it. */
  const turn = () => {
    connection.recv(Buffer.alloc(1200), { address: '127.0.0.1', port: 2, family: 'IPv4', size: 1200 })
    dirty = 0
    connection.dirty = false
    connection.flush()
  }
  return { connection, turn, log, asked, dirty: () => dirty }
}

/** `n` streams of the peer's (ids 0, 4, 8, ...), each with a 100-byte message, quiche listing them in id order. */
const peerStreams = (n: number) => {
  const ids = Array.from({ length: n }, (_, i) => i * 4)
  const pending = new Map(ids.map((id) => [id, 100]))
  return { ids, pending, ...scripted(pending, ids) }
}

/** Bytes of `id` read before the first line matching `until`. */
const readBefore = (log: ReadonlyArray<string>, id: number, until: (line: string) => boolean) => {
  let bytes = 0
  for (const line of log) {
    if (until(line)) return bytes
    const [what, of, n] = line.split(' ')
    if (what === 'read' && Number(of) === id) bytes += Number(n)
  }
  throw new Error(`no line matched in ${log.join(', ')}`)
}

describe('QUIC read order in one turn', () => {
  it('a small message and its answer go before the bulk stream is read past one small read', () => {
    const pending = new Map([
      [BULK, 4 * 1024 * 1024],
      [SMALL, 100]
    ])
    // quiche lists the bulk stream first
    const { connection, turn, log, dirty } = scripted(pending, [BULK, SMALL])
    connection.setHandler({
      onStream: (s) =>
        s.setHandler({
          onData: (chunk) => {
            // the small stream answers at once, as a request handler does
            if (s.id === SMALL && chunk.byteLength === 100) s.write(new Uint8Array(100))
          }
        })
    })
    turn()
    // delivered (and answered) with at most one small read of bulk before it
    expect(readBefore(log, BULK, (l) => l === `write ${SMALL} 100`)).toBeLessThanOrEqual(FIRST_READ)
    // the answer left before the bulk stream's second read
    expect(readBefore(log, BULK, (l) => l === 'send')).toBeLessThanOrEqual(FIRST_READ)
    // the bulk stream still got its budget this turn, and the connection comes back for the rest
    expect(4 * 1024 * 1024 - pending.get(BULK)!).toBe(READ_BUDGET)
    expect(dirty()).toBeGreaterThan(0)
  })

  it('an urgent stream is read before a less urgent one quiche lists first', () => {
    const pending = new Map([
      [BULK, 64 * 1024],
      [SMALL, 100]
    ])
    const { connection, turn, log } = scripted(pending, [BULK, SMALL])
    const seen: Array<number> = []
    connection.setHandler({
      onStream: (s) => {
        // the application sets priorities as it accepts a stream: small at 0, bulk at 7
        s.setPriority({ urgency: s.id === SMALL ? 0 : 7, incremental: true })
        s.setHandler({ onData: () => seen.push(s.id) })
      }
    })
    // first turn: the streams appear (in quiche's order) and get their priorities
    turn()
    log.length = 0
    seen.length = 0
    pending.set(BULK, 64 * 1024)
    pending.set(SMALL, 100)
    turn()
    expect(seen[0]).toBe(SMALL)
    expect(readBefore(log, BULK, (l) => l === `read ${SMALL} 100`)).toBe(0)
  })

  it('a stream the peer opened behind one with no bytes yet is read in the same turn as the known ones', () => {
    const pending = new Map([[BULK, 100]])
    const { connection, turn } = scripted(pending, [BULK, SMALL, 8, 12, 16])
    const seen: Array<number> = []
    connection.setHandler({ onStream: (s) => s.setHandler({ onData: () => seen.push(s.id) }) })
    turn()
    expect(seen).toEqual([BULK])
    // stream 4 is open (nothing to read yet), stream 8 has bytes, the known stream too
    pending.set(BULK, 100)
    pending.set(SMALL, 0)
    pending.set(8, 100)
    seen.length = 0
    turn()
    expect(seen.sort((a, b) => a - b)).toEqual([BULK, 8])
    // and a lone new stream past the gap is found as well
    pending.set(12, 0)
    pending.set(16, 100)
    seen.length = 0
    turn()
    expect(seen).toEqual([16])
  })

  it("a turn with one stream's message asks quiche about few of the known streams, and a pass after only this node's writes asks nothing", () => {
    // ten streams of the peer's, all with the same urgency; the handler answers every message
    const { ids, pending, connection, turn, asked } = peerStreams(10)
    const seen: Array<number> = []
    connection.setHandler({
      onStream: (s) =>
        s.setHandler({
          onData: (chunk) => {
            seen.push(s.id)
            s.write(new Uint8Array(chunk.byteLength))
          }
        })
    })
    turn()
    expect(seen.sort((a, b) => a - b)).toEqual(ids)
    // from now on only the last stream talks (a request and its answer per turn)
    const busy = ids[ids.length - 1]!
    for (let round = 0; round < 3; round++) {
      seen.length = 0
      pending.set(busy, 100)
      asked.readable = asked.isReadable = asked.streamReadable = 0
      turn()
      expect(seen).toEqual([busy])
      if (round === 0) continue
      // the stream read last is asked first; a drained stream ends the probing
      expect(asked.streamReadable).toBe(1)
      expect(asked.isReadable).toBe(2)
      expect(asked.readable).toBe(0)
      // the send pass runs receive again for the connection the answer dirtied: no packet came, nothing is asked
      connection.receive()
      expect(asked.streamReadable + asked.isReadable + asked.readable).toBe(3)
    }
  })

  it('with more streams than are worth probing, every readable one is read in a turn, the most urgent first', () => {
    // twenty streams of the peer's (past the sixteen probed one by one): quiche's iterator lists them
    const { ids, pending, connection, turn, asked } = peerStreams(20)
    const seen: Array<number> = []
    connection.setHandler({
      onStream: (s) => {
        // the last stream is the most urgent
        if (s.id === ids[ids.length - 1]) s.setPriority({ urgency: 0, incremental: true })
        s.setHandler({ onData: () => seen.push(s.id) })
      }
    })
    turn()
    expect(seen.sort((a, b) => a - b)).toEqual(ids)
    // every stream again, then three of them: each turn reads what quiche holds, the urgent one first
    for (const ready of [ids, [8, 40, ids[ids.length - 1]!]]) {
      seen.length = 0
      asked.readable = 0
      for (const id of ready) pending.set(id, 100)
      turn()
      expect(seen[0]).toBe(ids[ids.length - 1])
      expect([...seen].sort((a, b) => a - b)).toEqual([...ready].sort((a, b) => a - b))
      expect(asked.readable).toBeGreaterThan(0)
    }
  })
})
