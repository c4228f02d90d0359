/**
 * Log capture: an Effect logger that keeps every line's message and annotations, for
 * assertions on what a component logged.
 */
import * as HashMap from 'effect/HashMap'
import type * as Layer from 'effect/Layer'
import * as Logger from 'effect/Logger'

/** One captured log line. */
export interface LogLine {
  /** The message parts joined by a space. */
  readonly message: string
  readonly level: string
  readonly annotations: Record<string, unknown>
}

/** A capture: the lines so far, the logger, and a layer that puts it in place of the default logger. */
export interface LogCapture {
  readonly lines: Array<LogLine>
  readonly logger: Logger.Logger<unknown, void>
  readonly layer: Layer.Layer<never>
}

/** A fresh log capture. */
export const captureLogs = (): LogCapture => {
  const lines: Array<LogLine> = []
  const logger = Logger.make(({ annotations, logLevel, message }) => {
    const record: Record<string, unknown> = {}
    for (const [k, v] of HashMap.toEntries(annotations)) record[k] = v
    lines.push({ message: Array.isArray(message) ? message.map(String).join(' ') : String(message), level: logLevel.label, annotations: record })
  })
  return { lines, logger, layer: Logger.replace(Logger.defaultLogger, logger) }
}
