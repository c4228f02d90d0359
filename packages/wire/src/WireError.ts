/**
 * The one error of the wire codec, as tagged data.
 *
 * @since 0.1.0
 */
import * as Data from 'effect/Data'

/** Why bytes could not be encoded or decoded. */
export type WireErrorReason =
  | 'FrameTooLarge'
  | 'MalformedStreamInit'
  | 'UnknownFrameType'
  | 'InvalidUtf8'
  | 'UnexpectedEof'
  | 'UnknownMessageType'
  | 'UnsupportedVersion'
  | 'InvalidField'
  | 'TrailingBytes'

/** Bytes that break the protocol, or a value that cannot be encoded. */
export class WireError extends Data.TaggedError('WireError')<{
  readonly reason: WireErrorReason
  readonly message: string
}> {}

/** True for a `WireError`. */
export const isWireError = (u: unknown): u is WireError => u instanceof WireError
