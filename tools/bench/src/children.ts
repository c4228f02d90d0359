/**
 * The messages of a forked benchmark process, awaited by type. A process that exits before it
 * sends the awaited message fails the wait with its exit code or signal, so a crashed process
 * ends the benchmark with an error instead of leaving it waiting.
 */
import type { ChildProcess } from 'node:child_process'

export type Inbox<M extends { readonly type: string }> = <T extends M['type']>(type: T) => Promise<Extract<M, { type: T }>>

export const inbox = <M extends { readonly type: string }>(child: ChildProcess): Inbox<M> => {
  const messages: Array<M> = []
  const waiters = new Set<() => void>()
  let exited: string | undefined
  const wake = () => {
    for (const waiter of [...waiters]) waiter()
  }
  child.on('message', (m: M) => {
    messages.push(m)
    wake()
  })
  child.on('exit', (code, signal) => {
    exited = signal === null ? `exited with code ${code}` : `was killed by ${signal}`
    wake()
  })
  return <T extends M['type']>(type: T) =>
    new Promise<Extract<M, { type: T }>>((resolve, reject) => {
      const check = () => {
        const i = messages.findIndex((m) => m.type === type)
        if (i >= 0) {
          waiters.delete(check)
          resolve(messages.splice(i, 1)[0] as Extract<M, { type: T }>)
        } else if (exited !== undefined) {
          waiters.delete(check)
          reject(new Error(`benchmark process ${child.pid} ${exited} before it sent '${type}'`))
        }
      }
      waiters.add(check)
      check()
    })
}

/** Runs a phase over `children`; when it fails, the children still running are killed, so none outlives the benchmark. */
export const killingOnFailure = async <A>(children: ReadonlyArray<ChildProcess>, run: () => Promise<A>): Promise<A> => {
  try {
    return await run()
  } catch (error) {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    throw error
  }
}
