import { describe, expect, it } from '@effect/vitest'
import { CacheMessage, ControlMessage, Decoder, Frame, StreamInit, SystemMessage, TopicMessage, WireError } from '../src/index.js'

/** Seeded xorshift PRNG: the same inputs on every run. */
const rng = (seed: number) => {
  let x = seed >>> 0 || 1
  return (n: number) => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return (x >>> 0) % n
  }
}

const MAX = 64 * 1024
const LIMIT = MAX + StreamInit.MAX_ENCODED_LENGTH

/** Valid streams to mutate. */
const seeds = (rand: (n: number) => number): Array<Uint8Array> =>
  Array.from({ length: 64 }, (_, i) => {
    const init = StreamInit.encode({ appId: `app-${i}`, streamName: i % 3 === 0 ? '' : `bucket:${'x'.repeat(rand(40))}` })
    const payloads = Array.from({ length: rand(6) }, () => {
      const p = new Uint8Array(rand(5) === 0 ? rand(MAX) : rand(300))
      for (let j = 0; j < p.length; j += 97) p[j] = rand(256)
      return p
    })
    return new Uint8Array(Buffer.concat([init, Frame.encodeMessages(payloads)]))
  })

const mutate = (input: Uint8Array, rand: (n: number) => number, pool: ReadonlyArray<Uint8Array>): Uint8Array => {
  const bytes = new Uint8Array(input)
  switch (rand(8)) {
    case 0: // bit flips
      for (let i = 0, n = 1 + rand(8); i < n && bytes.length > 0; i++) bytes[rand(bytes.length)]! ^= 1 << rand(8)
      return bytes
    case 1: // truncation
      return bytes.subarray(0, rand(bytes.length + 1))
    case 2: // a random length header somewhere
      if (bytes.length >= 4) {
        const at = rand(bytes.length - 3)
        const v = rand(4) === 0 ? 0xffffffff : rand(4) === 0 ? MAX + 1 + rand(1000) : rand(MAX * 2)
        new DataView(bytes.buffer, bytes.byteOffset).setUint32(at, v >>> 0)
      }
      return bytes
    case 3: // splice two streams
      return new Uint8Array(Buffer.concat([bytes.subarray(0, rand(bytes.length + 1)), pool[rand(pool.length)]!.subarray(rand(50))]))
    case 4: // random bytes
      return Uint8Array.from({ length: rand(600) }, () => rand(256))
    case 5: // overwrite a run of bytes
      for (let i = rand(bytes.length + 1), n = rand(32); n > 0 && i < bytes.length; n--, i++) bytes[i] = rand(256)
      return bytes
    case 6: // duplicate a segment
      if (bytes.length > 1) {
        const a = rand(bytes.length)
        const b = a + rand(bytes.length - a)
        return new Uint8Array(Buffer.concat([bytes.subarray(0, b), bytes.subarray(a, b), bytes.subarray(b)]))
      }
      return bytes
    default: // the valid stream itself
      return bytes
  }
}


/** Feeds 100,000 random and mutated messages to a decoder: it may only throw WireError. */
const fuzzMessages = (seed: number, valid: Array<Uint8Array>, decode: (bytes: Uint8Array) => unknown) => {
  const rand = rng(seed)
  let errors = 0
  let decoded = 0
  for (let run = 0; run < 100_000; run++) {
    const input = mutate(valid[rand(valid.length)]!, rand, valid)
    try {
      decode(input)
      decoded++
    } catch (e) {
      if (!(e instanceof WireError)) throw e
      errors++
    }
  }
  expect(errors).toBeGreaterThan(10_000)
  expect(decoded).toBeGreaterThan(1_000)
}

describe('fuzz', () => {
  it('the decoder takes 100,000 random and mutated streams in random chunks: only WireError, bounded buffering, always returns', () => {
    const rand = rng(0x5eed)
    const pool = seeds(rand)
    let errors = 0
    let clean = 0
    let messages = 0
    const sink: Decoder.Sink = { onStreamInit: () => {}, onMessage: () => void messages++ }
    for (let run = 0; run < 100_000; run++) {
      const input = mutate(pool[rand(pool.length)]!, rand, pool)
      const decoder = Decoder.make({ maxMessageSize: MAX, streamInit: rand(10) !== 0 })
      try {
        let pos = 0
        // every push consumes at least one byte: at most input.length pushes
        while (pos < input.length) {
          const n = 1 + rand(rand(4) === 0 ? 8 : 4096)
          decoder.push(input.subarray(pos, pos + n), sink)
          pos += n
          if (decoder.bufferedBytes > LIMIT) throw new Error(`buffered ${decoder.bufferedBytes} bytes, over the limit ${LIMIT}`)
          // memory follows the bytes that arrived, not the length headers
          if (decoder.reservedBytes > Math.max(Decoder.INITIAL_BODY_BYTES, 2 * decoder.bufferedBytes)) {
            throw new Error(`reserved ${decoder.reservedBytes} bytes for ${decoder.bufferedBytes} received`)
          }
        }
        decoder.end()
        clean++
      } catch (e) {
        if (!(e instanceof WireError)) throw e
        errors++
      }
    }
    // the mix exercises both outcomes
    expect(errors).toBeGreaterThan(10_000)
    expect(clean).toBeGreaterThan(10_000)
    expect(messages).toBeGreaterThan(10_000)
  }, 120_000)

  it('the control message decoder takes 100,000 random and mutated inputs: only WireError', () => {
    const valid: Array<Uint8Array> = [
      ControlMessage.encode({
        _tag: 'Hello',
        protocolVersion: 1,
        clusterId: 'cluster',
        nodeId: 'node-a',
        instanceId: 'abcd',
        host: '10.0.0.1',
        port: 7001,
        authMode: 'secret',
        nonce: new Uint8Array(32)
      }),
      ControlMessage.encode({ _tag: 'Auth', proof: new Uint8Array(32).fill(1) }),
      ControlMessage.encode({ _tag: 'Refuse', reason: 'BadSecret', message: 'no' }),
      ControlMessage.encode({ _tag: 'Challenge', nonce: new Uint8Array(32).fill(2) }),
      ControlMessage.encode({ _tag: 'Members', members: [{ nodeId: 'a', instanceId: 'b', host: 'c', port: 1 }, { nodeId: 'd', instanceId: 'e', host: 'f', port: 2 }] }),
      ControlMessage.encode({ _tag: 'Leave' }),
      ControlMessage.encode({ _tag: 'Ping', seq: 9, sentAt: 123.5 })
    ]
    fuzzMessages(0xc0de, valid, ControlMessage.decode)
  }, 120_000)
})

describe('fuzz: cache messages', () => {
  it('the cache message decoder takes 100,000 random and mutated inputs: only WireError', () => {
    const valid: Array<Uint8Array> = [
      CacheMessage.encode({ _tag: 'Put', id: 1, key: 'sess:1', value: new Uint8Array(40).fill(3), ts: 17e11, node: 'n1', ttlMs: 1000, ack: true }),
      CacheMessage.encode({ _tag: 'Delete', id: 2, key: 'sess:1', ts: 17e11, node: 'n1', ttlMs: 0, ack: false }),
      CacheMessage.encode({ _tag: 'Ack', id: 3, status: 1 }),
      CacheMessage.encode({ _tag: 'Get', id: 4, key: 'user:9' }),
      CacheMessage.encode({ _tag: 'GetResponse', id: 5, status: 0, value: new Uint8Array(20), ts: 1, node: 'n2' }),
      CacheMessage.encode({ _tag: 'Handoff', entries: [{ key: 'a', tombstone: false, value: new Uint8Array(5), ts: 1, node: 'x', ttlLeftMs: 9 }] }),
      CacheMessage.encode({ _tag: 'HandoffDone', epoch: 1 }),
      CacheMessage.encode({ _tag: 'BucketInfo', ttlMs: 5, maxSize: 6, replicas: 2 }),
      CacheMessage.encode({ _tag: 'Atomic', id: 6, op: 1, key: 'c', origin: 'n1', seq: 7, hasExpected: true, expected: new Uint8Array(3), value: new Uint8Array(4), delta: 0, ttlMs: 9 }),
      CacheMessage.encode({ _tag: 'AtomicResponse', id: 6, status: 0, result: 12 }),
      CacheMessage.encode({ _tag: 'AtomicOps', key: 'c', ops: [{ origin: 'n1', seq: 7, result: 12 }], final: true }),
      CacheMessage.encode({ _tag: 'AtomicFetch', id: 8, key: 'c' }),
      CacheMessage.encode({ _tag: 'NearGet', id: 9, key: 'user:9', ttlMs: 1000 }),
      CacheMessage.encode({ _tag: 'NearInvalidate', key: 'user:9', ts: 17e11, node: 'n1' }),
      CacheMessage.encode({ _tag: 'NearUpdate', key: 'user:9', value: new Uint8Array(30).fill(5), ts: 17e11, node: 'n1' })
    ]
    fuzzMessages(0xcace, valid, CacheMessage.decode)
  }, 120_000)

  it('decodeEach takes 100,000 random and mutated envelopes: it never throws, and reports what it refuses as WireError', () => {
    const w = new SystemMessage.Writer()
    const messages: Array<CacheMessage.CacheMessage> = [
      { _tag: 'Get', id: 4, key: 'user:9' },
      { _tag: 'Ack', id: 3, status: 1 },
      { _tag: 'Put', id: 1, key: 'sess:1', value: new Uint8Array(40).fill(3), ts: 17e11, node: 'n1', ttlMs: 1000, ack: true },
      { _tag: 'NearInvalidate', key: 'user:9', ts: 17e11, node: 'n1' },
      { _tag: 'NearUpdate', key: 'user:9', value: new Uint8Array(30).fill(5), ts: 17e11, node: 'n1' }
    ]
    CacheMessage.encodeBatch(w, messages, 0, 1 << 20, () => {})
    const valid = [w.finish().slice(), CacheMessage.encode(messages[0]!)]
    const rand = rng(0xba7c4)
    let refused = 0
    let handed = 0
    for (let run = 0; run < 100_000; run++) {
      CacheMessage.decodeEach(
        mutate(valid[rand(valid.length)]!, rand, valid),
        () => void handed++,
        (e) => {
          if (!(e instanceof WireError)) throw e
          refused++
        }
      )
    }
    expect(refused).toBeGreaterThan(10_000)
    expect(handed).toBeGreaterThan(1_000)
  }, 120_000)
})

describe('fuzz: topic messages', () => {
  it('the topic message decoder takes 100,000 random and mutated inputs: only WireError', () => {
    const valid: Array<Uint8Array> = [
      TopicMessage.encode({ _tag: 'Interest', epoch: 3, seq: 1, topics: ['orders', 'invalidations'] }),
      TopicMessage.encode({ _tag: 'InterestAck', epoch: 3, seq: 1 }),
      TopicMessage.encode({ _tag: 'Publish', seq: 2, payload: new Uint8Array(30).fill(4) }),
      TopicMessage.encode({ _tag: 'Delivered', topic: 'orders', seq: 2 })
    ]
    fuzzMessages(0x70b1c, valid, TopicMessage.decode)
  }, 120_000)
})
