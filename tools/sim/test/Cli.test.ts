import { describe, expect, it } from '@effect/vitest'
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'

const tsx = createRequire(import.meta.url).resolve('tsx')

const sim = (args: ReadonlyArray<string>) =>
  new Promise<{ readonly code: number | null; readonly out: string }>((resolve) => {
    const child = spawn(process.execPath, ['--import', tsx, '--conditions=@mycorrizal/source', new URL('../src/main.ts', import.meta.url).pathname, ...args], {
      stdio: ['ignore', 'pipe', 'inherit']
    })
    let out = ''
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
    child.once('exit', (code) => resolve({ code, out }))
  })

describe('npm run sim', () => {
  it('prints a line per seed and, last, one JSON object with the totals; exit code 0 without violations', async () => {
    const { code, out } = await sim(['--seeds', '2', '--first', '3', '--nodes', '3', '--ops', '30', '--faults', 'delay'])
    const lines = out.trim().split('\n')
    expect(lines.filter((l) => l.startsWith('seed '))).toHaveLength(2)
    const totals = JSON.parse(lines.at(-1)!) as Record<string, number>
    expect(Object.keys(totals)).toEqual(['seeds', 'ops', 'faults', 'violations'])
    expect(totals['seeds']).toBe(2)
    expect(totals['ops']).toBeGreaterThanOrEqual(60)
    expect(totals['faults']).toBeGreaterThan(0)
    expect(totals['violations']).toBe(0)
    expect(code, out).toBe(0)
  }, 120_000)

  it('refuses bad options with exit code 2', async () => {
    expect((await sim(['--nodes', '9'])).code).toBe(2)
    expect((await sim(['--faults', 'meteor'])).code).toBe(2)
    expect((await sim(['--gap', '0'])).code).toBe(2)
  }, 60_000)
})
