/**
 * The `mycorrizal` executable.
 *
 * @since 0.1.0
 */
import { ValidationError } from '@effect/cli'
import { NodeContext, NodeRuntime } from '@effect/platform-node'
import * as Cause from 'effect/Cause'
import * as Effect from 'effect/Effect'
import { readFileSync } from 'node:fs'
import * as Cli from './Cli.js'

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }

// The first SIGINT or SIGTERM stops the program gracefully (a node leaves its cluster). A
// terminal's Ctrl-C reaches every process of its group and a parent forwards signals too:
// the ones after the first must not cut that short.
process.on('SIGINT', () => {})
process.on('SIGTERM', () => {})

Cli.run(process.argv, version).pipe(
  Effect.catchIf(ValidationError.isValidationError, () =>
    // @effect/cli has printed what was wrong with the arguments
    Effect.sync(() => {
      process.exitCode = Cli.EXIT_USAGE
    })
  ),
  Effect.catchAllDefect((defect) => Effect.sync(() => {
    process.stderr.write(`error: ${Cause.pretty(Cause.die(defect))}\n`)
    process.exitCode = 1
  })),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({ disableErrorReporting: true, disablePrettyLogger: true })
)
