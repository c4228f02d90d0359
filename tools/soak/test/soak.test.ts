import { describe, expect, it } from '@effect/vitest'
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'

const tsx = createRequire(import.meta.url).resolve('tsx')

describe('soak (short run)', () => {
  it('three nodes under cache ops and messages for 30 s: no errors, members stay 3, open handles flat', async () => {
    const child = spawn(process.execPath, ['--import', tsx, '--conditions=@mycorrizal/source', new URL('../src/soak.ts', import.meta.url).pathname, '--seconds', '30', '--rate', '200'], {
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
