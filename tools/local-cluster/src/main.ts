/**
 * A local cluster on loopback: N node processes with embedded defaults (a generated cluster
 * secret, the first node as everyone's seed). Each prints its address; membership changes are
 * reported as they happen. Ctrl-C (or SIGTERM) stops them all: every node leaves gracefully.
 *
 *   npm start                      # 3 nodes
 *   npm start -- --nodes 5
 */
import { createMycorrizal } from 'mycorrizal'
import { type ChildProcess, fork } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { parseArgs } from 'node:util'

interface NodeSettings {
  readonly nodeId: string
  readonly port: number
  readonly seeds: ReadonlyArray<string>
  readonly clusterSecret: string
}

/** One node, in a child process: reports its address and membership changes to the parent. */
const runNode = async (settings: NodeSettings) => {
  const node = await createMycorrizal({ ...settings, host: '127.0.0.1', logLevel: 'warning' })
  process.send?.({ type: 'ready', id: node.id, port: node.address.port })
  let last = ''
  const report = () => {
    const now = node.nodes().join(',')
    if (now !== last) {
      last = now
      process.send?.({ type: 'members', id: node.id, nodes: node.nodes() })
    }
  }
  const timer = setTimeout(function tick() {
    report()
    timer.refresh()
  }, 200)
  const stop = async () => {
    clearTimeout(timer)
    await node.shutdown()
    process.exit(0)
  }
  process.once('SIGTERM', () => void stop())
  process.once('SIGINT', () => void stop())
  process.once('disconnect', () => void stop())
}

const main = async () => {
  const { values } = parseArgs({ options: { nodes: { type: 'string', default: '3' } } })
  const count = Number(values.nodes)
  if (!Number.isInteger(count) || count < 1 || count > 50) {
    console.error('--nodes must be an integer from 1 to 50')
    process.exit(2)
  }
  const clusterSecret = randomBytes(18).toString('base64url')
  const children: Array<ChildProcess> = []
  const start = (settings: NodeSettings) =>
    new Promise<number>((resolve, reject) => {
      const child = fork(new URL(import.meta.url).pathname, ['--node', JSON.stringify(settings)], { execArgv: process.execArgv })
      children.push(child)
      child.on('message', (m: { type: string; id: string; port?: number; nodes?: Array<string> }) => {
        if (m.type === 'ready') {
          console.log(`node ${m.id} quic 127.0.0.1:${m.port}`)
          resolve(m.port!)
        } else if (m.type === 'members') {
          console.log(`node ${m.id} sees ${m.nodes!.length} members: ${m.nodes!.join(' ')}`)
        }
      })
      child.once('exit', (code) => reject(new Error(`node ${settings.nodeId} exited with code ${code}`)))
    })
  let stopping = false
  const stopAll = async () => {
    if (stopping) return
    stopping = true
    console.log('stopping: every node leaves the cluster')
    await Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null) return resolve()
            child.once('exit', () => resolve())
            child.kill('SIGTERM')
            setTimeout(() => child.kill('SIGKILL'), 5_000).unref()
          })
      )
    )
    process.exit(0)
  }
  process.once('SIGINT', () => void stopAll())
  process.once('SIGTERM', () => void stopAll())
  const seedPort = await start({ nodeId: 'n1', port: 0, seeds: [], clusterSecret })
  await Promise.all(Array.from({ length: count - 1 }, (_, i) => start({ nodeId: `n${i + 2}`, port: 0, seeds: [`127.0.0.1:${seedPort}`], clusterSecret })))
  console.log(`${count} nodes running on loopback; Ctrl-C stops them all`)
}

const nodeArg = process.argv.indexOf('--node')
if (nodeArg >= 0) await runNode(JSON.parse(process.argv[nodeArg + 1]!) as NodeSettings)
else await main()
