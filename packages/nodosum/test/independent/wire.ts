/**
 * The byte layouts of docs/protocol.md §2–§4, written from the document alone (no project
 * module): STREAM_INIT, `[u32 length][payload]` framing, and the control messages.
 */

/** A control message as §4 lists it. */
export type Control =
  | {
      readonly type: 'Hello'
      readonly protocolVersion: number
      readonly clusterId: string
      readonly nodeId: string
      readonly instanceId: string
      readonly host: string
      readonly port: number
      readonly authMode: 0 | 1
      readonly nonce: Buffer
    }
  | { readonly type: 'Auth'; readonly proof: Buffer }
  | { readonly type: 'Refuse'; readonly reason: string; readonly message: string }
  | { readonly type: 'Challenge'; readonly nonce: Buffer }
  | { readonly type: 'Members'; readonly members: ReadonlyArray<WireMember> }
  | { readonly type: 'Leave' }
  | { readonly type: 'Ping'; readonly seq: number; readonly sentAt: number }
  | { readonly type: 'Pong'; readonly seq: number; readonly sentAt: number }

export interface WireMember {
  readonly nodeId: string
  readonly instanceId: string
  readonly host: string
  readonly port: number
}

const TYPE = { Hello: 0x01, Auth: 0x02, Refuse: 0x03, Challenge: 0x04, Members: 0x10, Leave: 0x11, Ping: 0x20, Pong: 0x21 } as const
const LAYOUT_VERSION = 0x01

const u8 = (n: number) => Buffer.from([n])
const u16 = (n: number) => {
  const b = Buffer.alloc(2)
  b.writeUInt16BE(n)
  return b
}
const u32 = (n: number) => {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n)
  return b
}
const f64 = (n: number) => {
  const b = Buffer.alloc(8)
  b.writeDoubleBE(n)
  return b
}
/** string: `[u16 length][UTF-8]`. */
const str = (s: string) => {
  const b = Buffer.from(s, 'utf8')
  return Buffer.concat([u16(b.length), b])
}
/** byte string: `[u32 length][bytes]`. */
const bytes = (b: Uint8Array) => Buffer.concat([u32(b.length), b])

/** STREAM_INIT (§2): `01`, u16 app id length, app id, u16 name length, name. */
export const streamInit = (appId: string, name: string): Buffer => {
  const app = Buffer.from(appId, 'utf8')
  const n = Buffer.from(name, 'utf8')
  if (app.length < 1 || app.length > 255 || n.length > 255) throw new Error('STREAM_INIT: app id 1..255, name 0..255 bytes')
  return Buffer.concat([u8(0x01), u16(app.length), app, u16(n.length), n])
}

/** One framed message (§3). */
export const frame = (payload: Uint8Array): Buffer => Buffer.concat([u32(payload.length), payload])

export const encodeControl = (m: Control): Buffer => {
  const head = u8(TYPE[m.type])
  const v = u8(LAYOUT_VERSION)
  switch (m.type) {
    case 'Hello':
      return Buffer.concat([head, v, u16(m.protocolVersion), str(m.clusterId), str(m.nodeId), str(m.instanceId), str(m.host), u16(m.port), u8(m.authMode), bytes(m.nonce)])
    case 'Auth':
      return Buffer.concat([head, v, bytes(m.proof)])
    case 'Refuse':
      return Buffer.concat([head, v, str(m.reason), str(m.message)])
    case 'Challenge':
      return Buffer.concat([head, v, bytes(m.nonce)])
    case 'Members':
      return Buffer.concat([head, v, u32(m.members.length), ...m.members.flatMap((x) => [str(x.nodeId), str(x.instanceId), str(x.host), u16(x.port)])])
    case 'Leave':
      return Buffer.concat([head, v])
    case 'Ping':
    case 'Pong':
      return Buffer.concat([head, v, u32(m.seq), f64(m.sentAt)])
  }
}

/** A cursor over one payload; every read checks the bounds. */
class Reader {
  private at = 0
  constructor(private readonly b: Buffer) {}
  private take(n: number): Buffer {
    if (this.at + n > this.b.length) throw new Error(`truncated: ${n} bytes wanted at ${this.at} of ${this.b.length}`)
    const out = this.b.subarray(this.at, this.at + n)
    this.at += n
    return out
  }
  u8 = () => this.take(1)[0]!
  u16 = () => this.take(2).readUInt16BE()
  u32 = () => this.take(4).readUInt32BE()
  f64 = () => this.take(8).readDoubleBE()
  str = () => this.take(this.u16()).toString('utf8')
  bytes = () => Buffer.from(this.take(this.u32()))
  end = () => {
    if (this.at !== this.b.length) throw new Error(`${this.b.length - this.at} trailing bytes`)
  }
}

export const decodeControl = (payload: Buffer): Control => {
  const r = new Reader(payload)
  const type = r.u8()
  const version = r.u8()
  if (version !== LAYOUT_VERSION) throw new Error(`layout version ${version}`)
  let m: Control
  switch (type) {
    case TYPE.Hello: {
      const protocolVersion = r.u16()
      const clusterId = r.str()
      const nodeId = r.str()
      const instanceId = r.str()
      const host = r.str()
      const port = r.u16()
      const authMode = r.u8()
      if (authMode !== 0 && authMode !== 1) throw new Error(`auth mode ${authMode}`)
      m = { type: 'Hello', protocolVersion, clusterId, nodeId, instanceId, host, port, authMode, nonce: r.bytes() }
      break
    }
    case TYPE.Auth:
      m = { type: 'Auth', proof: r.bytes() }
      break
    case TYPE.Refuse:
      m = { type: 'Refuse', reason: r.str(), message: r.str() }
      break
    case TYPE.Challenge:
      m = { type: 'Challenge', nonce: r.bytes() }
      break
    case TYPE.Members: {
      const n = r.u32()
      const members: Array<WireMember> = []
      for (let i = 0; i < n; i++) members.push({ nodeId: r.str(), instanceId: r.str(), host: r.str(), port: r.u16() })
      m = { type: 'Members', members }
      break
    }
    case TYPE.Leave:
      m = { type: 'Leave' }
      break
    case TYPE.Ping:
      m = { type: 'Ping', seq: r.u32(), sentAt: r.f64() }
      break
    case TYPE.Pong:
      m = { type: 'Pong', seq: r.u32(), sentAt: r.f64() }
      break
    default:
      throw new Error(`unknown control message type 0x${type.toString(16)}`)
  }
  r.end()
  return m
}

/**
 * Reads one stream: its STREAM_INIT first when `withInit` (a stream the other side opened),
 * then `[u32 length][payload]` messages, across chunk boundaries.
 */
export class StreamReader {
  private buf = Buffer.alloc(0)
  init: { readonly appId: string; readonly name: string } | undefined
  constructor(
    private readonly withInit: boolean,
    private readonly maxPayload: number,
    private readonly onMessage: (payload: Buffer) => void
  ) {}

  push(chunk: Uint8Array): void {
    this.buf = Buffer.concat([this.buf, chunk])
    for (;;) {
      if (this.withInit && this.init === undefined) {
        if (this.buf.length < 3) return
        if (this.buf[0] !== 0x01) throw new Error(`frame type 0x${this.buf[0]!.toString(16)}, STREAM_INIT expected`)
        const appLen = this.buf.readUInt16BE(1)
        if (this.buf.length < 3 + appLen + 2) return
        const nameLen = this.buf.readUInt16BE(3 + appLen)
        const end = 5 + appLen + nameLen
        if (this.buf.length < end) return
        this.init = { appId: this.buf.toString('utf8', 3, 3 + appLen), name: this.buf.toString('utf8', 5 + appLen, end) }
        this.buf = this.buf.subarray(end)
        continue
      }
      if (this.buf.length < 4) return
      const len = this.buf.readUInt32BE(0)
      if (len > this.maxPayload) throw new Error(`message of ${len} bytes`)
      if (this.buf.length < 4 + len) return
      const payload = Buffer.from(this.buf.subarray(4, 4 + len))
      this.buf = this.buf.subarray(4 + len)
      this.onMessage(payload)
    }
  }
}
