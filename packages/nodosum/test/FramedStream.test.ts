import { describe, expect, it } from '@effect/vitest'
import { Frame } from '@mycorrizal/wire'
import { FramedStream } from '../src/internal/framed.js'
import type { StreamHandler, TransportStream } from '../src/Transport.js'

/** A transport stream that records every write (copies: the batch buffer is reused). */
const recording = () => {
  const writes: Array<Uint8Array> = []
  let handler: StreamHandler | undefined
  const stream = {
    id: 0,
    connection: undefined as never,
    setHandler: (h: StreamHandler) => void (handler = h),
    write: (chunk: Uint8Array, _owned?: boolean, onRelease?: () => void) => {
      writes.push(chunk.slice())
      onRelease?.()
      return true
    },
    writableLength: () => 0,
    end: () => {},
    reset: () => {},
    setPriority: () => {},
    pause: () => {},
    resume: () => {},
    isClosed: () => false
  } satisfies TransportStream
  return { stream, writes, handler: () => handler }
}

const message = (n: number) => new Uint8Array(10).fill(n)
const framed = (...ns: Array<number>) => {
  const parts = ns.map((n) => {
    const out = new Uint8Array(Frame.HEADER_BYTES + 10)
    Frame.encodeMessageInto(out, 0, message(n), 1024)
    return out
  })
  const all = new Uint8Array(parts.reduce((s, p) => s + p.byteLength, 0))
  let at = 0
  for (const p of parts) {
    all.set(p, at)
    at += p.byteLength
  }
  return all
}

describe('FramedStream', () => {
  it('writes the first small message of a microtask to the transport at once and batches the ones after it into one write', async () => {
    const { stream, writes } = recording()
    const ps = new FramedStream(stream, 'peer', true, 1024, undefined, undefined)
    // a reply sent while the transport hands over what it received reaches the transport
    // before the transport's flush (one datagram with its acknowledgement)
    ps.send(message(1))
    expect(writes).toEqual([framed(1)])
    ps.send(message(2))
    ps.send(message(3))
    expect(writes).toHaveLength(1)
    await Promise.resolve()
    expect(writes).toEqual([framed(1), framed(2, 3)])
    // the next microtask starts again with a write at once
    ps.send(message(4))
    expect(writes).toEqual([framed(1), framed(2, 3), framed(4)])
    await Promise.resolve()
    expect(writes).toHaveLength(3)
  })
})
