import { describe, expect, it } from '@effect/vitest'
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'

const tsx = createRequire(import.meta.url).resolve('tsx')

describe('soak (short run)', () => {
  // n2 and n3 start 9 s after n1 (longer than the warm-up): the run starts when all three are
  // up, so a slow start on a busy machine is not counted as a lost member
  it('three nodes under cache ops and messages for 30 s: no errors, members stay 3, open handles flat', async () => {
    const args = ['--seconds', '30', '--rate', '200', '--join-delay-ms', '9000']
    const child = spawn(process.execPath, ['--import', tsx, '--conditions=@mycorrizal/source', new URL('../src/soak.ts', import.meta.url).pathname, ...args], {
      stdio: ['ignore', 'pipe', 'inherit']
    })
    let out = ''
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), 100_000)
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)))
    clearTimeout(timer)
    expect(code, out).toBe(0)
    const summary = JSON.parse(out.trim().split('\n').at(-1)!) as Record<string, number | null | Array<number>>
    expect(summary['errors'], String(summary['last_error'])).toBe(0)
    expect(summary['nodes']).toBe(3)
    expect(summary['members_min']).toBe(3)
    expect(summary['ops']).toBeGreaterThan(3 * 200 * 15)
    expect(summary['messages_received']).toBeGreaterThan(0)
    expect(summary['handles_growth_max']).toBeLessThanOrEqual(3)
  }, 120_000)
})
