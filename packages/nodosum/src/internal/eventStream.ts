/**
 * `Nodosum.events` on first access. A `Stream` value can only be made by `effect/Stream`
 * (with its channel machinery and the STM modules it re-exports, ~70 modules: about half
 * again what `effect/Effect` costs to load), and the member is a plain property, so the module
 * is loaded synchronously when the member is first read: `require()` of the ES module file
 * itself (Node >= 20.19), which Node shares with `import` — the same module instance, whichever
 * comes first. A node whose code never reads `events` never loads it; the library's own
 * readers of membership use `Nodosum.subscribe` (a `PubSub` subscription).
 */
import type * as PubSub from 'effect/PubSub'
import type * as Stream from 'effect/Stream'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'

let module: typeof Stream | undefined

const load = (): typeof Stream => {
  const require = createRequire(import.meta.url)
  // the ES module's own file, as Effect's `exports` map names it for `import`:
  // `require('effect/Stream')` would resolve its CommonJS build, a second copy of Effect
  const manifest = require.resolve('effect/package.json')
  const exports = (require(manifest) as { exports: Record<string, { import: string }> }).exports
  return require(join(dirname(manifest), exports['./Stream']!.import)) as typeof Stream
}

/** `Stream.fromPubSub`, loading `effect/Stream` on the first call. */
export const fromPubSub = <A>(pubsub: PubSub.PubSub<A>): Stream.Stream<A> => (module ??= load()).fromPubSub(pubsub)

/** Whether `effect/Stream` has been loaded through here (for tests). */
export const loaded = (): boolean => module !== undefined
