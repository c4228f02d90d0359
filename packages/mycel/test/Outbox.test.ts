import { describe, expect, it } from '@effect/vitest'
import { CacheMessage } from '@mycorrizal/wire'
import { Outbox } from '../src/internal/outbox.js'

const get = (id: number): CacheMessage.CacheMessage => ({ _tag: 'Get', id, key: `k${id}` })

const recorder = (maxBytes: number) => {
  const sent: Array<{ bucket: string; to: string; messages: Array<CacheMessage.CacheMessage>; carried: ReadonlyArray<CacheMessage.CacheMessage>; bytes: number }> = []
  const unencodable: Array<CacheMessage.CacheMessage> = []
  const outbox = new Outbox(
    {
      send: (bucket, to, bytes, carried) => {
        const messages: Array<CacheMessage.CacheMessage> = []
        CacheMessage.decodeEach(bytes, (m) => messages.push(m), (e) => {
          throw e
        })
        sent.push({ bucket, to, messages, carried, bytes: bytes.byteLength })
      },
      unencodable: (_bucket, _to, message) => void unencodable.push(message)
    },
    maxBytes
  )
  return { outbox, sent, unencodable }
}

/** Resolves once the current turn (its ticks and microtasks) has run. */
const turnEnd = () => new Promise<void>((resolve) => setImmediate(resolve))

describe('Outbox', () => {
  it('gathers a turn per bucket and peer, in order, and sends once the turn\'s microtasks ran', async () => {
    const { outbox, sent } = recorder(1 << 20)
    for (let i = 0; i < 5; i++) outbox.add('b1', 'x', get(i))
    outbox.add('b1', 'y', get(10))
    outbox.add('b2', 'x', get(20))
    outbox.add('b1', 'x', get(5))
    expect(sent).toEqual([])
    expect(outbox.size).toBe(8)
    await turnEnd()
    expect(sent.map((s) => [s.bucket, s.to, s.messages.map((m) => (m as CacheMessage.Get).id)])).toEqual([
      ['b1', 'x', [0, 1, 2, 3, 4, 5]],
      ['b1', 'y', [10]],
      ['b2', 'x', [20]]
    ])
    for (const s of sent) expect(s.carried).toEqual(s.messages)
    expect(outbox.size).toBe(0)
  })

  it('flush sends at once; messages added while sending go to the next flush', async () => {
    const { outbox, sent } = recorder(1 << 20)
    outbox.add('b', 'x', get(1))
    outbox.flush()
    expect(sent.length).toBe(1)
    await turnEnd()
    expect(sent.length).toBe(1)
    outbox.add('b', 'x', get(2))
    await turnEnd()
    expect(sent.map((s) => s.messages.length)).toEqual([1, 1])
  })

  it('payloads stay within maxBytes; a message that cannot be encoded is reported and the rest go', async () => {
    const one = CacheMessage.encode(get(100)).length
    const { outbox, sent, unencodable } = recorder(CacheMessage.batchOverhead + 4 * (CacheMessage.batchEntryOverhead + one))
    const bad: CacheMessage.CacheMessage = { _tag: 'Get', id: 2 ** 33, key: 'x' }
    for (let i = 100; i < 110; i++) outbox.add('b', 'x', i === 103 ? bad : get(i))
    await turnEnd()
    expect(unencodable).toEqual([bad])
    expect(sent.map((s) => s.messages.map((m) => (m as CacheMessage.Get).id))).toEqual([
      [100, 101, 102, 104],
      [105, 106, 107, 108],
      [109]
    ])
    expect(sent.map((s) => s.carried.length)).toEqual([4, 4, 1])
  })

  it('messages added by microtasks several hops after the first go in the same payload', async () => {
    // an answer's acknowledgement is written at once; the caller's next request comes a few
    // promise hops later: both leave in one payload, before the turn ends
    const { outbox, sent } = recorder(1 << 20)
    queueMicrotask(() => {
      outbox.add('b', 'x', get(1))
      void Promise.resolve()
        .then(() => undefined)
        .then(() => undefined)
        .then(() => outbox.add('b', 'x', get(2)))
        .then(() => queueMicrotask(() => outbox.add('b', 'x', get(3))))
    })
    await turnEnd()
    expect(sent.map((s) => s.messages.map((m) => (m as CacheMessage.Get).id))).toEqual([[1, 2, 3]])
  })
})
