/**
 * @mycorrizal/wire — the Mycorrizal wire protocol v1. Pure codecs, no I/O.
 *
 * @since 0.1.0
 */
export * as CacheMessage from './CacheMessage.js'
export * as ControlMessage from './ControlMessage.js'
export * as Decoder from './Decoder.js'
export * as Frame from './Frame.js'
export * as StreamInit from './StreamInit.js'
export * as SystemMessage from './SystemMessage.js'
export * as TopicMessage from './TopicMessage.js'
export * from './WireError.js'
