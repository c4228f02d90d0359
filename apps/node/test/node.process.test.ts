/**
 * Real `mycorrizal` processes on loopback: nodes started with flags, joined over QUIC, driven
 * through the admin HTTP API and the CLI, stopped with SIGTERM.
 */
import { afterAll, describe, expect, it } from '@effect/vitest'
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { bin, children, cleanEnv, cli, killAll, members, promtool, SECRET, startNode, until } from './fixtures/processes.js'

afterAll(killAll)

const scratch = mkdtempSync(join(tmpdir(), 'mycorrizal-process-'))
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

/** A file in the test's scratch directory holding `content`, mode 0600. */
const secretFile = (name: string, content: string) => {
  const path = join(scratch, name)
  writeFileSync(path, `${content}\n`, { mode: 0o600 })
  return path
}

const mode = (path: string) => statSync(path).mode & 0o777


describe('mycorrizal node processes', () => {
  it('two nodes join; a REST put on one is read on the other; /metrics passes promtool; the CLI shows members and the stream block; SIGTERM leaves', async () => {
    // the secret from a file (never on the command line, where ps shows it)
    const a = await startNode(['--node-id', 'a', '--cluster-secret-file', secretFile('cluster-secret', SECRET), '--bucket', 'sessions:60s:1000'])
    // the second node takes its settings from the environment, as in a container
    const b = await startNode([], {
      MYCORRIZAL_NODE_ID: 'b',
      MYCORRIZAL_SEEDS: `127.0.0.1:${a.quicPort}`,
      MYCORRIZAL_CLUSTER_SECRET: SECRET,
      MYCORRIZAL_BUCKET: 'sessions:60s:1000'
    })
    await until(async () => (await members(a.admin)).filter((m) => m.state === 'alive').length === 2, 'a sees b')
    expect((await members(b.admin)).map((m) => [m.id, m.state]).sort()).toEqual([
      ['a', 'alive'],
      ['b', 'alive']
    ])
    await until(async () => (await fetch(`${b.admin}/readyz`)).status === 200, 'b ready')

    for (let i = 0; i < 20; i++) expect((await fetch(`${a.admin}/v1/cache/sessions/user-${i}`, { method: 'PUT', body: `value ${i}` })).status).toBe(204)
    for (let i = 0; i < 20; i++) {
      const got = await fetch(`${b.admin}/v1/cache/sessions/user-${i}`)
      expect(got.status).toBe(200)
      expect(await got.text()).toBe(`value ${i}`)
    }
    expect((await fetch(`${b.admin}/v1/cache/sessions/nobody`)).status).toBe(404)

    const metrics = await (await fetch(`${b.admin}/metrics`)).text()
    expect(metrics).toMatch(/^mycorrizal_cache_keys\{bucket="sessions"\} 20$/m)
    expect(metrics).toMatch(/^mycorrizal_cache_hits_total\{bucket="sessions"\} \d+$/m)
    expect(metrics).toContain('mycorrizal_cache_remote_op_duration_seconds_bucket{bucket="sessions",op="get",le="+Inf"}')
    expect(metrics).toMatch(/^mycorrizal_stream_bytes_total\{app="SYSTEM-MYCEL",stream="bucket:sessions",direction="received"\} [1-9]\d*$/m)
    expect(metrics).toMatch(/^mycorrizal_members\{state="alive"\} 2$/m)
    expect(metrics).toContain('process_resident_memory_bytes')
    if (promtool !== undefined || process.env['CI'] !== undefined) {
      expect(promtool, 'promtool is missing: apt-get install prometheus').toBeDefined()
      const check = spawnSync(promtool!, ['check', 'metrics'], { input: metrics, encoding: 'utf8' })
      expect(`${check.stdout}${check.stderr}`).toBe('')
      expect(check.status).toBe(0)
    }

    const block = cli(['debug', 'stream', 'SYSTEM-MYCEL', 'bucket:sessions', '--admin', a.admin])
    expect(block.stderr).toBe('')
    expect(block.status).toBe(0)
    const lines = block.stdout.split('\n')
    expect(lines[0]).toBe('Stream: bucket:sessions')
    expect(lines[1]).toBe('Active nodes: [b]')
    expect(lines[2]).toMatch(/^Bytes sent: \d+(\.\d)? (B|KiB)$/)
    expect(lines[3]).toMatch(/^Messages: \d+ \(\d+ out, \d+ in\)$/)
    expect(lines[4]).toBe('Error rate: 0.00%')
    expect(lines[5]).toMatch(/^Last active: (now|\d+s ago)$/)

    const table = cli(['members', '--admin', b.admin])
    expect(table.status).toBe(0)
    expect(table.stdout).toMatch(/^b \(self\)\s+127\.0\.0\.1:\d+\s+alive/m)
    expect(table.stdout).toMatch(/^a\s+127\.0\.0\.1:\d+\s+alive/m)
    const topics = cli(['topics', '--admin', b.admin])
    expect([topics.status, topics.stdout.trim()]).toEqual([0, 'no topics on this node'])

    const put = cli(['cache', 'put', 'sessions', 'from-cli', 'hello', '--admin', a.admin])
    expect(put.status).toBe(0)
    const get = cli(['cache', 'get', 'sessions', 'from-cli', '--admin', b.admin])
    expect([get.status, get.stdout]).toEqual([0, 'hello'])
    const miss = cli(['cache', 'get', 'sessions', 'missing', '--admin', b.admin])
    expect(miss.status).toBe(1)
    expect(miss.stderr).toContain("no key 'missing' in bucket 'sessions'")

    // SIGTERM: b leaves gracefully and a sees it as left, not failed
    b.child.kill('SIGTERM')
    expect(await b.exited).toBe(0)
    expect(b.logs.some((l) => l['msg'] === 'node stopping: leaving the cluster' && l['node'] === 'b')).toBe(true)
    await until(async () => (await members(a.admin)).find((m) => m.id === 'b')?.state === 'left', 'a sees b as left', 5_000)
    expect(a.logs.some((l) => l['msg'] === 'node started' && l['node'] === 'a' && typeof l['admin'] === 'string')).toBe(true)
    // the secret is in no log line, no metric and no debug answer
    expect(JSON.stringify([...a.logs, ...b.logs])).not.toContain(SECRET)
    expect([...a.logs, ...b.logs].some((l) => String(l['msg']).includes('on the command line'))).toBe(false)
    for (const path of ['/metrics', '/debug/members', '/debug/streams', '/readyz', '/healthz']) expect(await (await fetch(`${a.admin}${path}`)).text()).not.toContain(SECRET)
    a.child.kill('SIGTERM')
    expect(await a.exited).toBe(0)
  }, 120_000)

  it('a bad flag stops start-up with the field named and exit code 2', () => {
    const port = cli(['node', '--port', '99999', '--cluster-secret', SECRET])
    expect(port.status).toBe(2)
    expect(port.stderr).toContain('--port (MYCORRIZAL_PORT, "port" in the config file) must be an integer from 0 to 65535, got "99999"')
    const bucket = cli(['node', '--bucket', 'sessions:soon:10', '--cluster-secret', SECRET])
    expect(bucket.status).toBe(2)
    expect(bucket.stderr).toContain('--bucket (MYCORRIZAL_BUCKET, "buckets" in the config file)')
    const noAuth = cli(['node'])
    expect(noAuth.status).toBe(2)
    expect(noAuth.stderr).toContain('--cluster-secret (MYCORRIZAL_CLUSTER_SECRET, "clusterSecret" in the config file) is needed')
    const env = cli(['node', '--cluster-secret', SECRET], { MYCORRIZAL_ADMIN_HOST: '0.0.0.0' })
    expect(env.status).toBe(2)
    expect(env.stderr).toContain('--admin-token (MYCORRIZAL_ADMIN_TOKEN')
    const unknown = cli(['node', '--prot', '7000'])
    expect(unknown.status).toBe(2)
    const admin = cli(['members', '--admin', 'not a url'])
    expect(admin.status).toBe(2)
    expect(admin.stderr).toContain('--admin must be an http(s) URL')
  }, 180_000)

  it('secrets are keys: `mycorrizal secret` prints a fresh 256-bit one; a node refuses a secret under 32 characters, naming the field', () => {
    const one = cli(['secret'])
    const two = cli(['secret'])
    expect(one.status).toBe(0)
    expect(one.stdout).toMatch(/^[A-Za-z0-9_-]{43}\n$/)
    expect(Buffer.from(one.stdout.trim(), 'base64url')).toHaveLength(32)
    expect(two.stdout).not.toBe(one.stdout)
    const short = cli(['node'], { MYCORRIZAL_CLUSTER_SECRET: 'x'.repeat(31) })
    expect(short.status).toBe(2)
    expect(short.stderr).toContain('--cluster-secret (MYCORRIZAL_CLUSTER_SECRET, "clusterSecret" in the config file) must hold at least 32 characters')
    expect(short.stderr).toContain('`mycorrizal secret` prints a fresh one')
    const both = cli(['node', '--cluster-secret-file', secretFile('both', SECRET)], { MYCORRIZAL_CLUSTER_SECRET: SECRET })
    expect(both.status).toBe(2)
    expect(both.stderr).toContain('exclude each other')
  }, 180_000)

  it('admin tokens: the CLI passes --token, --token-file, MYCORRIZAL_ADMIN_TOKEN or MYCORRIZAL_ADMIN_TOKEN_FILE; a write without the token is refused', async () => {
    const token = 'cli-admin-token-0123456789'
    // a token as a flag works, with a warning that ps shows it
    const node = await startNode(['--single', '--bucket', 'sessions:1m:100', '--admin-token', token])
    expect(node.logs.some((l) => l['level'] === 40 && String(l['msg']).startsWith('--admin-token (MYCORRIZAL_ADMIN_TOKEN') && String(l['msg']).includes('--admin-token-file'))).toBe(true)
    const anonymous = cli(['cache', 'put', 'sessions', 'k', 'v', '--admin', node.admin])
    expect(anonymous.status).toBe(1)
    expect(anonymous.stderr).toContain('pass --token-file or set MYCORRIZAL_ADMIN_TOKEN')
    expect((await fetch(`${node.admin}/v1/cache/sessions/k`, { method: 'PUT', body: 'v' })).status).toBe(401)
    const flagged = cli(['cache', 'put', 'sessions', 'k', 'v', '--admin', node.admin, '--token', token])
    expect(flagged.status).toBe(0)
    expect(flagged.stderr).toContain('warning: --token shows in the process list')
    const read = cli(['cache', 'get', 'sessions', 'k', '--admin', node.admin], { MYCORRIZAL_ADMIN_TOKEN: token })
    expect([read.status, read.stdout, read.stderr]).toEqual([0, 'v', ''])
    const tokenPath = secretFile('admin-token', token)
    const fromFile = cli(['cache', 'put', 'sessions', 'k', 'w', '--admin', node.admin, '--token-file', tokenPath])
    expect([fromFile.status, fromFile.stderr]).toEqual([0, ''])
    const fromEnvFile = cli(['cache', 'get', 'sessions', 'k', '--admin', node.admin], { MYCORRIZAL_ADMIN_TOKEN_FILE: tokenPath })
    expect([fromEnvFile.status, fromEnvFile.stdout]).toEqual([0, 'w'])
    const missing = cli(['members', '--admin', node.admin, '--token-file', join(scratch, 'nope')])
    expect(missing.status).toBe(2)
    expect(missing.stderr).toContain('--token-file names a file that could not be read')
    expect(cli(['members', '--admin', node.admin, '--token', 'wrong-token-0123456789']).status).toBe(1)
    expect(JSON.stringify(node.logs)).not.toContain(token)
    node.child.kill('SIGTERM')
    expect(await node.exited).toBe(0)
  }, 180_000)

  it('certs: a CA and node certificates with which two nodes join over mTLS; the CA key apart, key files 0600, no symbolic links followed', async () => {
    const root = mkdtempSync(join(tmpdir(), 'mycorrizal-certs-'))
    const dir = join(root, 'certs')
    try {
      const made = cli(['certs', '--out', dir, '--nodes', 'tls-a,tls-b'])
      expect(made.stderr).toBe('')
      expect(made.status).toBe(0)
      expect(readdirSync(dir).sort()).toEqual(['ca.pem', 'tls-a-key.pem', 'tls-a.pem', 'tls-b-key.pem', 'tls-b.pem'])
      // the CA key lives in its own directory, beside the output directory
      expect(readdirSync(`${dir}-ca`).sort()).toEqual(['ca-key.pem', 'ca.pem'])
      expect(mode(`${dir}-ca`)).toBe(0o700)
      for (const key of [`${dir}-ca/ca-key.pem`, join(dir, 'tls-a-key.pem'), join(dir, 'tls-b-key.pem')]) expect(mode(key), key).toBe(0o600)
      expect(mode(join(dir, 'tls-a.pem'))).toBe(0o644)
      // a key file that exists with looser permissions is replaced by one with 0600
      chmodSync(join(dir, 'tls-b-key.pem'), 0o644)
      const before = readFileSync(join(dir, 'tls-b-key.pem'), 'utf8')
      const again = cli(['certs', '--out', dir, '--nodes', 'tls-b'])
      expect(again.status).toBe(0)
      expect(again.stdout).toContain('signing with the existing CA')
      expect(mode(join(dir, 'tls-b-key.pem'))).toBe(0o600)
      expect(readFileSync(join(dir, 'tls-b-key.pem'), 'utf8')).not.toBe(before)
      // a symbolic link where a key goes is refused, and what it points to is untouched
      const victim = join(root, 'victim')
      writeFileSync(victim, 'keep me')
      symlinkSync(victim, join(dir, 'tls-c-key.pem'))
      const linked = cli(['certs', '--out', dir, '--nodes', 'tls-c'])
      expect(linked.status).toBe(1)
      expect(linked.stderr).toContain(`refusing to write ${join(dir, 'tls-c-key.pem')}: it is a symbolic link`)
      expect(readFileSync(victim, 'utf8')).toBe('keep me')
      expect(lstatSync(join(dir, 'tls-c-key.pem')).isSymbolicLink()).toBe(true)
      // the layout of earlier versions (the CA key beside the node keys) is refused with the move to make
      const old = join(root, 'old')
      mkdirSync(old)
      writeFileSync(join(old, 'ca-key.pem'), 'x')
      const legacy = cli(['certs', '--out', old, '--nodes', 'n'])
      expect(legacy.status).toBe(2)
      expect(legacy.stderr).toContain(`mv ${join(old, 'ca-key.pem')}`)
      const tls = (id: string) => ['--node-id', id, '--tls-ca', join(dir, 'ca.pem'), '--tls-cert', join(dir, `${id}.pem`), '--tls-key', join(dir, `${id}-key.pem`)]
      const a = await startNode(tls('tls-a'))
      const b = await startNode([...tls('tls-b'), '--seeds', `127.0.0.1:${a.quicPort}`])
      await until(async () => (await members(a.admin)).filter((m) => m.state === 'alive').length === 2, 'mTLS join')
      expect(a.logs.find((l) => l['msg'] === 'node started')!['auth']).toBe('mtls')
      for (const n of [a, b]) n.child.kill('SIGTERM')
      expect(await Promise.all([a.exited, b.exited])).toEqual([0, 0])
    } finally {
      rmSync(root, { recursive: true, force: true })
    }
  }, 120_000)

  it('cluster --nodes 3 (npm start) prints each admin URL, forms one cluster, and stops every node on SIGTERM', async () => {
    const child = spawn(process.execPath, [bin, 'cluster', '--nodes', '3'], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'inherit'] })
    children.add(child)
    const lines: Array<string> = []
    createInterface({ input: child.stdout! }).on('line', (line) => lines.push(line))
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    await until(() => ['n1', 'n2', 'n3'].every((id) => lines.includes(`node ${id} sees 3 members: n1 n2 n3`)), 'a full cluster', 60_000)
    const admins = lines.filter((l) => /^node n\d admin http:\/\/127\.0\.0\.1:\d+$/.test(l)).map((l) => l.split(' ')[3]!)
    expect(admins).toHaveLength(3)
    for (const admin of admins) expect((await members(admin)).filter((m) => m.state === 'alive')).toHaveLength(3)
    // the default buckets work across the cluster
    expect((await fetch(`${admins[0]}/v1/cache/sessions/k`, { method: 'PUT', body: 'v' })).status).toBe(204)
    expect(await (await fetch(`${admins[2]}/v1/cache/sessions/k`)).text()).toBe('v')
    child.kill('SIGTERM')
    expect(await exited).toBe(0)
    expect(lines).toContain('stopping: every node leaves the cluster')
    expect(lines.at(-1)).toBe('every node stopped')
    for (const admin of admins) await expect(fetch(admin + '/healthz')).rejects.toThrow()
  }, 120_000)
  it('npm start at the repository root passes on its arguments: npm start -- --nodes 1', async () => {
    const root = new URL('../../../', import.meta.url).pathname
    // a process group of its own, signalled as a whole like a terminal's Ctrl-C
    const child = spawn('npm', ['start', '--silent', '--', '--nodes', '1'], { cwd: root, env: cleanEnv(), stdio: ['ignore', 'pipe', 'inherit'], detached: true })
    const group = -child.pid!
    try {
      const lines: Array<string> = []
      createInterface({ input: child.stdout! }).on('line', (line) => lines.push(line))
      await until(() => lines.some((l) => /^1 node running on loopback/.test(l)), 'one node', 60_000)
      const admin = lines.find((l) => /^node n1 admin http:\/\/127\.0\.0\.1:\d+$/.test(l))!.split(' ')[3]!
      expect((await fetch(`${admin}/healthz`)).status).toBe(200)
      process.kill(group, 'SIGINT')
      await until(() => lines.includes('every node stopped'), 'the cluster stopped', 20_000)
      await expect(fetch(`${admin}/healthz`)).rejects.toThrow()
    } finally {
      try {
        process.kill(group, 'SIGKILL')
      } catch {
        // the group has exited
      }
    }
  }, 90_000)
})
