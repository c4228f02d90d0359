/**
 * Routing of incoming transport streams (application id + stream name -> stream), and the
 * hold-and-refuse of streams nobody claimed yet, as plain state. An incoming stream for an
 * application not registered here, or a name not created here, is held (not read, so flow
 * control holds its sender back) until it is claimed or its grace period passes; the shell
 * owns the timers and refuses what expires.
 */

/** Where an incoming stream goes. */
export type Route<S> =
  /** To this stream. */
  | { readonly _tag: 'Attach'; readonly stream: S }
  /** Held until the application or the stream is created, or the grace period passes. */
  | { readonly _tag: 'Hold' }

/** Routes a stream name within an application: the default stream (""), or an open named one. */
export const routeStream = <S extends { readonly closed: boolean }>(defaultStream: S, named: ReadonlyMap<string, S>, name: string): Route<S> => {
  const stream = name === '' ? defaultStream : named.get(name)
  return stream !== undefined && !stream.closed ? { _tag: 'Attach', stream } : { _tag: 'Hold' }
}

/** Items held under a key (an application id or a stream name) until claimed or expired. */
export class Held<T> {
  private readonly byKey = new Map<string, Array<T>>()

  get size(): number {
    let n = 0
    for (const list of this.byKey.values()) n += list.length
    return n
  }

  hold(key: string, item: T): void {
    const list = this.byKey.get(key)
    if (list === undefined) this.byKey.set(key, [item])
    else list.push(item)
  }

  /** Takes every item held under `key` (the application or stream now exists). */
  claim(key: string): ReadonlyArray<T> {
    const list = this.byKey.get(key)
    if (list === undefined) return []
    this.byKey.delete(key)
    return list
  }

  /** Removes one item whose grace period passed; false when it was claimed meanwhile. */
  expire(key: string, item: T): boolean {
    const list = this.byKey.get(key)
    const index = list?.indexOf(item) ?? -1
    if (list === undefined || index < 0) return false
    list.splice(index, 1)
    if (list.length === 0) this.byKey.delete(key)
    return true
  }

  /** Takes everything (shutdown). */
  clear(): ReadonlyArray<T> {
    const all = [...this.byKey.values()].flat()
    this.byKey.clear()
    return all
  }
}
