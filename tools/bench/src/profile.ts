/**
 * CPU profiles of a measured phase only (not start-up, loading or shutdown): with
 * BENCH_PROFILE_DIR set, `profiled(name, run)` records a V8 CPU profile of this process while
 * `run` runs and writes it to `<dir>/<name>.<pid>.cpuprofile` (open it in Chrome DevTools or
 * speedscope). Without it, `run` runs as is.
 */
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector'
import { join } from 'node:path'

const post = (session: Session, method: string, params?: object) =>
  new Promise<unknown>((resolve, reject) => session.post(method, params, (error, result) => (error === null ? resolve(result) : reject(error))))

export const profiled = async <A>(name: string, run: () => Promise<A>): Promise<A> => {
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
