/**
 * Topics: publish/subscribe between the nodes of a cluster. Every subscriber on every node (this
 * one included) gets each message once, in publish order per publisher; each topic has its own
 * stream, so a busy topic (or a slow handler) does not hold back another; a publish completes
 * once every node with a subscriber took the message.
 *
 * ```ts
 * const sub = yield* topics.subscribe('orders', (payload, fromNode) => { ... })
 * yield* topics.publish('orders', payload)
 * yield* sub.unsubscribe
 * ```
 *
 * @since 0.1.0
 */
import type { Nodosum } from '@mycorrizal/nodosum'
import type { Streams } from '@mycorrizal/streams'
import * as Context from 'effect/Context'
import * as Effect from 'effect/Effect'
import * as Layer from 'effect/Layer'
import { makeService, type TopicsOptions, type TopicsService } from './internal/service.js'

export type { Subscription, TopicHandler, TopicsOptions, TopicsService } from './internal/service.js'
export type { TopicStats } from './internal/topics.js'
export { APP_ID } from './internal/service.js'
export { MAX_TOPIC_BYTES } from './internal/topics.js'

/** The topics service of this node. */
export class Topics extends Context.Tag('@mycorrizal/coordination/Topics')<Topics, TopicsService>() {}

/** Builds the service in the current scope (it registers the `SYSTEM-TOPICS` application). */
export const make = (options: TopicsOptions = {}) => Effect.map(makeService(options), (service) => Topics.of(service))

/** The service as a layer over `Nodosum` and `Streams`. */
export const layer = (options: TopicsOptions = {}): Layer.Layer<Topics, never, Nodosum.Nodosum | Streams.Streams> =>
  Layer.scoped(Topics, make(options).pipe(Effect.orDie))
