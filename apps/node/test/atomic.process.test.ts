/**
 * Atomic increments with real node processes on loopback: three node processes each apply
 * 1,000 increments of one counter, all at once and all three together; the counts sum exactly
 * and every answer is a distinct count. Prints one JSON line with what it measured.
 */
import { afterAll, describe, expect, it } from '@effect/vitest'
import { type ChildProcess, fork } from 'node:child_process'
import { children, execArgv, killAll } from './fixtures/processes.js'

afterAll(killAll)

const fixture = new URL('./fixtures/incrementer.ts', import.meta.url).pathname
type Message = { type: 'ready'; port: number } | { type: 'members' } | { type: 'done'; answers: Array<number>; errors: Array<string>; final: string }

const start = (id: string, seed: string) => {
  const child = fork(fixture, [id, seed, '1000'], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  children.add(child)
  const inbox: Array<Message> = []
  const waiters: Array<() => void> = []
  child.on('message', (m: Message) => {
    inbox.push(m)
    for (const w of waiters.splice(0)) w()
  })
  const next = <T extends Message['type']>(type: T, ms = 120_000): Promise<Extract<Message, { type: T }>> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${id}: no '${type}' within ${ms} ms`)), ms)
      const check = () => {
        const found = inbox.find((m) => m.type === type)
        if (found === undefined) {
          waiters.push(check)
          return
        }
        clearTimeout(timer)
        resolve(found as Extract<Message, { type: T }>)
      }
      check()
    })
  return { child, next }
}

const exit = (child: ChildProcess) => new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)))

describe('atomic operations with real node processes', () => {
  it('3 × 1,000 concurrent increments from three processes sum exactly; every answer is a distinct count', async () => {
    const a = start('a', '')
    const { port } = await a.next('ready')
    const others = ['b', 'c'].map((id) => start(id, `127.0.0.1:${port}`))
    const all = [a, ...others]
    await Promise.all(all.map((n) => n.next('members')))
    const started = performance.now()
    for (const n of all) n.child.send({ type: 'go' })
    const done = await Promise.all(all.map((n) => n.next('done')))
    const ms = performance.now() - started
    expect([...new Set(done.flatMap((d) => d.errors.map((e) => e.replace(/[0-9]+/g, 'N'))))]).toEqual([])
    const answers = done.flatMap((d) => d.answers)
    expect([...answers].sort((x, y) => x - y)).toEqual(Array.from({ length: 3_000 }, (_, i) => i + 1))
    // the last of the three to finish read the whole count
    expect(Math.max(...done.map((d) => Number(d.final)))).toBe(3_000)
    console.log(JSON.stringify({ test: 'increments', processes: 3, increments: 3_000, ms: Math.round(ms) }))
    for (const n of all) n.child.send({ type: 'stop' })
    await Promise.all(all.map((n) => exit(n.child)))
  }, 180_000)
})
