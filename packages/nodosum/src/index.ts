/**
 * @mycorrizal/nodosum — the cluster layer: transport, handshake and authentication,
 * membership, discovery.
 *
 * @since 0.1.0
 */
export * as Certificates from './Certificates.js'
export * as Cluster from './Cluster.js'
export * as Discovery from './Discovery.js'
export * as MemoryTransport from './MemoryTransport.js'
export * as Nodosum from './internal/nodosum.js'
export * as NodosumConfig from './NodosumConfig.js'
export * from './NodosumError.js'
export * from './PeerStream.js'
export * as QuicTransport from './QuicTransport.js'
export * from './Transport.js'
export * as TransportConfig from './TransportConfig.js'
export { DatagramSize } from './TransportConfig.js'
