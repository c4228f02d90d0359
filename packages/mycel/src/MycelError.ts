/**
 * Errors of the cache, as tagged data.
 *
 * @since 0.1.0
 */
import * as Data from 'effect/Data'

/** Why a cache operation failed. */
export type MycelErrorReason =
  /** This node, or the node asked, has no bucket of that name. */
  | 'BucketNotFound'
  | 'BucketExists'
  | 'InvalidBucket'
  /** An option of the cache is out of its bounds (`MycelConfig`); the message names it. */
  | 'InvalidConfig'
  /** The value does not fit in one message; nothing was sent. */
  | 'ValueTooLarge'
  /** No owner of the key answered in time. */
  | 'Timeout'
  /** No owner of the key is reachable. */
  | 'Unavailable'
  /** The cache is shutting down. */
  | 'Closed'
  /**
   * Too many bytes are in flight to a peer the operation needs (requests awaiting its answer,
   * messages waiting for its buffer): the operation failed at once instead of queueing.
   */
  | 'Overloaded'
  /** An owner refused the write's version (the nodes' clocks are too far apart). */
  | 'Refused'
  /**
   * Other writes to the key kept overtaking this one; it was not stored as the newest. For an
   * atomic operation: an owner held a newer version than the primary, so the operation may not
   * have taken effect.
   */
  | 'Conflict'
  /** increment: the stored value is not a decimal integer (like Redis' "value is not an integer"), or the delta is not an integer. */
  | 'NotInteger'
  /** increment: the delta or the result is not a safe integer (beyond ±2^53 − 1). */
  | 'Overflow'

/** A cache operation failed. */
export class MycelError extends Data.TaggedError('MycelError')<{
  readonly reason: MycelErrorReason
  readonly message: string
}> {}
