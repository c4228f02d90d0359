/**
 * @mycorrizal/coordination — what services otherwise run Redis for, between the nodes of a
 * cluster: topics (publish/subscribe), locks with fencing tokens, leader election.
 *
 * @since 0.1.0
 */
export * from './CoordinationError.js'
export * as Topics from './Topics.js'
export * as Locks from './Locks.js'
export * as Elections from './Elections.js'
