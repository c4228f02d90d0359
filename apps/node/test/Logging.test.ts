import { describe, expect, it } from '@effect/vitest'
import { MemoryTransport, Nodosum } from 'mycorrizal'
import { Duration, Effect, Layer } from 'effect'
import { pino } from 'pino'
import * as Logging from '../src/Logging.js'
import { redactUrlCredentials } from '../src/Redact.js'

/** A pino logger writing JSON lines into an array. */
const capture = () => {
  const lines: Array<string> = []
  const logger = pino({ level: 'debug', base: {} }, { write: (line: string) => void lines.push(line) })
  return { lines, layer: Logging.layer(logger, 'debug') }
}

describe('Logging', () => {
  it('URL credentials are replaced in messages, fields and causes; other text is untouched', () => {
    expect(redactUrlCredentials('consul http://user:hunter2@consul:8500 service mycorrizal')).toBe('consul http://***@consul:8500 service mycorrizal')
    expect(redactUrlCredentials('a https://token@h/x?y=1 and http://u:p@ss@h2')).toBe('a https://***@h/x?y=1 and http://***@h2')
    expect(redactUrlCredentials('mail ops@example.com about http://h/path@v1')).toBe('mail ops@example.com about http://h/path@v1')
    const { lines, layer } = capture()
    Effect.runSync(
      Effect.logWarning('query http://user:hunter2@consul:8500/v1 failed').pipe(
        Effect.annotateLogs({ source: 'consul http://user:hunter2@consul:8500 service s', nested: { urls: ['http://a:hunter2@b'] }, count: 3 }),
        Effect.zipRight(Effect.logError('boom', new Error('fetch http://user:hunter2@consul:8500 refused'))),
        Effect.provide(layer)
      )
    )
    const text = lines.join('')
    expect(lines).toHaveLength(2)
    expect(text).not.toContain('hunter2')
    expect(JSON.parse(lines[0]!)).toMatchObject({ msg: 'query http://***@consul:8500/v1 failed', source: 'consul http://***@consul:8500 service s', nested: { urls: ['http://***@b'] }, count: 3 })
  })

  it.live('a failing Consul discovery with credentials in its URL logs the failure without them', () => {
    const { lines, layer } = capture()
    return Effect.gen(function* () {
      yield* Layer.build(
        Nodosum.layerMemory({
          nodeId: 'a',
          host: 'a',
          port: 7001,
          clusterSecret: 'logging-test-secret-of-at-least-32-characters',
          // nothing listens on port 1: every query fails
          consul: 'http://operator:hunter2@127.0.0.1:1',
          discoveryInterval: 100
        })
      )
      for (let i = 0; i < 100 && !lines.some((l) => l.includes('discovery failed')); i++) yield* Effect.sleep(Duration.millis(50))
      const failures = lines.filter((l) => l.includes('discovery failed'))
      expect(failures.length).toBeGreaterThan(0)
      // the credentials travel as an Authorization header, never in the URL that is logged
      expect(failures[0]).toContain('consul http://127.0.0.1:1 service')
      expect(lines.join('')).not.toContain('hunter2')
      expect(lines.join('')).not.toContain('operator')
    }).pipe(Effect.scoped, Effect.provide(MemoryTransport.networkLayer), Effect.provide(layer))
  })
})
