/**
 * Leader election with real node processes on loopback: three processes stand in one election,
 * the leader is SIGKILLed, and a survivor is elected within failure timeout + lease (+ the
 * clock-skew allowance and a candidate's retry interval), with a higher fencing token. Prints one
 * JSON line with what it measured.
 */
import { afterAll, describe, expect, it } from '@effect/vitest'
import { type ChildProcess, fork } from 'node:child_process'
import { children, execArgv, killAll } from './fixtures/processes.js'

afterAll(killAll)

const fixture = new URL('./fixtures/candidate.ts', import.meta.url).pathname
type Message = { type: 'ready'; port: number } | { type: 'members' } | { type: 'elected'; token: string } | { type: 'revoked' }
type Event = { readonly id: string; readonly at: number; readonly message: Message }

const FAILURE_TIMEOUT = 2_000
const LEASE = 3_000
const SKEW = 1_000
const RETRY = LEASE / 3

const events: Array<Event> = []
const start = (id: string, seed: string) => {
  const child = fork(fixture, [id, seed], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  children.add(child)
  child.on('message', (message: Message) => void events.push({ id, at: performance.now(), message }))
  return { id, child }
}

const until = async (check: () => boolean, what: string, ms = 60_000) => {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

const exit = (child: ChildProcess) => new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(null) : child.once('exit', r)))
const elected = (after = 0) => events.filter((e): e is Event & { message: { type: 'elected'; token: string } } => e.message.type === 'elected' && e.at >= after)

describe('leader election with real node processes', () => {
  it('the leader is SIGKILLed: a survivor leads within failure timeout + lease, with a higher token', async () => {
    const a = start('a', '')
    await until(() => events.some((e) => e.id === 'a' && e.message.type === 'ready'), 'a ready')
    const { port } = events.find((e) => e.id === 'a' && e.message.type === 'ready')!.message as { port: number }
    const all = [a, ...['b', 'c'].map((id) => start(id, `127.0.0.1:${port}`))]
    await until(() => elected().length === 1, 'a first leader')
    const first = elected()[0]!
    // one leader: nobody else is elected over a few renewals
    await new Promise((r) => setTimeout(r, LEASE))
    expect(elected()).toHaveLength(1)
    const leader = all.find((n) => n.id === first.id)!
    const killedAt = performance.now()
    leader.child.kill('SIGKILL')
    await until(() => elected(killedAt).length > 0, 'a new leader', 60_000)
    const next = elected(killedAt)[0]!
    const ms = next.at - killedAt
    expect(next.id).not.toBe(first.id)
    expect(BigInt(next.message.token) > BigInt(first.message.token)).toBe(true)
    console.log(JSON.stringify({ test: 'election-failover', leader: first.id, next: next.id, ms: Math.round(ms), bound: FAILURE_TIMEOUT + LEASE + SKEW + RETRY }))
    // a full lease and the skew allowance at least (the dead leader may have renewed just before);
    // at most failure timeout + lease + skew + one retry interval, with room for a loaded machine
    expect(ms).toBeLessThanOrEqual(FAILURE_TIMEOUT + LEASE + SKEW + RETRY + 3_000)
    // and then one leader among the survivors
    await new Promise((r) => setTimeout(r, LEASE))
    expect(elected(killedAt)).toHaveLength(1)
    for (const n of all) if (n !== leader) n.child.send({ type: 'stop' })
    await Promise.all(all.map((n) => exit(n.child)))
  }, 120_000)
})
