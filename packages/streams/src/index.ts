/**
 * @mycorrizal/streams — applications with a default stream and named streams.
 *
 * @since 0.1.0
 */
export type * from './Application.js'
export * as Streams from './Streams.js'
export * from './StreamsError.js'
