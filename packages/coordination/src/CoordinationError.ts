/**
 * Errors of the coordination services (topics, locks, elections), as tagged data.
 *
 * @since 0.1.0
 */
import * as Data from 'effect/Data'

/** Why a coordination operation failed. */
export type CoordinationErrorReason =
  /** A topic name is empty, too long or not valid UTF-8. */
  | 'InvalidTopic'
  /** This node already has as many topics as it allows (`maxTopics`). */
  | 'TooManyTopics'
  /** A node with a subscriber could not be sent the message (its failure is in the message). */
  | 'PublishFailed'
  /** A node did not answer in time: a subscriber node did not take a message, or a member did not learn of a subscription. */
  | 'Timeout'
  /** The service is shutting down. */
  | 'Closed'
  /** A lock or election name is empty, too long or not valid UTF-8, or a lease is out of bounds. */
  | 'InvalidLock'
  /** This node sees fewer members than `minMembers`, so it does not grant or extend a lock. */
  | 'NotEnoughMembers'
  /** The lock is no longer this holder's: its record changed (the lease had passed and another node took it). */
  | 'LockLost'
  /** The cache under the locks could not answer (its error is in the message); the operation may or may not have taken effect. */
  | 'Unavailable'

/** A coordination operation failed. */
export class CoordinationError extends Data.TaggedError('CoordinationError')<{
  readonly reason: CoordinationErrorReason
  readonly message: string
  /** The nodes the operation failed for, when it names any. */
  readonly nodes?: ReadonlyArray<string>
}> {}

/** `acquire` waited `waitMs` and the lock stayed held by another holder. */
export class LockTimeout extends Data.TaggedError('LockTimeout')<{
  readonly message: string
  /** The lock's name. */
  readonly name: string
  /** How long the acquire waited, in ms. */
  readonly waitedMs: number
  /** The holder seen last, when one was seen. */
  readonly holder?: string
}> {}
