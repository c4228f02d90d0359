/**
 * Messages of the control stream (`SYSTEM-NODOSUM`): the handshake (Hello, Challenge, Auth,
 * Refuse) and membership (Members, Leave, Ping, Pong). The byte layout of each is specified in
 * `docs/protocol.md`.
 *
 * | type | message | fields |
 * | ---- | ------- | ------ |
 * | 0x01 | Hello   | protocolVersion u16, clusterId, nodeId, instanceId, host (strings), port u16, authMode u8 (0 secret, 1 tls), nonce bytes |
 * | 0x02 | Auth    | proof bytes (HMAC-SHA256 in secret mode, empty with mTLS) |
 * | 0x03 | Refuse  | reason, message (strings) |
 * | 0x04 | Challenge | nonce bytes (the acceptor's, protocol v2) |
 * | 0x10 | Members | array of { nodeId, instanceId, host, port u16 } |
 * | 0x11 | Leave   | — |
 * | 0x20 | Ping    | seq u32, sentAt f64 (ms) |
 * | 0x21 | Pong    | seq u32, sentAt f64 (the Ping's) |
 *
 * @since 0.1.0
 */
import * as SystemMessage from './SystemMessage.js'
import { WireError } from './WireError.js'

/** A member as the control stream describes it. */
export interface MemberInfo {
  readonly nodeId: string
  readonly instanceId: string
  readonly host: string
  readonly port: number
}

export interface Hello {
  readonly _tag: 'Hello'
  readonly protocolVersion: number
  readonly clusterId: string
  readonly nodeId: string
  readonly instanceId: string
  readonly host: string
  readonly port: number
  readonly authMode: 'secret' | 'tls'
  readonly nonce: Uint8Array
}

export interface Auth {
  readonly _tag: 'Auth'
  readonly proof: Uint8Array
}

/** Protocol v2: the acceptor's fresh nonce, its only word before the dialer has proven the secret. */
export interface Challenge {
  readonly _tag: 'Challenge'
  readonly nonce: Uint8Array
}

export interface Refuse {
  readonly _tag: 'Refuse'
  readonly reason: string
  readonly message: string
}

export interface Members {
  readonly _tag: 'Members'
  readonly members: ReadonlyArray<MemberInfo>
}

export interface Leave {
  readonly _tag: 'Leave'
}

export interface Ping {
  readonly _tag: 'Ping'
  readonly seq: number
  readonly sentAt: number
}

export interface Pong {
  readonly _tag: 'Pong'
  readonly seq: number
  readonly sentAt: number
}

/** Every control message. */
export type ControlMessage = Hello | Auth | Refuse | Challenge | Members | Leave | Ping | Pong

const writeMember = (w: SystemMessage.Writer, m: MemberInfo) => {
  w.string(m.nodeId).string(m.instanceId).string(m.host).u16(m.port)
}
const readMember = (r: SystemMessage.Reader): MemberInfo => ({ nodeId: r.string(), instanceId: r.string(), host: r.string(), port: r.u16() })

const set = SystemMessage.messageSet<ControlMessage>('control', [
  SystemMessage.define<Hello>({
    tag: 'Hello',
    type: 0x01,
    version: 1,
    write: (w, m) => {
      w.u16(m.protocolVersion).string(m.clusterId).string(m.nodeId).string(m.instanceId).string(m.host).u16(m.port)
      w.u8(m.authMode === 'tls' ? 1 : 0).bytes(m.nonce)
    },
    read: (r) => {
      const protocolVersion = r.u16()
      const clusterId = r.string()
      const nodeId = r.string()
      const instanceId = r.string()
      const host = r.string()
      const port = r.u16()
      const mode = r.u8()
      if (mode > 1) throw new WireError({ reason: 'InvalidField', message: `auth mode ${mode} is neither 0 (secret) nor 1 (tls)` })
      const nonce = r.bytesCopy()
      return { _tag: 'Hello', protocolVersion, clusterId, nodeId, instanceId, host, port, authMode: mode === 1 ? 'tls' : 'secret', nonce }
    }
  }),
  SystemMessage.define<Auth>({
    tag: 'Auth',
    type: 0x02,
    version: 1,
    write: (w, m) => {
      w.bytes(m.proof)
    },
    read: (r) => ({ _tag: 'Auth', proof: r.bytesCopy() })
  }),
  SystemMessage.define<Refuse>({
    tag: 'Refuse',
    type: 0x03,
    version: 1,
    write: (w, m) => {
      w.string(m.reason).string(m.message)
    },
    read: (r) => ({ _tag: 'Refuse', reason: r.string(), message: r.string() })
  }),
  SystemMessage.define<Challenge>({
    tag: 'Challenge',
    type: 0x04,
    version: 1,
    write: (w, m) => {
      w.bytes(m.nonce)
    },
    read: (r) => ({ _tag: 'Challenge', nonce: r.bytesCopy() })
  }),
  SystemMessage.define<Members>({
    tag: 'Members',
    type: 0x10,
    version: 1,
    write: (w, m) => {
      w.array(m.members, writeMember)
    },
    read: (r) => ({ _tag: 'Members', members: r.array(readMember, 8) })
  }),
  SystemMessage.define<Leave>({ tag: 'Leave', type: 0x11, version: 1, write: () => {}, read: () => ({ _tag: 'Leave' }) }),
  SystemMessage.define<Ping>({
    tag: 'Ping',
    type: 0x20,
    version: 1,
    write: (w, m) => {
      w.u32(m.seq).f64(m.sentAt)
    },
    read: (r) => ({ _tag: 'Ping', seq: r.u32(), sentAt: r.f64() })
  }),
  SystemMessage.define<Pong>({
    tag: 'Pong',
    type: 0x21,
    version: 1,
    write: (w, m) => {
      w.u32(m.seq).f64(m.sentAt)
    },
    read: (r) => ({ _tag: 'Pong', seq: r.u32(), sentAt: r.f64() })
  })
])

/** Encodes a control message. */
export const encode = set.encode
/** Decodes a control message; throws `WireError`. */
export const decode = set.decode
/** `decode` at the Effect edge. */
export const decodeEffect = set.decodeEffect
