/**
 * mycorrizal — embedded clustering for Node.js services.
 *
 * @since 0.1.0
 */
export * from '@mycorrizal/coordination'
export * from '@mycorrizal/mycel'
export * from '@mycorrizal/nodosum'
export * from '@mycorrizal/streams'
export * as Mycorrizal from './Mycorrizal.js'
export { createMycorrizal } from './Mycorrizal.js'
export type {
  MembershipChange,
  MycorrizalApplication,
  MycorrizalCache,
  MycorrizalConfig,
  MycorrizalElection,
  MycorrizalError,
  MycorrizalLock,
  MycorrizalLocks,
  MycorrizalNode,
  MycorrizalStream,
  MycorrizalSubscription,
  MycorrizalTopics
} from './Mycorrizal.js'
