/**
 * Memory of a node under 200 unauthenticated QUIC connections (issue #16, finding 3), measured
 * on a node in a child process (so the attacker's own connections do not count): 40 that never
 * finish the QUIC handshake (one Initial each, never answered), 80 that finish QUIC and say
 * nothing, 80 that send their Hello, never prove the secret and park 256 KiB each on streams of
 * their own. Reports the node's RSS and heap before, during and after; asserts only loose bounds
 * relative to the node's own baseline, and that every connection is closed by the limits
 * (`maxUnauthenticatedConnections`, `maxUnauthenticatedBytes`, the handshake timeout). A test,
 * not a bench script: the bound guards against a regression (a cap that stops capping) on every
 * run, and the printed numbers are the measurement.
 */
import { describe, expect, it } from '@effect/vitest'
import * as native from '@matrixai/quic/native/index.js'
import { Duration, Effect } from 'effect'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import dgram from 'node:dgram'
import { createRequire } from 'node:module'
import { createInterface } from 'node:readline'
import { IndependentPeer, selfSigned } from './peer.js'

const quiche = native.quiche
const secret = 'hostile-test-secret-of-at-least-32-characters'
const clusterId = 'hostile-test'
const MiB = 1024 * 1024
const CAP = 64

interface Sample {
  readonly rss: number
  readonly heapUsed: number
  readonly external: number
  readonly inProgress: number
  /** QUIC handshakes not finished (half-open), and Retry packets sent. */
  readonly quicInProgress: number
  readonly retriesSent: number
  readonly failures: Record<string, number>
}

/** A node in a child process (`test/fixtures/node.ts`, with --expose-gc) and a `stats` query. */
const childNode = Effect.acquireRelease(
  Effect.async<{ address: { host: string; port: number }; stats: (gc?: boolean) => Promise<Sample>; child: ReturnType<typeof spawn> }>((resume) => {
    const tsx = createRequire(import.meta.url).resolve('tsx')
    const settings = {
      nodeId: 'target',
      host: '127.0.0.1',
      port: 0,
      clusterId,
      clusterSecret: secret,
      // one source address here: let its connections in, so the caps after TLS are what is measured
      transport: { maxUnauthenticatedConnections: CAP, maxNewConnectionsPerSource: 10_000 }
    }
    const child = spawn(process.execPath, ['--expose-gc', '--import', tsx, '--conditions=@mycorrizal/source', new URL('../fixtures/node.ts', import.meta.url).pathname], {
      env: { ...process.env, MYCORRIZAL_TEST_SETTINGS: JSON.stringify(settings) },
      stdio: ['pipe', 'pipe', 'ignore']
    })
    const waiting: Array<(s: Sample) => void> = []
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const e = JSON.parse(line) as { event: string; address?: { host: string; port: number }; memory?: NodeJS.MemoryUsage; stats?: { handshakesInProgress?: number; handshakeFailures: Record<string, number>; transport?: { handshakesInProgress: number; retriesSent: number } } }
      if (e.event === 'ready') {
        resume(
          Effect.succeed({
            address: e.address!,
            child,
            stats: (gc = false) =>
              new Promise<Sample>((resolve) => {
                waiting.push(resolve)
                child.stdin!.write(gc ? 'stats gc\n' : 'stats\n')
              })
          })
        )
      } else if (e.event === 'stats') {
        waiting.shift()?.({ rss: e.memory!.rss, heapUsed: e.memory!.heapUsed, external: e.memory!.external, inProgress: e.stats!.handshakesInProgress ?? 0,
          quicInProgress: e.stats!.transport?.handshakesInProgress ?? 0,
          retriesSent: e.stats!.transport?.retriesSent ?? 0,
          failures: e.stats!.handshakeFailures
        })
      }
    })
  }),
  ({ child }) =>
    Effect.async<void>((resume) => {
      if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
      const kill = setTimeout(() => child.kill('SIGKILL'), 10_000)
      child.once('exit', () => {
        clearTimeout(kill)
        resume(Effect.void)
      })
      child.kill('SIGTERM')
    })
)

/** `n` Initial packets of fresh client connections from one socket, never answered. */
const initials = (target: { host: string; port: number }, n: number) =>
  Effect.acquireRelease(
    Effect.async<dgram.Socket>((resume) => {
      const s = dgram.createSocket('udp4')
      s.bind(0, '127.0.0.1', () => resume(Effect.succeed(s)))
    }),
    (s) =>
      Effect.async<void>((resume) => {
        s.close(() => resume(Effect.void))
      })
  ).pipe(
    Effect.tap((socket) =>
      Effect.sync(() => {
        const config = new quiche.Config()
        config.verifyPeer(false)
        config.setApplicationProtos(['mycorrizal/1'])
        const local = { host: '127.0.0.1', port: socket.address().port }
        const buf = Buffer.alloc(1500)
        for (let i = 0; i < n; i++) {
          const r = quiche.Connection.connect(null, randomBytes(20), local, target, config).send(buf)
          if (r !== null) socket.send(buf.subarray(0, r[0]), target.port, target.host)
        }
      })
    )
  )

const mib = (n: number) => (n / MiB).toFixed(1)

describe('a node under 200 unauthenticated connections', () => {
  it.live(
    'RSS and heap stay near the baseline, every connection is closed by the caps, and memory returns after',
    () =>
      Effect.gen(function* () {
        const node = yield* childNode
        yield* Effect.sleep(Duration.millis(500))
        const before = yield* Effect.promise(() => node.stats(true))
        const tls = yield* Effect.promise(() => selfSigned('hostile'))
        const peers: Array<IndependentPeer> = []
        yield* Effect.addFinalizer(() => Effect.promise(() => Promise.all(peers.map((p) => p.stop()))))

        yield* initials(node.address, 40)
        for (let i = 0; i < 160; i++) {
          const hostile = i % 2 === 0 ? { mode: 'silent' as const } : { mode: 'stall' as const, parkBytes: 256 * 1024 }
          peers.push(yield* Effect.promise(() => IndependentPeer.open(node.address, { nodeId: `h${i}`, clusterId, secret: 'not-the-secret-but-32-characters-long', tls, hostile })))
        }
        // sample while they are open, until the node holds none of them (bounded: 60 s)
        const during: Array<Sample> = []
        const started = performance.now()
        for (;;) {
          const sample = yield* Effect.promise(() => node.stats())
          during.push(sample)
          // the node holds none of them: no cluster handshake, no QUIC handshake in progress
          const settled = sample.inProgress === 0 && sample.quicInProgress === 0
          if ((settled && during.length > 1) || performance.now() - started > 60_000) break
          yield* Effect.sleep(Duration.millis(200))
        }
        // the closes the node sent are on their way (bounded)
        for (let i = 0; i < 50 && peers.some((p) => p.isEstablished() && !p.isClosed()); i++) yield* Effect.sleep(Duration.millis(100))
        const established = peers.filter((p) => p.isEstablished()).length
        yield* Effect.sleep(Duration.millis(500))
        const after = yield* Effect.promise(() => node.stats(true))
        const peak = (k: 'rss' | 'heapUsed' | 'external') => Math.max(...during.map((s) => s[k]))
        const closedBy: Record<string, number> = {}
        for (const p of peers) {
          // not told: the node's QUIC handshake timeout dropped it silently (its Finished was lost, or it never finished)
          const key = p.log.closed === undefined ? 'dropped without a close' : `${p.log.closed.by} 0x${p.log.closed.code.toString(16)} ${p.log.closed.reason}`
          closedBy[key] = (closedBy[key] ?? 0) + 1
        }
        const report = {
          rssMiB: { before: mib(before.rss), peak: mib(peak('rss')), after: mib(after.rss) },
          heapUsedMiB: { before: mib(before.heapUsed), peak: mib(peak('heapUsed')), after: mib(after.heapUsed) },
          externalMiB: { before: mib(before.external), peak: mib(peak('external')), after: mib(after.external) },
          peakHandshakesInProgress: Math.max(...during.map((s) => s.inProgress)),
          peakQuicHandshakesInProgress: Math.max(...during.map((s) => s.quicInProgress)),
          retriesSent: after.retriesSent,
          established,
          closedBy,
          refusals: after.failures
        }
        console.log(JSON.stringify(report))
        console.log("DEBUG", JSON.stringify(peers.map((p) => p.log.control.map((m) => m.type).join(",") + "/" + p.log.closed?.reason)))

        // the node holds none of them any more, and every close a peer heard came from the node's caps
        expect(during.at(-1)).toMatchObject({ inProgress: 0, quicInProgress: 0 })
        const heard = peers.flatMap((p) => (p.log.closed === undefined ? [] : [p.log.closed]))
        // (a connection whose QUIC handshake the node gave up on is dropped without a close frame: allowed for a few)
        expect(heard.length).toBeGreaterThanOrEqual(Math.floor(0.9 * established))
        expect(heard.filter((c) => c.by !== 'peer' || (c.code !== 0x101 && c.code !== 0x110))).toEqual([])
        // closed by the caps: over maxUnauthenticatedConnections at once, past maxUnauthenticatedBytes, or at the handshake timeout
        expect(after.failures['UnauthenticatedLimit'] ?? 0).toBeGreaterThan(0)
        expect(after.failures['UnauthenticatedBytes'] ?? 0).toBeGreaterThan(0)
        expect(after.failures['HandshakeTimeout'] ?? 0).toBeGreaterThan(0)
        expect(Math.max(...during.map((s) => s.inProgress))).toBeLessThanOrEqual(CAP)
        expect(after.inProgress).toBe(0)
        // the never-finished QUIC handshakes: at most maxHandshakesPerSource (8) held unvalidated, the rest asked for a Retry
        expect(after.quicInProgress).toBe(0)
        expect(after.retriesSent).toBeGreaterThanOrEqual(32)
        // loose bounds relative to this node's own baseline (uncapped, 80 × 256 KiB parked alone would be 20 MiB)
        expect(peak('rss') - before.rss).toBeLessThan(Math.max(64 * MiB, before.rss / 2))
        expect(after.heapUsed).toBeLessThan(before.heapUsed * 1.5 + 4 * MiB)
      }).pipe(Effect.scoped),
    240_000
  )
})
