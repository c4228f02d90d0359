/**
 * @mycorrizal/node — the `mycorrizal` executable and its parts, for programs that embed them:
 * node settings, the admin HTTP API, the local cluster launcher and the admin client.
 *
 * @since 0.1.0
 */
export * as Admin from './Admin.js'
export * as Cli from './Cli.js'
export * as Client from './Client.js'
export * as Cluster from './Cluster.js'
export * as Logging from './Logging.js'
export * as Node from './Node.js'
export * as NodeConfig from './NodeConfig.js'
