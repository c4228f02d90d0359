import { describe, expect, it } from '@effect/vitest'
import { Metrics } from '@mycorrizal/metrics'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Registry } from 'prom-client'

const dashboard = JSON.parse(readFileSync(new URL('../dashboards/mycorrizal.json', import.meta.url), 'utf8')) as {
  panels: Array<{ type: string; title: string; targets?: Array<{ expr: string }> }>
}
const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr))
const promtool = ['/usr/bin/promtool', 'promtool'].find((p) => spawnSync(p, ['--version']).status === 0)

describe('the Grafana dashboard', () => {
  it('queries only series a node exports', () => {
    const registry = new Registry()
    const fake = {
      nodosum: { stats: () => ({ peers: [], handshakeFailures: {}, handshakesSucceeded: 0, membersByState: { alive: 1, failed: 0, left: 0 } }) },
      streams: { applications: () => [] },
      mycel: { buckets: () => [], stats: () => undefined, ready: () => true }
    } as unknown as Metrics.Sources
    Metrics.register(registry, fake)
    const names = new Set(
      registry.getMetricsAsArray().flatMap((m) => {
        const name = (m as unknown as { name: string }).name
        return [name, `${name}_bucket`, `${name}_sum`, `${name}_count`]
      })
    )
    expect(exprs.length).toBeGreaterThan(20)
    for (const expr of exprs) {
      const used = [...expr.matchAll(/\b((?:mycorrizal|process|nodejs)_[a-z0-9_]+)\b/g)].map((m) => m[1]!)
      expect(used.length, expr).toBeGreaterThan(0)
      for (const name of used) expect(names.has(name), `${name} in ${expr}`).toBe(true)
    }
  })

  // promtool comes from Debian's prometheus package, which .ci/run installs; a workstation without it skips this one check
  it.skipIf(promtool === undefined && process.env['CI'] === undefined)('every query is valid PromQL (promtool check rules)', () => {
    expect(promtool, 'promtool is missing: apt-get install prometheus').toBeDefined()
    const dir = mkdtempSync(join(tmpdir(), 'mycorrizal-dashboard-'))
    try {
      const rules = ['groups:', '  - name: dashboard', '    rules:', ...exprs.flatMap((e, i) => [`      - record: dashboard:query${i}`, `        expr: ${JSON.stringify(e.replaceAll('$instance', '.*'))}`])]
      const file = join(dir, 'rules.yml')
      writeFileSync(file, rules.join('\n') + '\n')
      const result = spawnSync(promtool!, ['check', 'rules', file], { encoding: 'utf8' })
      expect(result.status, `${result.stdout}${result.stderr}`).toBe(0)
      expect(result.stdout).toContain(`${exprs.length} rules found`)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
