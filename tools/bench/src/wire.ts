/**
 * Decoder throughput for 64 B and 1 KiB messages arriving in 64 KiB chunks, against a
 * baseline measured in the same run: a loop that only slices the same buffer at the known
 * message offsets and hands each slice to the same sink. ratio = decoder / baseline.
 * Last line: {"small":{"msgs_s":N,"mb_s":N,"ratio":R},"kib":{"msgs_s":N,"mb_s":N,"ratio":R}}
 */
import { Decoder, Frame } from '@mycorrizal/wire'
import { printResult, timed } from './report.js'

const CHUNK = 64 * 1024
const TOTAL = 32 * 1024 * 1024
const ms = Number(process.env['BENCH_MS'] ?? 1500)

const measure = (size: number) => {
  const payload = new Uint8Array(size).fill(0xab)
  const count = Math.floor(TOTAL / (size + 4))
  const stream = Frame.encodeMessages(Array.from({ length: count }, () => payload))
  const chunks: Array<Uint8Array> = []
  for (let o = 0; o < stream.length; o += CHUNK) chunks.push(stream.subarray(o, Math.min(stream.length, o + CHUNK)))
  const offsets = new Int32Array(count)
  for (let i = 0, o = 4; i < count; i++, o += size + 4) offsets[i] = o

  let sum = 0
  const sink = { onMessage: (p: Uint8Array) => void (sum += p.length + p[0]!) }
  const decode = () => {
    const decoder = Decoder.make({ streamInit: false })
    for (const chunk of chunks) decoder.push(chunk, sink)
    decoder.end()
  }
  const baseline = () => {
    for (let i = 0; i < count; i++) {
      const o = offsets[i]!
      sink.onMessage(stream.subarray(o, o + size))
    }
  }
  // warm up both, then alternate rounds so noise hits both alike
  timed(300, decode)
  timed(300, baseline)
  let decodeRuns = 0
  let decodeMs = 0
  let baseRuns = 0
  let baseMs = 0
  for (let round = 0; round < 3; round++) {
    const d = timed(ms / 3, decode)
    decodeRuns += d.iterations
    decodeMs += d.elapsedMs
    const b = timed(ms / 3, baseline)
    baseRuns += b.iterations
    baseMs += b.elapsedMs
  }
  const msgsS = (decodeRuns * count) / (decodeMs / 1000)
  const baseMsgsS = (baseRuns * count) / (baseMs / 1000)
  if (sum === 42) console.log('')
  return {
    msgs_s: Math.round(msgsS),
    mb_s: Number(((msgsS * size) / 1e6).toFixed(1)),
    ratio: Number((msgsS / baseMsgsS).toFixed(3)),
    baseline_msgs_s: Math.round(baseMsgsS)
  }
}

const small = measure(64)
console.log(`64 B messages: ${small.msgs_s} msg/s (${small.mb_s} MB/s), baseline ${small.baseline_msgs_s} msg/s, ratio ${small.ratio}`)
const kib = measure(1024)
console.log(`1 KiB messages: ${kib.msgs_s} msg/s (${kib.mb_s} MB/s), baseline ${kib.baseline_msgs_s} msg/s, ratio ${kib.ratio}`)
printResult({
  small: { msgs_s: small.msgs_s, mb_s: small.mb_s, ratio: small.ratio },
  kib: { msgs_s: kib.msgs_s, mb_s: kib.mb_s, ratio: kib.ratio }
})
