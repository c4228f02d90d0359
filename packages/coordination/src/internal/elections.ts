/**
 * The rules of leader election over a lock, as functions over plain data: a candidate tries to
 * take the election's lock at an interval (sooner when the seen leader's lease is about to
 * end); the leader renews its lease every third of it; a renewal that found the lock taken
 * revokes at once, one that could not reach the cache keeps the leadership only while the
 * lease still runs on the leader's own clock.
 */
import { freeAt, type LockRecord } from './locks.js'

/** How often a leader renews its lease of `ttlMs`. */
export const renewEveryMs = (ttlMs: number): number => Math.max(1, Math.floor(ttlMs / 3))

/** How long a candidate waits before its next try: `retryMs`, or until the seen lease frees when that is sooner. */
export const candidateDelayMs = (retryMs: number, seen: LockRecord | undefined, wallNow: number, maxClockSkewMs: number): number => {
  if (seen === undefined) return retryMs
  const untilFree = Math.ceil(freeAt(seen, maxClockSkewMs) - wallNow)
  return untilFree > 0 && untilFree < retryMs ? untilFree : retryMs
}

/** What a renewal came to: stored, the lock taken (or too few members), or the cache did not answer. */
export type RenewOutcome = 'renewed' | 'lost' | 'failed'

/** Whether the leader stays leader after a renewal, given the lease it has left on its own clock. */
export const afterRenew = (outcome: RenewOutcome, leaseLeftMs: number): 'leader' | 'revoked' =>
  outcome === 'renewed' ? 'leader' : outcome === 'lost' || leaseLeftMs <= 0 ? 'revoked' : 'leader'

/** How long a leader waits before its next renewal: a third of the lease, or half of what is left after a failed one. */
export const nextRenewMs = (outcome: RenewOutcome, ttlMs: number, leaseLeftMs: number): number =>
  outcome === 'renewed' ? renewEveryMs(ttlMs) : Math.max(1, Math.min(renewEveryMs(ttlMs), Math.floor(leaseLeftMs / 2)))
