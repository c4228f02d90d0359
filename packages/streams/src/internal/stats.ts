/**
 * Counters of one stream and its health warnings (the spec's thresholds), as plain state. The
 * warnings are returned, not logged: the shell logs them.
 */
import type { ApplicationStats, StreamStats } from '../Application.js'

/** Share of failed sends above which a stream warns. */
export const ERROR_RATE_WARNING = 0.05
/** Below this many sends one failure is not yet a rate worth a warning. */
export const ERROR_RATE_MIN_ATTEMPTS = 20
/** Bytes queued for one peer above which a stream warns. */
export const BACKLOG_WARNING_BYTES = 10 * 1024 * 1024

/** What one stream holds for its peers right now (from its outboxes and transport streams). */
export interface Queued {
  readonly messages: number
  readonly bytes: number
  /** Peers with an open transport stream. */
  readonly activeNodes: ReadonlyArray<string>
}

export class StreamCounters {
  bytesSent = 0
  bytesReceived = 0
  messagesOut = 0
  messagesIn = 0
  failedSends = 0
  receiveErrors = 0
  lastActive: number
  /** Set while the error rate is above the warning threshold (one warning per excursion). */
  private errorRateHigh = false
  /** Peers whose queued bytes are above the warning threshold (one warning per excursion). */
  private readonly backlogged = new Set<string>()

  constructor(readonly createdAt: number) {
    this.lastActive = createdAt
  }

  sent(bytes: number, now: number): void {
    this.bytesSent += bytes
    this.messagesOut++
    this.lastActive = now
  }

  received(bytes: number, now: number): void {
    this.bytesReceived += bytes
    this.messagesIn++
    this.lastActive = now
  }

  /** Messages a refusing peer never read: they were counted as sent, they are failures. */
  unsent(messages: number, bytes: number): void {
    this.messagesOut -= messages
    this.bytesSent -= bytes
    this.failedSends += messages
  }

  get errorRate(): number {
    const attempts = this.messagesOut + this.failedSends
    return attempts === 0 ? 0 : this.failedSends / attempts
  }

  /**
   * The error rate when it just went above the threshold (warn once), else undefined. The
   * warning re-arms once the rate falls back below half the threshold.
   */
  errorRateExcursion(): number | undefined {
    const rate = this.errorRate
    if (!this.errorRateHigh && rate > ERROR_RATE_WARNING && this.messagesOut + this.failedSends >= ERROR_RATE_MIN_ATTEMPTS) {
      this.errorRateHigh = true
      return rate
    }
    if (this.errorRateHigh && rate <= ERROR_RATE_WARNING / 2) this.errorRateHigh = false
    return undefined
  }

  /** True when `queuedBytes` for `peer` just went above the backlog threshold (warn once). */
  backlogExcursion(peer: string, queuedBytes: number): boolean {
    if (this.backlogged.has(peer) || queuedBytes < BACKLOG_WARNING_BYTES) return false
    this.backlogged.add(peer)
    return true
  }

  /** The backlog for `peer` is gone (emptied or dropped): the next excursion warns again. */
  backlogCleared(peer: string): void {
    this.backlogged.delete(peer)
  }

  snapshot(queued: Queued): StreamStats {
    return {
      bytesSent: this.bytesSent,
      bytesReceived: this.bytesReceived,
      messagesOut: this.messagesOut,
      messagesIn: this.messagesIn,
      failedSends: this.failedSends,
      receiveErrors: this.receiveErrors,
      errorRate: this.errorRate,
      queuedMessages: queued.messages,
      queuedBytes: queued.bytes,
      createdAt: this.createdAt,
      lastActive: this.lastActive,
      activeNodes: queued.activeNodes
    }
  }
}

/** An application's totals over its default stream and named streams. */
export const applicationStats = (defaultStreamStats: StreamStats, named: ReadonlyArray<readonly [string, StreamStats]>): ApplicationStats => {
  const streams: Record<string, StreamStats> = {}
  let bytesSent = defaultStreamStats.bytesSent
  let bytesReceived = defaultStreamStats.bytesReceived
  let messagesOut = defaultStreamStats.messagesOut
  let messagesIn = defaultStreamStats.messagesIn
  let failed = defaultStreamStats.failedSends
  for (const [name, st] of named) {
    streams[name] = st
    bytesSent += st.bytesSent
    bytesReceived += st.bytesReceived
    messagesOut += st.messagesOut
    messagesIn += st.messagesIn
    failed += st.failedSends
  }
  return {
    totalBytesSent: bytesSent,
    totalBytesReceived: bytesReceived,
    totalMessagesOut: messagesOut,
    totalMessagesIn: messagesIn,
    totalFailedSends: failed,
    activeStreams: named.length + 1,
    defaultStreamStats,
    streams
  }
}
