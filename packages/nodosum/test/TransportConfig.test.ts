import { beforeAll, describe, expect, it } from '@effect/vitest'
import { Duration, Effect, Either } from 'effect'
import * as TransportConfig from '../src/TransportConfig.js'

const errorOf = (input: TransportConfig.TransportSettingsInput) => {
  const result = TransportConfig.validate(input)
  if (Either.isRight(result)) throw new Error('expected a ConfigError')
  return result.left
}

describe('TransportConfig', () => {
  // the schemas are built on first use (not at import); the synchronous validate needs them
  beforeAll(() => Effect.runPromise(TransportConfig.load))

  it('defaults are the spec LAN profile', () => {
    const settings = Either.getOrThrow(TransportConfig.validate())
    expect(settings.maxStreams).toBe(100)
    expect(settings.streamWindow).toBe(512 * 1024)
    expect(settings.maxStreamWindow).toBe(512 * 1024)
    expect(settings.connectionWindow).toBe(15 * 1024 * 1024)
    expect(settings.maxConnectionWindow).toBe(15 * 1024 * 1024)
    expect(Duration.toMillis(settings.handshakeTimeout)).toBe(5_000)
    expect(settings.datagramSize).toBe(1452)
  })

  it('accepts durations as numbers of milliseconds or strings', () => {
    const settings = Either.getOrThrow(TransportConfig.validate({ idleTimeout: 1500, handshakeTimeout: '2 seconds' }))
    expect(Duration.toMillis(settings.idleTimeout)).toBe(1500)
    expect(Duration.toMillis(settings.handshakeTimeout)).toBe(2000)
  })

  it.each([
    [{ port: 70000 }, 'port', /0 to 65535/],
    [{ port: 1.5 }, 'port', /integer/],
    [{ datagramSize: 1000 }, 'datagramSize', /at least 1200/],
    [{ maxStreams: 0 }, 'maxStreams', /from 1/],
    [{ host: '' }, 'host', /non-empty/],
    [{ host: 7 as never }, 'host', /non-empty/],
    [{ port: '80' as never }, 'port', /integer from 0 to 65535/],
    [{ socketBufferSize: Number.NaN }, 'socketBufferSize', /integer/],
    [{ handshakeTimeout: 'soon' as never }, 'handshakeTimeout', /duration/],
    [{ idleTimeout: 10 }, 'idleTimeout', /from 100 ms/],
    [{ streamWindow: 8 * 1024 * 1024 }, 'maxStreamWindow', /at least streamWindow/],
    [{ connectionWindow: 64 * 1024 }, 'connectionWindow', /at least streamWindow/],
    [{ connectionWindow: 32 * 1024 * 1024 }, 'maxConnectionWindow', /at least connectionWindow/]
  ])('refuses %j naming the field', (input, field, message) => {
    const error = errorOf(input as TransportConfig.TransportSettingsInput)
    expect(error._tag).toBe('NodosumConfigError')
    expect(error.field).toBe(field)
    expect(error.message).toMatch(message)
  })

  it('keeps only the known fields', () => {
    const settings = Either.getOrThrow(TransportConfig.validate({ port: 1, extra: true } as TransportConfig.TransportSettingsInput))
    expect(Object.keys(settings).sort()).toEqual(Object.keys(TransportConfig.defaults).sort())
  })
})
