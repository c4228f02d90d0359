/**
 * The operations a caller waits for: each has a number; the engine completes it (`settle`) with
 * an error or an answer, possibly while the operation is still starting (the completion is
 * then kept until the caller waits). A caller waits as an Effect or as a Promise; no fiber or
 * timer of its own. Plain TypeScript; the shell owns one table.
 */
import * as Effect from 'effect/Effect'
import type { MycelError } from '../MycelError.js'
import { ChurnMap } from './churn.js'

/** A completed operation's answer. */
export type Answer = Uint8Array | undefined | number | boolean

type Waiter = (error: MycelError | undefined, value: Answer) => void

export class Completions {
  private readonly waiters = new ChurnMap<number, Waiter>()
  /** Completions that came before their operation started waiting (during its own flush). */
  private readonly early = new ChurnMap<number, { readonly error: MycelError | undefined; readonly value: Answer }>()
  private next = 1

  /** A number for a new operation. */
  start(): number {
    return this.next++
  }

  settle(op: number, error: MycelError | undefined, value: Answer): void {
    const waiter = this.waiters.get(op)
    if (waiter === undefined) this.early.set(op, { error, value })
    else {
      this.waiters.delete(op)
      waiter(error, value)
    }
  }

  /** Waits for `op` as an Effect (interrupting it stops the wait). */
  effect<A extends Answer>(op: number): Effect.Effect<A, MycelError> {
    return Effect.async<A, MycelError>((resume) => {
      const done = this.early.get(op)
      if (done !== undefined) {
        this.early.delete(op)
        resume(done.error === undefined ? Effect.succeed(done.value as A) : Effect.fail(done.error))
        return
      }
      this.waiters.set(op, (error, value) => resume(error === undefined ? Effect.succeed(value as A) : Effect.fail(error)))
      return Effect.sync(() => this.waiters.delete(op))
    })
  }

  /** Waits for `op` as a Promise. */
  promise<A extends Answer>(op: number): Promise<A> {
    const done = this.early.get(op)
    if (done !== undefined) {
      this.early.delete(op)
      return done.error === undefined ? Promise.resolve(done.value as A) : Promise.reject(done.error)
    }
    return new Promise<A>((resolve, reject) => this.waiters.set(op, (error, value) => (error === undefined ? resolve(value as A) : reject(error))))
  }

  /** Fails every waiting operation with `error` and forgets everything. */
  failAll(error: MycelError): void {
    const waiting = [...this.waiters.values()]
    this.waiters.clear()
    this.early.clear()
    for (const waiter of waiting) waiter(error, undefined)
  }
}
