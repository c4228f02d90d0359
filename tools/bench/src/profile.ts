/**
 * CPU profiles of a measured phase only (not start-up, loading or shutdown): with
 * BENCH_PROFILE_DIR set, `profiled(name, run)` records a V8 CPU profile of this process while
 * `run` runs and writes it to `<dir>/<name>.<pid>.cpuprofile` (open it in Chrome DevTools or
 * speedscope). With BENCH_HEAP_PROFILE_DIR set, it records where the phase allocates instead
 * (V8's sampling heap profiler, garbage included: `<dir>/<name>.<pid>.heapprofile`). Without
 * either, `run` runs as is.
 */
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector'
import { join } from 'node:path'

const post = (session: Session, method: string, params?: object) =>
  new Promise<unknown>((resolve, reject) => session.post(method, params, (error, result) => (error === null ? resolve(result) : reject(error))))

export const profiled = async <A>(name: string, run: () => Promise<A>): Promise<A> => {
  const heapDir = process.env['BENCH_HEAP_PROFILE_DIR']
  if (heapDir !== undefined) return heapProfiled(heapDir, name, run)
  const dir = process.env['BENCH_PROFILE_DIR']
  if (dir === undefined) return run()
  const session = new Session()
  session.connect()
  await post(session, 'Profiler.enable')
  await post(session, 'Profiler.setSamplingInterval', { interval: 200 })
  await post(session, 'Profiler.start')
  try {
    return await run()
  } finally {
    const { profile } = (await post(session, 'Profiler.stop')) as { profile: unknown }
    writeFileSync(join(dir, `${name}.${process.pid}.cpuprofile`), JSON.stringify(profile))
    session.disconnect()
  }
}

const heapProfiled = async <A>(dir: string, name: string, run: () => Promise<A>): Promise<A> => {
  const session = new Session()
  session.connect()
  await post(session, 'HeapProfiler.enable')
  // every object, collected or not: a hot path's garbage is what the samples are for
  await post(session, 'HeapProfiler.startSampling', { samplingInterval: 16_384, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true })
  try {
    return await run()
  } finally {
    const { profile } = (await post(session, 'HeapProfiler.stopSampling')) as { profile: unknown }
    writeFileSync(join(dir, `${name}.${process.pid}.heapprofile`), JSON.stringify(profile))
    session.disconnect()
  }
}
