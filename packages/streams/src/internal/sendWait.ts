/**
 * The outcome of one send over its targets, as plain state: which nodes took the message,
 * which failed and why, how many are still waiting for room. A send that every target took at
 * once allocates nothing (`Done`).
 */
import { type DeliveryFailure, SendError, type StreamsError } from '../StreamsError.js'

/** What a send came to when it was offered. */
export type TakeOutcome =
  /** Every target took the message at once. */
  | { readonly _tag: 'Done' }
  /** Nothing was sent. */
  | { readonly _tag: 'Refused'; readonly error: StreamsError }
  /** Some target failed or waits: settles once none waits. */
  | { readonly _tag: 'Pending'; readonly wait: SendWait }

export const DONE: TakeOutcome = { _tag: 'Done' }

/** A send that did not finish at once. */
export class SendWait {
  readonly failures: Array<DeliveryFailure> = []
  /** Targets still waiting for room. */
  private remaining = 0
  private onSettled: (() => void) | undefined

  constructor(
    /** Where the send went, for the error message. */
    readonly label: string,
    /** Targets that took the message before this wait was needed. */
    readonly accepted: Array<string>
  ) {}

  get settled(): boolean {
    return this.remaining === 0
  }

  accept(node: string): void {
    this.accepted.push(node)
  }

  fail(failure: DeliveryFailure): void {
    this.failures.push(failure)
  }

  /** One more target waits for room. */
  waitFor(): void {
    this.remaining++
  }

  /** A waiting target took the message (no failure) or failed. */
  done(node: string, failure?: DeliveryFailure): void {
    if (failure === undefined) this.accepted.push(node)
    else this.failures.push(failure)
    if (--this.remaining === 0) this.onSettled?.()
  }

  /** Calls `f` once every target is done (at once when none waits). */
  whenSettled(f: () => void): void {
    if (this.remaining === 0) f()
    else this.onSettled = f
  }

  /** The error to fail the send with, or undefined when every target took it. */
  error(): SendError | undefined {
    if (this.failures.length === 0) return undefined
    return new SendError({
      message: `send on '${this.label}' failed for ${this.failures.map((f) => `${f.node} (${f.reason})`).join(', ')}`,
      accepted: this.accepted,
      failures: this.failures
    })
  }

  /** Nothing failed, nothing waits, nobody to report: the send was done at once after all. */
  get trivial(): boolean {
    return this.remaining === 0 && this.failures.length === 0 && this.accepted.length === 0
  }
}
