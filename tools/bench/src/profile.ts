/**
 * CPU profiles of a measured phase only (not start-up, loading or shutdown): with
 * BENCH_PROFILE_DIR set, `profiled(name, run)` records a V8 CPU profile of this process while
 * `run` runs and writes it to `<dir>/<name>.<pid>.cpuprofile` (open it in Chrome DevTools or
 * speedscope). With BENCH_HEAP_PROFILE_DIR set, it records where the phase allocates instead
 * (V8's sampling heap profiler, garbage included: `<dir>/<name>.<pid>.heapprofile`); with
 * BENCH_HEAP_SURVIVORS=1 as well, only what no young-generation collection took: what the
 * scavenges copied and promoted, and what V8 allocated in the old generation at once (a pretenured
 * allocation site) — the objects that make scavenges long and full collections frequent. (The
 * objects `settle` makes show up under `scavenge` when a full collection ran meanwhile.) Without
 * either, `run` runs as is.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { Session } from 'node:inspector'
import { join } from 'node:path'

const post = (session: Session, method: string, params?: object) =>
  new Promise<unknown>((resolve, reject) => session.post(method, params, (error, result) => (error === null ? resolve(result) : reject(error))))

/** One of V8's profilers: how it starts and stops, and the file its profile goes to. */
interface Profiler {
  readonly start: ReadonlyArray<readonly [method: string, params?: object]>
  readonly stop: string
  readonly suffix: string
  /** Runs before the profile stops. */
  readonly settle?: () => void
}

const cpu: Profiler = {
  start: [['Profiler.enable'], ['Profiler.setSamplingInterval', { interval: 200 }], ['Profiler.start']],
  stop: 'Profiler.stop',
  suffix: 'cpuprofile'
}

const heap = (survivors: boolean): Profiler => ({
  start: [
    ['HeapProfiler.enable'],
    // every object, collected or not (a hot path's garbage is what the samples are for), or
    // only the objects no scavenge collected
    ['HeapProfiler.startSampling', { samplingInterval: 16_384, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: !survivors }]
  ],
  stop: 'HeapProfiler.stopSampling',
  suffix: survivors ? 'survivors.heapprofile' : 'heapprofile',
  // young objects the phase left behind are dropped only by a scavenge: cause a few (64 MB of
  // short-lived objects), so what remains is what outlived the phase's own scavenges
  ...(survivors ? { settle: scavenge } : {})
})

const scavenge = () => {
  // each object escapes into the ring (so it is allocated), and lives until 1,024 later ones
  const ring = new Array<unknown>(1_024)
  for (let i = 0; i < 4_000_000; i++) ring[i & 1_023] = { i }
  ring.fill(undefined)
}

export const profiled = async <A>(name: string, run: () => Promise<A>): Promise<A> => {
  const heapDir = process.env['BENCH_HEAP_PROFILE_DIR']
  const cpuDir = process.env['BENCH_PROFILE_DIR']
  if (heapDir !== undefined) return profiledWith(heap(process.env['BENCH_HEAP_SURVIVORS'] === '1'), heapDir, name, run)
  if (cpuDir !== undefined) return profiledWith(cpu, cpuDir, name, run)
  return run()
}

const profiledWith = async <A>(profiler: Profiler, dir: string, name: string, run: () => Promise<A>): Promise<A> => {
  const session = new Session()
  session.connect()
  for (const [method, params] of profiler.start) await post(session, method, params)
  try {
    return await run()
  } finally {
    if (profiler.settle !== undefined) profiler.settle()
    const { profile } = (await post(session, profiler.stop)) as { profile: unknown }
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, `${name}.${process.pid}.${profiler.suffix}`), JSON.stringify(profile))
    session.disconnect()
  }
}
