/**
 * @mycorrizal/streams — applications with a default stream and named streams.
 *
 * @since 0.1.0
 */
export type * from './Application.js'
export * as Streams from './internal/namespace.js'
export * as StreamsConfig from './StreamsConfig.js'
export * from './StreamsError.js'
