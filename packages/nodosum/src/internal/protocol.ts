/**
 * Constants of the cluster protocol (version 2): what both sides of a connection must agree
 * on, and the default grace periods of the cluster shell. No logic here.
 */
import type { StreamPriority } from '../Transport.js'

/** Version of the handshake and control messages this node speaks. */
export const PROTOCOL_VERSION = 2

/** A node id (and the shape of a cluster id): 1 to 128 of `A-Z a-z 0-9 . _ : -`, starting alphanumeric. */
export const NODE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/

/** Reserved application id of the control stream (handshake, membership, heartbeats). */
export const CONTROL_APP_ID = 'SYSTEM-NODOSUM'

/** Stream name of the control stream. */
export const CONTROL_STREAM_NAME = ''

/** Largest control message in bytes (a `Members` list of a large cluster fits). */
export const CONTROL_MAX_MESSAGE_SIZE = 1024 * 1024

/**
 * The control stream goes before everything else in every packet its sender builds (urgency
 * 0): heartbeats and membership never wait behind application data.
 */
export const CONTROL_PRIORITY: StreamPriority = { urgency: 0, incremental: true }

/** Control messages a connection may buffer before its handshake finishes. */
export const HANDSHAKE_INBOX = 16

/** A refusal of ours gets this long to reach the peer before the connection closes (ms). */
export const REFUSAL_GRACE_MS = 200

/** `Leave` frames get this long to leave the socket before the connections close (ms). */
export const LEAVE_GRACE_MS = 20

/** Of two nodes that learn of each other, the larger id waits this many heartbeats for the smaller to dial. */
export const LATE_DIAL_HEARTBEATS = 2
