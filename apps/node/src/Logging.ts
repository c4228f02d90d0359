/**
 * Logs of the node process: the libraries log through Effect's logger, and this module maps
 * it to pino — one JSON object per line, pretty-printed when stdout is a terminal. The
 * credentials of any URL in a record (a Consul URL with `user:pass@`, in a discovery error
 * logged by the library) are replaced by `***` here, at the edge, whatever logged them.
 *
 * @since 0.1.0
 */
import * as Cause from 'effect/Cause'
import * as HashMap from 'effect/HashMap'
import * as Layer from 'effect/Layer'
import * as Logger from 'effect/Logger'
import * as LogLevel from 'effect/LogLevel'
import { pino, type Logger as Pino } from 'pino'
import pretty from 'pino-pretty'
import type { LogLevel as NodeLogLevel } from './NodeConfig.js'
import { redactUrlCredentials, redactValue } from './Redact.js'

const pinoLevel = (level: LogLevel.LogLevel): 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' => {
  switch (level._tag) {
    case 'Fatal':
      return 'fatal'
    case 'Error':
      return 'error'
    case 'Warning':
      return 'warn'
    case 'Info':
      return 'info'
    case 'Debug':
      return 'debug'
    default:
      return 'trace'
  }
}

const effectLevel: Record<NodeLogLevel, LogLevel.LogLevel> = {
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warn: LogLevel.Warning,
  error: LogLevel.Error,
  silent: LogLevel.None
}

/** A pino logger writing synchronously to stdout; pretty when `pretty` is true. */
export const makePino = (level: NodeLogLevel, prettyPrint: boolean, base: Record<string, unknown> = {}): Pino =>
  prettyPrint
    ? pino({ level, base }, pretty({ sync: true, colorize: true, ignore: 'pid,hostname' }))
    : pino({ level, base: { pid: process.pid, ...base } }, pino.destination({ dest: 1, sync: true }))

/** An Effect logger that writes each record to `target` with its annotations as fields. */
export const fromPino = (target: Pino): Logger.Logger<unknown, void> =>
  Logger.make(({ annotations, cause, logLevel, message }) => {
    const level = pinoLevel(logLevel)
    if (!target.isLevelEnabled(level)) return
    const fields: Record<string, unknown> = {}
    for (const [key, value] of HashMap.toEntries(annotations)) fields[key] = redactValue(value)
    if (!Cause.isEmpty(cause)) fields['err'] = redactUrlCredentials(Cause.pretty(cause))
    const text = Array.isArray(message) ? message.map((m) => (typeof m === 'string' ? m : JSON.stringify(m))).join(' ') : String(message)
    target[level](fields, redactUrlCredentials(text))
  })

/** Replaces Effect's default logger with pino at `level`. */
export const layer = (target: Pino, level: NodeLogLevel): Layer.Layer<never> =>
  Layer.merge(Logger.replace(Logger.defaultLogger, fromPino(target)), Logger.minimumLogLevel(effectLevel[level]))
