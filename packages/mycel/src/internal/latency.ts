/**
 * A fixed-bucket latency histogram: cumulative counts that only grow, cheap to update on every
 * remote operation, read as a snapshot by stats and exported as a Prometheus histogram.
 */
import type { LatencyHistogram as Snapshot } from './types.js'

/** Upper bounds in microseconds, from 100 µs to 10 s. */
export const LATENCY_BOUNDS_US: ReadonlyArray<number> = [
  100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 10_000_000
]

export class LatencyHistogram {
  /** counts[i]: observations in (bounds[i-1], bounds[i]]; the last slot is above every bound. */
  private readonly counts = new Array<number>(LATENCY_BOUNDS_US.length + 1).fill(0)
  private sumUs = 0
  private total = 0

  observe(us: number): void {
    let i = 0
    while (i < LATENCY_BOUNDS_US.length && us > LATENCY_BOUNDS_US[i]!) i++
    this.counts[i]!++
    this.sumUs += us
    this.total++
  }

  snapshot(): Snapshot {
    const cumulative: Array<number> = []
    let running = 0
    for (let i = 0; i < LATENCY_BOUNDS_US.length; i++) {
      running += this.counts[i]!
      cumulative.push(running)
    }
    return { boundsUs: LATENCY_BOUNDS_US, cumulativeCounts: cumulative, sumUs: this.sumUs, count: this.total }
  }
}
