/**
 * Memory per entry of the cache's local store (`BucketStore`) alone: N puts of a fresh B-byte
 * value (a copy, as the engine passes) with a fresh version object, measured after full
 * collections. From the repository root:
 *
 *   node --expose-gc --import tsx packages/mycel/scripts/store-footprint.mjs
 *
 * (env STORE_ENTRIES, default 100000; STORE_VALUE_BYTES, default 100). Last line:
 * {"entries","value_bytes","heap_per_entry","external_per_entry","rss_per_entry"} (bytes).
 */
import { BucketStore } from '../src/internal/store.ts'

const N = Number(process.env['STORE_ENTRIES'] ?? 100_000)
const B = Number(process.env['STORE_VALUE_BYTES'] ?? 100)
if (globalThis.gc === undefined) throw new Error('run with node --expose-gc')

const measure = () => {
  for (let i = 0; i < 4; i++) globalThis.gc()
  const m = process.memoryUsage()
  return { heap: m.heapUsed, external: m.external, rss: m.rss }
}

const store = new BucketStore({ maxEntries: N * 2, defaultTtlMs: 3_600_000, now: () => 1_000 })
const source = new Uint8Array(B).fill(7)
// the code paths warmed up before the first measurement
for (let i = 0; i < 1_000; i++) store.put(`warm-${i}`, new Uint8Array(source), { ts: i + 1, node: 'node-a' })
store.clear()
const before = measure()
for (let i = 0; i < N; i++) store.put(`key-${i}`, new Uint8Array(source), { ts: 1_733_000_000_000 + i, node: 'node-a' })
const after = measure()
if (store.size !== N) throw new Error(`expected ${N} entries, found ${store.size}`)
const mib = (k) => ((after[k] - before[k]) / 2 ** 20).toFixed(1)
const per = (k) => Math.round((after[k] - before[k]) / N)
console.log(`${N} entries of ${B} B: heap +${mib('heap')} MiB, external +${mib('external')} MiB, rss +${mib('rss')} MiB`)
console.log(JSON.stringify({ entries: N, value_bytes: B, heap_per_entry: per('heap'), external_per_entry: per('external'), rss_per_entry: per('rss') }))
