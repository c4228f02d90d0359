/**
 * `docs/protocol.md` §4 and §9 as test vectors: every control and cache message type, its
 * fields (byte fields as `{ "hex": … }`), the payload and the framed bytes, stored in
 * `vectors/messages.json`. The encoders must produce exactly the stored bytes and the decoders
 * must read them back to the stored fields, so the document's tables cannot drift from the
 * code. `WRITE_VECTORS=1 npx vitest run test/MessageVectors.test.ts` rewrites the file (only
 * after a deliberate protocol change).
 */
import { describe, expect, it } from '@effect/vitest'
import { CacheMessage, ControlMessage, Frame } from '@mycorrizal/wire'
import { readFileSync, writeFileSync } from 'node:fs'

const file = new URL('./vectors/messages.json', import.meta.url)

type Json = null | boolean | number | string | ReadonlyArray<Json> | { readonly [k: string]: Json }

/** Byte fields as `{ hex }`, everything else as is. */
const toJson = (v: unknown): Json => {
  if (v instanceof Uint8Array) return { hex: Buffer.from(v).toString('hex') }
  if (Array.isArray(v)) return v.map(toJson)
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toJson(x)]))
  return v as Json
}

const fromJson = (v: Json): unknown => {
  if (Array.isArray(v)) return v.map(fromJson)
  if (typeof v === 'object' && v !== null) {
    const o = v as { readonly [k: string]: Json }
    const keys = Object.keys(o)
    if (keys.length === 1 && keys[0] === 'hex' && typeof o['hex'] === 'string') return new Uint8Array(Buffer.from(o['hex'], 'hex'))
    return Object.fromEntries(keys.map((k) => [k, fromJson(o[k]!)]))
  }
  return v
}

const bytes = (h: string) => new Uint8Array(Buffer.from(h, 'hex'))

/** One example (or two, where a field changes the layout's length) of every message type. */
const control: ReadonlyArray<readonly [string, ControlMessage.ControlMessage]> = [
  [
    'Hello (secret mode)',
    { _tag: 'Hello', protocolVersion: 2, clusterId: 'mycorrizal', nodeId: 'node-a', instanceId: '0011223344556677', host: '10.0.0.1', port: 7001, authMode: 'secret', nonce: bytes('01'.repeat(32)) }
  ],
  [
    'Hello (tls mode, DNS host)',
    { _tag: 'Hello', protocolVersion: 2, clusterId: 'prod', nodeId: 'b', instanceId: 'ff', host: 'node-b.example', port: 65535, authMode: 'tls', nonce: bytes('02'.repeat(32)) }
  ],
  ['Auth (secret mode: HMAC-SHA256)', { _tag: 'Auth', proof: bytes('ab'.repeat(32)) }],
  ['Auth (tls mode: empty)', { _tag: 'Auth', proof: new Uint8Array(0) }],
  ['Refuse', { _tag: 'Refuse', reason: 'BadSecret', message: 'the proof does not verify' }],
  ['Challenge', { _tag: 'Challenge', nonce: bytes('03'.repeat(32)) }],
  [
    'Members',
    {
      _tag: 'Members',
      members: [
        { nodeId: 'node-a', instanceId: '0011223344556677', host: '10.0.0.1', port: 7001 },
        { nodeId: 'node-c', instanceId: 'c1', host: '::1', port: 7003 }
      ]
    }
  ],
  ['Members (empty)', { _tag: 'Members', members: [] }],
  ['Leave', { _tag: 'Leave' }],
  ['Ping', { _tag: 'Ping', seq: 7, sentAt: 1_764_547_200_000.5 }],
  ['Pong', { _tag: 'Pong', seq: 7, sentAt: 1_764_547_200_000.5 }]
]

const entry = { key: 'user:1', tombstone: false, value: bytes('7b7d'), ts: 1_764_547_200_123, node: 'node-a', ttlLeftMs: 60_000 }
const cache: ReadonlyArray<readonly [string, CacheMessage.CacheMessage]> = [
  ['Put', { _tag: 'Put', id: 1, key: 'user:1', value: bytes('68656c6c6f'), ts: 1_764_547_200_123, node: 'node-a', ttlMs: 0, ack: true }],
  ['Delete', { _tag: 'Delete', id: 2, key: 'user:1', ts: 1_764_547_200_124, node: 'node-a', ttlMs: 30_000, ack: false }],
  ['Ack', { _tag: 'Ack', id: 1, status: 0 }],
  ['Ack (version refused)', { _tag: 'Ack', id: 3, status: 3 }],
  ['Get', { _tag: 'Get', id: 4, key: 'user:1' }],
  ['GetResponse (hit)', { _tag: 'GetResponse', id: 4, status: 0, value: bytes('68656c6c6f'), ts: 1_764_547_200_123, node: 'node-a' }],
  ['GetResponse (miss)', { _tag: 'GetResponse', id: 5, status: 1, value: new Uint8Array(0), ts: 0, node: '' }],
  ['Handoff', { _tag: 'Handoff', entries: [entry, { ...entry, key: 'user:2', tombstone: true, value: new Uint8Array(0) }] }],
  ['HandoffDone', { _tag: 'HandoffDone', epoch: 9 }],
  ['BucketInfo', { _tag: 'BucketInfo', ttlMs: 3_600_000, maxSize: 10_000, replicas: 2 }],
  ['HandoffBatch', { _tag: 'HandoffBatch', id: 6, entries: [entry] }],
  ['AckOlder', { _tag: 'AckOlder', id: 1, ts: 1_764_547_200_999, node: 'node-b' }]
]

interface Vector {
  readonly name: string
  readonly message: Json
  /** The message payload: `[type u8][version u8][fields]`. */
  readonly payload: string
  /** The payload as it travels on its stream: `[u32 length][payload]`. */
  readonly framed: string
}

const vectorsOf = <M>(list: ReadonlyArray<readonly [string, M]>, encode: (m: M) => Uint8Array): Array<Vector> =>
  list.map(([name, message]) => {
    const payload = encode(message)
    return { name, message: toJson(message), payload: Buffer.from(payload).toString('hex'), framed: Buffer.from(Frame.encodeMessage(payload)).toString('hex') }
  })

const computed = {
  note: 'docs/protocol.md §4 (control, app SYSTEM-NODOSUM) and §9 (cache, app SYSTEM-MYCEL). Byte fields are {"hex": …}; integers big-endian; f64 IEEE-754 big-endian.',
  control: vectorsOf(control, ControlMessage.encode),
  cache: vectorsOf(cache, CacheMessage.encode)
}

if (process.env['WRITE_VECTORS'] === '1') writeFileSync(file, `${JSON.stringify(computed, null, 2)}\n`)
const stored = JSON.parse(readFileSync(file, 'utf8')) as { control: ReadonlyArray<Vector>; cache: ReadonlyArray<Vector> }

describe('message test vectors (vectors/messages.json)', () => {
  it('cover every control and cache message type', () => {
    const tags = (vs: ReadonlyArray<Vector>) => new Set(vs.map((v) => (v.message as { _tag: string })._tag))
    expect([...tags(stored.control)].sort()).toEqual(['Auth', 'Challenge', 'Hello', 'Leave', 'Members', 'Ping', 'Pong', 'Refuse'])
    expect([...tags(stored.cache)].sort()).toEqual(['Ack', 'AckOlder', 'BucketInfo', 'Delete', 'Get', 'GetResponse', 'Handoff', 'HandoffBatch', 'HandoffDone', 'Put'])
  })

  for (const [set, encode, decode] of [
    ['control', ControlMessage.encode, ControlMessage.decode],
    ['cache', CacheMessage.encode, CacheMessage.decode]
  ] as const) {
    it(`${set}: the encoder writes exactly the stored bytes, framed as stored, and the decoder reads them back`, () => {
      const vectors = stored[set]
      expect(vectors.length).toBeGreaterThan(0)
      for (const v of vectors) {
        const message = fromJson(v.message)
        const payload = (encode as (m: unknown) => Uint8Array)(message)
        expect(Buffer.from(payload).toString('hex'), v.name).toBe(v.payload)
        expect(Buffer.from(Frame.encodeMessage(payload)).toString('hex'), v.name).toBe(v.framed)
        expect(toJson(decode(bytes(v.payload))), v.name).toEqual(v.message)
        // the first two bytes are the type and the layout version 0x01
        expect(v.payload.slice(2, 4), v.name).toBe('01')
      }
    })
  }

  it('the stored file is what the code computes', () => {
    expect(stored).toEqual(JSON.parse(JSON.stringify(computed)))
  })
})
