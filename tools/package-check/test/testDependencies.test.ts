import { describe, expect, it } from '@effect/vitest'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { publishablePackages, testDependencies } from '../src/PackageCheck.js'

describe('test dependencies of published packages', () => {
  it('are found in dependencies, peer and optional dependencies', () => {
    expect(testDependencies({ dependencies: { effect: '^3', vitest: '~3.2' }, devDependencies: { 'fast-check': '^4' } } as never)).toEqual(['dependencies: vitest'])
    expect(testDependencies({ peerDependencies: { '@effect/vitest': '^0.30' }, optionalDependencies: { '@mycorrizal/testing': '*', 'fast-check': '^4' } })).toEqual([
      'peerDependencies: @effect/vitest',
      'optionalDependencies: @mycorrizal/testing',
      'optionalDependencies: fast-check'
    ])
    expect(testDependencies({})).toEqual([])
  })

  it('no publishable package declares one (the packed manifests are checked again in pack.test.ts)', () => {
    for (const pkg of publishablePackages()) {
      const manifest = JSON.parse(readFileSync(join(pkg.dir, 'package.json'), 'utf8'))
      expect([pkg.name, testDependencies(manifest)]).toEqual([pkg.name, []])
    }
  })
})
