/**
 * The package index's `Nodosum` namespace: the contract (`Nodosum.ts`) and, under the names
 * it always had, the implementation's constructors (`Cluster.ts`). The contract module itself
 * imports no implementation.
 */
export * from '../Nodosum.js'
export { layerConfig, layerMemory, layerQuic as layer, make, tlsIdentity } from '../Cluster.js'
