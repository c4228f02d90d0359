/**
 * Application ids, stream names and application settings: defaults, and the limits of
 * `StreamsConfig`.
 */
import * as Either from 'effect/Either'
import { DEFAULT_PRIORITY, isStreamPriority, type StreamPriority } from '@mycorrizal/nodosum'
import type { ApplicationConfig, PriorityOptions } from '../Application.js'
import { validateApplication } from '../StreamsConfig.js'
import { StreamsError } from '../StreamsError.js'

const NAME_BYTES = 255
/** The system applications of the packages above streams (the cache, topics); other SYSTEM- ids are refused. */
const SYSTEM_APPLICATIONS: ReadonlySet<string> = new Set(['SYSTEM-MYCEL', 'SYSTEM-TOPICS'])
const utf8Length = (s: string) => Buffer.byteLength(s, 'utf8')

export const DEFAULT_MAX_STREAMS = 20
export const DEFAULT_BUFFER_SIZE = 100
export const DEFAULT_BUFFER_BYTES = 8 * 1024 * 1024

/** A stream name: 1 to 255 bytes of UTF-8. */
export const validStreamName = (name: string): StreamsError | undefined =>
  name.length === 0 || utf8Length(name) > NAME_BYTES
    ? new StreamsError({ reason: 'InvalidName', message: `a stream name must be 1 to ${NAME_BYTES} bytes of UTF-8` })
    : undefined

/** A priority with its defaults (urgency 3, incremental), or why it is not valid. */
export const resolvePriority = (p: PriorityOptions | undefined, base: StreamPriority = DEFAULT_PRIORITY): Either.Either<StreamPriority, StreamsError> => {
  const priority = { urgency: p?.urgency ?? base.urgency, incremental: p?.incremental ?? base.incremental }
  return isStreamPriority(priority)
    ? Either.right(priority)
    : Either.left(new StreamsError({ reason: 'InvalidConfig', message: 'priority.urgency must be an integer from 0 (first) to 7, priority.incremental a boolean' }))
}

/** What the node decides for every application. */
export interface NodeDefaults {
  /** The service's grace period for unclaimed incoming streams (ms). */
  readonly graceMs: number
  /** The largest message the transport frames (bytes). */
  readonly maxMessageSize: number
}

const GiB = 1024 * 1024 * 1024

/** The settings with their defaults, or why they are not valid. */
export const resolveConfig = (config: ApplicationConfig, node: NodeDefaults): Either.Either<Required<ApplicationConfig>, StreamsError> => {
  if (typeof config.id !== 'string' || config.id.length === 0 || utf8Length(config.id) > NAME_BYTES) {
    return Either.left(new StreamsError({ reason: 'InvalidName', message: `an application id must be 1 to ${NAME_BYTES} bytes of UTF-8` }))
  }
  if (config.id.startsWith('SYSTEM-') && !SYSTEM_APPLICATIONS.has(config.id)) {
    return Either.left(new StreamsError({ reason: 'ReservedApplication', message: `application ids starting with SYSTEM- are reserved` }))
  }
  const streamBufferBytes = config.streamBufferBytes ?? DEFAULT_BUFFER_BYTES
  const priority = resolvePriority(config.priority)
  if (Either.isLeft(priority)) return Either.left(priority.left)
  const full: Required<ApplicationConfig> = {
    priority: priority.right,
    id: config.id,
    maxStreams: config.maxStreams ?? DEFAULT_MAX_STREAMS,
    defaultStreamOnly: config.defaultStreamOnly ?? false,
    streamBufferSize: config.streamBufferSize ?? DEFAULT_BUFFER_SIZE,
    streamBufferBytes,
    // one message of the largest size may wait beside smaller ones (a bulk transfer and a
    // request sharing a stream), while a peer that stops reading holds at most this much
    maxWaitingBytes: config.maxWaitingBytes ?? Math.min(GiB, Math.max(streamBufferBytes, node.maxMessageSize)),
    unknownStreamGraceMs: config.unknownStreamGraceMs ?? node.graceMs
  }
  return validateApplication(full)
}
