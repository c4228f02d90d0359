#!/usr/bin/env node
// The `mycorrizal` executable. Installed from npm it runs the built program; inside the
// Mycorrizal repository it runs the TypeScript sources (no build step needed).
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { constants } from 'node:os'

const source = new URL('../src/main.ts', import.meta.url)
let tsx
if (existsSync(source)) {
  try {
    tsx = createRequire(import.meta.url).resolve('tsx')
  } catch {
    tsx = undefined
  }
}

if (tsx === undefined) {
  await import('../dist/main.js')
} else {
  const child = spawn(process.execPath, ['--import', tsx, '--conditions=@mycorrizal/source', source.pathname, ...process.argv.slice(2)], { stdio: 'inherit' })
  // signals go on to the program, which stops gracefully; its exit code is ours
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal))
  child.on('exit', (code, signal) => process.exit(code ?? 128 + (constants.signals[signal] ?? 0)))
}
