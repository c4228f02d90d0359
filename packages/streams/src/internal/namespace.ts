/**
 * The `Streams` namespace of the package: the contract (`Streams.ts`) and its implementation.
 */
export * from '../Streams.js'
export { layer, layerConfig, make } from './service.js'
