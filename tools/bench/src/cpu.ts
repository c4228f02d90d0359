import { readFileSync } from 'node:fs'

/** CPU time (us) a process has used so far, user + system, from /proc (0 for no pid or where /proc is missing). */
export const processCpuUs = (pid: number | undefined): number => {
  if (pid === undefined) return 0
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
    // utime and stime are fields 14 and 15 of the whole line, in clock ticks (100 per second on Linux)
    return ((Number(fields[11]) + Number(fields[12])) * 1_000_000) / 100
  } catch {
    return 0
  }
}

/** CPU time (us) used so far by all these processes together. */
export const processesCpuUs = (pids: ReadonlyArray<number | undefined>): number => pids.reduce<number>((sum, pid) => sum + processCpuUs(pid), 0)
