/**
 * The independent implementation must stay independent: every module of this folder except
 * the tests (which run a real node against it) imports only Node built-ins, the QUIC binding,
 * the X.509 library that makes its certificate, and its own files.
 */
import { describe, expect, it } from 'vitest'
import { readdirSync, readFileSync } from 'node:fs'

const dir = new URL('./', import.meta.url)
const allowed = (spec: string) =>
  spec.startsWith('node:') || spec === '@matrixai/quic/native/index.js' || spec === '@peculiar/x509' || spec === 'reflect-metadata' || /^\.\/[\w-]+\.js$/.test(spec)

/** Every module specifier of a file: static and dynamic imports, re-exports. */
const specifiers = (source: string) => [...source.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*)['"]([^'"]+)['"]/g)].map((m) => m[1]!)

describe('the independent peer imports nothing of the project', () => {
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))

  it('has its modules here', () => {
    expect(files.sort()).toEqual(['peer.ts', 'wire.ts'])
  })

  it.each(files)('%s imports only node:*, the QUIC binding, @peculiar/x509 and its own folder', (file) => {
    const found = specifiers(readFileSync(new URL(file, dir), 'utf8'))
    expect(found.filter((s) => !allowed(s))).toEqual([])
  })

  it('the check reads the imports: peer.ts speaks QUIC through the native binding', () => {
    expect(specifiers(readFileSync(new URL('peer.ts', dir), 'utf8'))).toEqual(expect.arrayContaining(['@matrixai/quic/native/index.js', 'node:dgram', 'node:crypto', './wire.js']))
  })

  it('the check sees a forbidden import', () => {
    expect(specifiers("import { x } from '@mycorrizal/wire'\nconst y = await import('../../src/index.js')").filter((s) => !allowed(s))).toEqual([
      '@mycorrizal/wire',
      '../../src/index.js'
    ])
  })
})
