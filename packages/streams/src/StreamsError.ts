/**
 * Errors of applications and streams, as tagged data.
 *
 * @since 0.1.0
 */
import * as Data from 'effect/Data'

/** Why an application or stream operation failed. */
export type StreamsErrorReason =
  | 'DuplicateApplication'
  | 'ReservedApplication'
  | 'UnknownApplication'
  | 'InvalidName'
  | 'DuplicateStream'
  | 'MaxStreamsReached'
  | 'DefaultStreamOnly'
  | 'UnknownStream'
  | 'StreamClosed'
  | 'UnknownNode'
  | 'MessageTooLarge'
  | 'InvalidConfig'

/** An application or stream operation was refused before anything was sent. */
export class StreamsError extends Data.TaggedError('StreamsError')<{
  readonly reason: StreamsErrorReason
  readonly message: string
}> {}

/**
 * Why a message did not reach one node. `Overloaded`: the node's buffer is full and the sends
 * already waiting for it reach `maxWaitingBytes`, so this one failed at once instead of queueing.
 */
export type DeliveryFailureReason = 'UnknownNode' | 'StreamLimit' | 'StreamRefused' | 'ConnectionLost' | 'StreamClosed' | 'Overloaded'

/** One node a send could not reach, and why. */
export interface DeliveryFailure {
  readonly node: string
  readonly reason: DeliveryFailureReason
  readonly message: string
}

/**
 * A send reached some nodes but not all (or none). `accepted` lists the nodes whose buffer
 * took the message; `failures` says which nodes failed and why. Each failure is also counted
 * in the stream's `failedSends`.
 */
export class SendError extends Data.TaggedError('SendError')<{
  readonly message: string
  readonly accepted: ReadonlyArray<string>
  readonly failures: ReadonlyArray<DeliveryFailure>
}> {}
