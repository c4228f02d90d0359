/**
 * @mycorrizal/nodosum — the cluster layer: transport, handshake, membership, discovery.
 *
 * @since 0.1.0
 */
export * as MemoryTransport from './MemoryTransport.js'
export * from './NodosumError.js'
export * from './Transport.js'
export * as TransportConfig from './TransportConfig.js'
