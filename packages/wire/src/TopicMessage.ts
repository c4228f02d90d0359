/**
 * Messages of the topics application (`SYSTEM-TOPICS`). Interest and its acknowledgement travel on
 * the application's default stream, Delivered too; Publish travels on the topic's own stream
 * (`topic:<name>`), so a busy topic never waits behind another. The byte layout of each is
 * specified in `docs/protocol.md`.
 *
 * | type | message     | fields |
 * | ---- | ----------- | ------ |
 * | 0x01 | Interest    | epoch u32, seq u32, topics: array of strings (every topic the sender subscribes to) |
 * | 0x02 | InterestAck | epoch u32, seq u32 (the Interest's) |
 * | 0x03 | Publish     | seq u32 (per publisher and topic, from 1), payload bytes |
 * | 0x04 | Delivered   | topic string, seq u32 (every Publish of that topic up to seq was handed to the subscribers) |
 *
 * @since 0.1.0
 */
import * as SystemMessage from './SystemMessage.js'

export interface Interest {
  readonly _tag: 'Interest'
  /** Chosen at random when the sender starts: a restarted node's Interest replaces its old one. */
  readonly epoch: number
  /** Grows with every change of the sender's topics. */
  readonly seq: number
  readonly topics: ReadonlyArray<string>
}

export interface InterestAck {
  readonly _tag: 'InterestAck'
  readonly epoch: number
  readonly seq: number
}

export interface Publish {
  readonly _tag: 'Publish'
  readonly seq: number
  /** A view of the decoded bytes. */
  readonly payload: Uint8Array
}

export interface Delivered {
  readonly _tag: 'Delivered'
  readonly topic: string
  readonly seq: number
}

export type TopicMessage = Interest | InterestAck | Publish | Delivered

/** Bytes a Publish adds to its payload: type, version, seq, payload length. */
export const publishOverhead = 1 + 1 + 4 + 4

const set = SystemMessage.messageSet<TopicMessage>('topics', [
  SystemMessage.define<Interest>({
    tag: 'Interest',
    type: 0x01,
    version: 1,
    write: (w, m) => {
      w.u32(m.epoch).u32(m.seq).array(m.topics, (w, t) => w.string(t))
    },
    read: (r) => ({ _tag: 'Interest', epoch: r.u32(), seq: r.u32(), topics: r.array((r) => r.string(), 2) })
  }),
  SystemMessage.define<InterestAck>({
    tag: 'InterestAck',
    type: 0x02,
    version: 1,
    write: (w, m) => {
      w.u32(m.epoch).u32(m.seq)
    },
    read: (r) => ({ _tag: 'InterestAck', epoch: r.u32(), seq: r.u32() })
  }),
  SystemMessage.define<Publish>({
    tag: 'Publish',
    type: 0x03,
    version: 1,
    write: (w, m) => {
      w.u32(m.seq).bytes(m.payload)
    },
    read: (r) => ({ _tag: 'Publish', seq: r.u32(), payload: r.bytesField() })
  }),
  SystemMessage.define<Delivered>({
    tag: 'Delivered',
    type: 0x04,
    version: 1,
    write: (w, m) => {
      w.string(m.topic).u32(m.seq)
    },
    read: (r) => ({ _tag: 'Delivered', topic: r.string(), seq: r.u32() })
  })
])

/** Encodes a topics message. */
export const encode = set.encode
/** Decodes a topics message; throws `WireError`. A Publish's payload is a view of `bytes`. */
export const decode = set.decode
/** `decode` at the Effect edge. */
export const decodeEffect = set.decodeEffect
