/**
 * Errors of the cache, as tagged data.
 *
 * @since 0.1.0
 */
import { Data } from 'effect'

/** Why a cache operation failed. */
export type MycelErrorReason =
  /** This node, or the node asked, has no bucket of that name. */
  | 'BucketNotFound'
  | 'BucketExists'
  | 'InvalidBucket'
  /** The value does not fit in one message; nothing was sent. */
  | 'ValueTooLarge'
  /** No owner of the key answered in time. */
  | 'Timeout'
  /** No owner of the key is reachable. */
  | 'Unavailable'
  /** The cache is shutting down. */
  | 'Closed'

/** A cache operation failed. */
export class MycelError extends Data.TaggedError('MycelError')<{
  readonly reason: MycelErrorReason
  readonly message: string
}> {}
