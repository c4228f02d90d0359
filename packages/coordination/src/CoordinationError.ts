/**
 * Errors of the coordination services (topics), as tagged data.
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

/** A coordination operation failed. */
export class CoordinationError extends Data.TaggedError('CoordinationError')<{
  readonly reason: CoordinationErrorReason
  readonly message: string
  /** The nodes the operation failed for, when it names any. */
  readonly nodes?: ReadonlyArray<string>
}> {}
