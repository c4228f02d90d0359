import { describe, expect, it } from '@effect/vitest'
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { createInterface } from 'node:readline'

const tsx = createRequire(import.meta.url).resolve('tsx')

describe('the local cluster (npm start)', () => {
  it('starts three node processes that form one cluster, and stops them all on SIGTERM', async () => {
    const child = spawn(process.execPath, ['--import', tsx, '--conditions=@mycorrizal/source', new URL('../src/main.ts', import.meta.url).pathname, '--nodes', '3'], {
      stdio: ['ignore', 'pipe', 'inherit']
    })
    const lines: Array<string> = []
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no full cluster within 30 s:\n${lines.join('\n')}`)), 30_000)
        createInterface({ input: child.stdout! }).on('line', (line) => {
          lines.push(line)
          const full = ['n1', 'n2', 'n3'].every((id) => lines.includes(`node ${id} sees 3 members: n1 n2 n3`))
          if (full) {
            clearTimeout(timer)
            resolve()
          }
        })
      })
      expect(lines.filter((l) => /^node n\d quic 127\.0\.0\.1:\d+$/.test(l))).toHaveLength(3)
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
      child.kill('SIGTERM')
      expect(await exited).toBe(0)
      expect(lines).toContain('stopping: every node leaves the cluster')
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL')
    }
  }, 60_000)
})
