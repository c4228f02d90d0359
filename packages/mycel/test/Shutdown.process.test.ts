import { describe, expect, it } from '@effect/vitest'
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { createInterface } from 'node:readline'

const tsx = createRequire(import.meta.url).resolve('tsx')

describe('shutdown', () => {
  it('a plain Node script with two nodes that put, get and shut down exits at once; nothing is left and a stopped node logs nothing', async () => {
    const child = spawn(process.execPath, ['--import', tsx, '--conditions=@mycorrizal/source', new URL('./fixtures/shutdown.ts', import.meta.url).pathname], {
      stdio: ['ignore', 'pipe', 'inherit']
    })
    const lines: Array<{ event: string; [k: string]: unknown }> = []
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (line.startsWith('{')) lines.push(JSON.parse(line) as { event: string })
    })
    const exited = new Promise<{ code: number | null; at: number }>((resolve) => child.once('exit', (code) => resolve({ code, at: Date.now() })))
    const killer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    const { code, at } = await exited
    clearTimeout(killer)
    expect(code).toBe(0)
    const done = lines.find((l) => l.event === 'done')
    expect(done?.['read']).toBe(20)
    const shutdown = lines.findIndex((l) => l.event === 'shutdown')
    expect(shutdown).toBeGreaterThan(-1)
    // generous: a node that keeps a timer waits 10 s (its ready timeout)
    const exitMs = at - (lines[shutdown]!['at'] as number)
    console.log(JSON.stringify({ scenario: 'shutdown', exit_after_shutdown_ms: exitMs }))
    expect(exitMs).toBeLessThan(5_000)
    expect(lines.find((l) => l.event === 'handles')?.['resources']).toEqual([])
    const after = lines.slice(shutdown + 1).filter((l) => l.event === 'log')
    expect(after).toEqual([])
  }, 90_000)
})
