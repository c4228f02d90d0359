import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

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

const run = (cmd: string, args: ReadonlyArray<string>, cwd: string): string =>
  execFileSync(cmd, args as Array<string>, {
    cwd,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' }
  })

export interface InstalledProject {
  readonly dir: string
  readonly tarballs: ReadonlyArray<string>
  /** Runs an ES module with plain `node` inside the blank project; returns its stdout. */
  readonly runModule: (source: string) => string
  readonly dispose: () => void
}

/**
 * Packs every given package with `npm pack` (their `dist` must be built) and installs the
 * tarballs together into a new, blank npm project in a temporary directory.
 */
export const packAndInstall = (packages: ReadonlyArray<PublishablePackage>): InstalledProject => {
  const dir = mkdtempSync(join(tmpdir(), 'mycorrizal-pack-'))
  const tarballs = packages.map((pkg) => {
    const out = run('npm', ['pack', '--json', '--pack-destination', dir], pkg.dir)
    const [info] = JSON.parse(out) as Array<{ filename: string }>
    return join(dir, info.filename)
  })
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'blank', version: '1.0.0', private: true, type: 'module' }))
  run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--no-package-lock', ...tarballs], dir)
  return {
    dir,
    tarballs,
    runModule: (source) => {
      const file = join(dir, `check-${Math.random().toString(36).slice(2)}.mjs`)
      writeFileSync(file, source)
      return run(process.execPath, [file], dir)
    },
    dispose: () => rmSync(dir, { recursive: true, force: true })
  }
}
