import { execFile, execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'

/** The workspace root, two levels above this tool. */
export const workspaceRoot = resolve(import.meta.dirname, '../../..')

export interface PublishablePackage {
  readonly name: string
  readonly dir: string
  readonly version: string
}

/** Every non-private package under `packages/` and `apps/`. */
export const publishablePackages = (): ReadonlyArray<PublishablePackage> =>
  ['packages', 'apps']
    .flatMap((folder) =>
      readdirSync(join(workspaceRoot, folder), { withFileTypes: true })
        .filter((entry) => entry.isDirectory())
        .map((entry) => join(workspaceRoot, folder, entry.name))
    )
    .map((dir) => ({ dir, manifest: JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) }))
    .filter(({ manifest }) => manifest.private !== true)
    .map(({ dir, manifest }) => ({ name: manifest.name as string, version: manifest.version as string, dir }))

/** Packages only tests use: a published package must not depend on them in any way. */
export const TEST_ONLY_PACKAGES: ReadonlyArray<string> = ['vitest', '@effect/vitest', 'fast-check', '@mycorrizal/testing']

/** A package manifest as far as its dependencies go. */
export interface ManifestDependencies {
  readonly dependencies?: Readonly<Record<string, string>>
  readonly peerDependencies?: Readonly<Record<string, string>>
  readonly optionalDependencies?: Readonly<Record<string, string>>
}

/**
 * The test-only packages a manifest would make its users install or resolve
 * (`dependencies`, `peerDependencies`, `optionalDependencies`), as `field: name`.
 */
export const testDependencies = (manifest: ManifestDependencies): ReadonlyArray<string> =>
  (['dependencies', 'peerDependencies', 'optionalDependencies'] as const).flatMap((field) =>
    Object.keys(manifest[field] ?? {})
      .filter((name) => TEST_ONLY_PACKAGES.includes(name))
      .map((name) => `${field}: ${name}`)
  )

/** Runs an installed executable of the project; returns its exit status and output. */
export const runBin = (project: InstalledProject, bin: string, args: ReadonlyArray<string>) => {
  const result = spawnSync(join(project.dir, 'node_modules', '.bin', bin), args as Array<string>, { cwd: project.dir, encoding: 'utf8', timeout: 60_000 })
  return { status: result.status, stdout: result.stdout, stderr: result.stderr }
}

const npmEnv = () => ({ ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' })

const run = (cmd: string, args: ReadonlyArray<string>, cwd: string): string =>
  execFileSync(cmd, args as Array<string>, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: npmEnv() })

const runAsync = async (cmd: string, args: ReadonlyArray<string>, cwd: string): Promise<string> =>
  (await promisify(execFile)(cmd, args as Array<string>, { cwd, encoding: 'utf8', env: npmEnv(), maxBuffer: 64 * 1024 * 1024 })).stdout

export interface InstalledProject {
  readonly dir: string
  readonly tarballs: ReadonlyArray<string>
  /** Runs an ES module with plain `node` inside the blank project; returns its stdout. */
  readonly runModule: (source: string) => string
  /** `runModule` without blocking the event loop (for modules that run for seconds). */
  readonly runModuleAsync: (source: string) => Promise<string>
  readonly dispose: () => void
}

/**
 * Packs every given package with `npm pack` (their `dist` must be built) and installs the
 * tarballs together into a new, blank npm project in a temporary directory.
 */
export const packAndInstall = (packages: ReadonlyArray<PublishablePackage>): InstalledProject => {
  const dir = mkdtempSync(join(tmpdir(), 'mycorrizal-pack-'))
  const tarballs = packages.map((pkg) => tarballOf(dir, run('npm', ['pack', '--json', '--pack-destination', dir], pkg.dir)))
  writeFileSync(join(dir, 'package.json'), BLANK_MANIFEST)
  run('npm', ['install', ...INSTALL_FLAGS, ...tarballs], dir)
  return installed(dir, tarballs)
}

/** `packAndInstall` without blocking the event loop (for test runners that talk to their workers). */
export const packAndInstallAsync = async (packages: ReadonlyArray<PublishablePackage>): Promise<InstalledProject> => {
  const dir = mkdtempSync(join(tmpdir(), 'mycorrizal-pack-'))
  const tarballs: Array<string> = []
  for (const pkg of packages) tarballs.push(tarballOf(dir, await runAsync('npm', ['pack', '--json', '--pack-destination', dir], pkg.dir)))
  writeFileSync(join(dir, 'package.json'), BLANK_MANIFEST)
  await runAsync('npm', ['install', ...INSTALL_FLAGS, ...tarballs], dir)
  return installed(dir, tarballs)
}

const BLANK_MANIFEST = JSON.stringify({ name: 'blank', version: '1.0.0', private: true, type: 'module' })
const INSTALL_FLAGS = ['--no-audit', '--no-fund', '--prefer-offline', '--no-package-lock']

const tarballOf = (dir: string, packOutput: string): string => {
  const [info] = JSON.parse(packOutput) as Array<{ filename: string }>
  return join(dir, info!.filename)
}

const installed = (dir: string, tarballs: ReadonlyArray<string>): InstalledProject => ({
  dir,
  tarballs,
  runModule: (source) => {
    const file = join(dir, `check-${Math.random().toString(36).slice(2)}.mjs`)
    writeFileSync(file, source)
    return run(process.execPath, [file], dir)
  },
  runModuleAsync: (source) => {
    const file = join(dir, `check-${Math.random().toString(36).slice(2)}.mjs`)
    writeFileSync(file, source)
    return runAsync(process.execPath, [file], dir)
  },
  dispose: () => rmSync(dir, { recursive: true, force: true })
})

/** What one `import()` of a package costs in a fresh plain `node` process of the project. */
export interface ImportCost {
  /** Wall time of the import (ms). */
  readonly ms: number
  /** CPU time (user + system, every thread) the import took (ms): less sensitive to a busy machine. */
  readonly cpuMs: number
  /** Resident set size after the import (MiB). */
  readonly rssMiB: number
}

/** Imports `specifier` in a new `node` process inside the project; what it cost. */
export const importCost = (project: InstalledProject, specifier: string): ImportCost =>
  JSON.parse(
    project
      .runModule(
        `import { performance } from 'node:perf_hooks'
        const cpu = process.cpuUsage()
        const start = performance.now()
        await import(${JSON.stringify(specifier)})
        const ms = performance.now() - start
        const used = process.cpuUsage(cpu)
        console.log(JSON.stringify({ ms, cpuMs: (used.user + used.system) / 1000, rssMiB: process.memoryUsage().rss / 1048576 }))`
      )
      .trim()
      .split('\n')
      .at(-1)!
  ) as ImportCost

/**
 * Every module URL that `import(specifier)` loads, in a new `node` process inside the project
 * (read by a module resolve hook).
 */
export const loadedModules = (project: InstalledProject, specifier: string): ReadonlyArray<string> =>
  modulesLoadedBy(project, `await import(${JSON.stringify(specifier)})`).loaded

/** What `modulesLoadedBy` saw: the modules loaded, and what the script printed on its last line. */
export interface LoadedBy {
  /** Every module URL loaded while the script ran (imports, and the files `require()` loaded). */
  readonly loaded: ReadonlyArray<string>
  /** The last line the script wrote with `console.log` before it ended, parsed as JSON (`null` if none). */
  readonly result: unknown
}

/**
 * Runs `body` (the body of an async ES module; it may `await`, and `console.log` one JSON line
 * as its result) in a new `node` process inside the project and returns every module URL it
 * loaded: those an `import` resolved (read by a module resolve hook) and the files `require()`
 * loaded (read from its cache, which also holds an ES module that `require()` loaded: the
 * resolve hook does not see those). Inside `body`, `await loadedNow()` gives the same list
 * so far.
 */
export const modulesLoadedBy = (project: InstalledProject, body: string): LoadedBy => parseLoaded(project.runModule(loadingScript(body)))

/** `modulesLoadedBy` without blocking the event loop (for scripts that start nodes). */
export const modulesLoadedByAsync = async (project: InstalledProject, body: string): Promise<LoadedBy> =>
  parseLoaded(await project.runModuleAsync(loadingScript(body)))

const parseLoaded = (out: string): LoadedBy => JSON.parse(out.trim().split('\n').at(-1)!) as LoadedBy

const loadingScript = (body: string): string => {
  const hooks = `
    let port
    export function initialize(data) { port = data.port; port.on('message', () => port.postMessage({ done: true })) }
    export async function resolve(specifier, context, next) {
      const resolved = await next(specifier, context)
      port.postMessage({ url: resolved.url })
      return resolved
    }`
  return `
    import { createRequire, register } from 'node:module'
    import { pathToFileURL } from 'node:url'
    import { MessageChannel } from 'node:worker_threads'
    const { port1, port2 } = new MessageChannel()
    const urls = new Set()
    const flushes = []
    port1.on('message', (m) => (m.done ? flushes.shift()() : urls.add(m.url)))
    const requireCache = createRequire(import.meta.url).cache
    const loadedNow = async () => {
      // the hooks answer in order: once this comes back, every URL before it has arrived
      await new Promise((resolve) => {
        flushes.push(resolve)
        port1.postMessage({ flush: true })
      })
      for (const file of Object.keys(requireCache)) urls.add(pathToFileURL(file).href)
      return [...urls]
    }
    register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hooks)}), { data: { port: port2 }, transferList: [port2] })
    const lines = []
    const log = console.log
    console.log = (...args) => lines.push(args.join(' '))
    try {
      await (async () => {
        ${body}
      })()
    } finally {
      console.log = log
    }
    const loaded = await loadedNow()
    port1.close()
    console.log(JSON.stringify({ loaded, result: lines.length === 0 ? null : JSON.parse(lines.at(-1)) }))
  `
}

/** The median of some numbers. */
export const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}
