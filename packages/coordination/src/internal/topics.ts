/**
 * The topics of one node as a synchronous state machine: no I/O, no Effect, no clock of its own.
 * Inputs are client operations (subscribe, unsubscribe, publish), messages from peers,
 * membership changes, send failures and clock ticks, each with the current time; outputs are
 * appended to `out` and `nextWake()` says when the engine wants its next tick. The Effect shell
 * (`service.ts`) carries the outputs out on the `SYSTEM-TOPICS` application's streams.
 *
 * The rules:
 * - Every node tells every member which topics it subscribes to (an Interest: the whole set, with
 *   an epoch chosen at start and a sequence number), whenever the set changes and to every node
 *   that joins. A subscribe completes once every member acknowledged an Interest that includes
 *   the topic (or left), so a publish started after it reaches this node.
 * - A publish delivers to this node's subscribers at once and sends the message on the topic's
 *   own stream to every member whose Interest names the topic; it completes when each of them
 *   reported the message delivered (cumulatively, per topic: "everything up to seq"), or left.
 *   A QUIC stream per topic and peer keeps each publisher's order.
 * - A receiver reports the first Publish of a node and topic in a turn (the shell's microtask
 *   checkpoint) delivered at once — the report leaves in the same datagram as the transport's
 *   acknowledgement of it — and those after it in the same turn with one cumulative Delivered at
 *   the end of the turn (`flushDelivered`): one report, not one per message, under load.
 * - A node that leaves or fails is forgotten: what waited for it completes without it.
 */
import type { TopicMessage } from '@mycorrizal/wire'
import { CoordinationError } from '../CoordinationError.js'

/** One output of the engine. */
export type Output =
  /** A message on the default stream to one node. */
  | { readonly _tag: 'Send'; readonly to: string; readonly message: TopicMessage.TopicMessage }
  /** A Publish on the topic's stream to these nodes; `op` is the publish it belongs to. */
  | { readonly _tag: 'Publish'; readonly topic: string; readonly to: ReadonlyArray<string>; readonly message: TopicMessage.Publish; readonly op: number }
  /** A message to this node's subscribers of the topic. */
  | { readonly _tag: 'Deliver'; readonly topic: string; readonly from: string; readonly payload: Uint8Array }
  | { readonly _tag: 'Done'; readonly op: number }
  | { readonly _tag: 'Fail'; readonly op: number; readonly error: CoordinationError }

export interface TopicsOptions {
  readonly self: string
  /** Distinguishes this start of the node from earlier ones (random u32). */
  readonly epoch: number
  /** How long a publish waits for the nodes with subscribers (ms). */
  readonly publishTimeoutMs: number
  /** How long a subscribe waits for every member to learn of it (ms). */
  readonly subscribeTimeoutMs: number
  /** Topics this node may subscribe to or publish on. */
  readonly maxTopics: number
}

/** What one topic looks like from this node. */
export interface TopicStats {
  readonly topic: string
  readonly localSubscribers: number
  /** Other nodes with a subscriber, sorted. */
  readonly subscriberNodes: ReadonlyArray<string>
  readonly published: number
  readonly delivered: number
  /** Publishes waiting for a node to report delivery. */
  readonly pending: number
  readonly failedPublishes: number
}

interface PendingPublish {
  readonly op: number
  readonly seq: number
  readonly waiting: Set<string>
  readonly deadline: number
  done: boolean
}

/** A publish waiting to learn every member's topics before it picks its targets. */
interface HeldPublish {
  readonly op: number
  readonly topic: Topic
  readonly payload: Uint8Array
  readonly deadline: number
}

interface PendingInterest {
  readonly op: number
  readonly seq: number
  readonly waiting: Set<string>
  readonly deadline: number
  /** The topic to withdraw when the subscribe times out; undefined for an unsubscribe. */
  readonly subscribing: { readonly topic: string; readonly subscriber: number } | undefined
}

interface Topic {
  readonly name: string
  /** Local subscriber ids. */
  readonly subscribers: Set<number>
  /** Other nodes whose Interest names this topic. */
  readonly nodes: Set<string>
  nextSeq: number
  pending: Array<PendingPublish>
  published: number
  delivered: number
  failedPublishes: number
}

/** Delivery reports of one node and topic in the current turn. */
interface AckState {
  /** Highest seq received in this turn. */
  seq: number
  /** A Publish arrived after the report sent at once: `seq` still has to be reported. */
  due: boolean
}

interface RemoteInterest {
  readonly epoch: number
  readonly seq: number
  readonly topics: ReadonlySet<string>
}

/** The longest topic name in UTF-8 bytes: the stream name `topic:<name>` fits in 255 bytes. */
export const MAX_TOPIC_BYTES = 249
export const streamName = (topic: string) => `topic:${topic}`

const encoder = new TextEncoder()
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/
/** The reason a topic name is refused, or undefined. */
export const invalidTopic = (topic: string): string | undefined => {
  if (typeof topic !== 'string' || topic.length === 0) return 'a topic name is a non-empty string'
  if (LONE_SURROGATE.test(topic)) return 'a topic name must be well-formed Unicode'
  if (encoder.encode(topic).byteLength > MAX_TOPIC_BYTES) return `a topic name is at most ${MAX_TOPIC_BYTES} bytes of UTF-8`
  return undefined
}

/** a <= b in sequence-number arithmetic (RFC 1982, 32 bits). */
const serialAtMost = (a: number, b: number) => ((b - a) >>> 0) < 0x80000000

export class TopicsEngine {
  readonly out: Array<Output> = []
  readonly self: string
  private readonly options: TopicsOptions
  private readonly topics = new Map<string, Topic>()
  private readonly remote = new Map<string, RemoteInterest>()
  private members = new Set<string>()
  /** Members whose Interest has not arrived yet: a publish waits for them. */
  private readonly unknown = new Set<string>()
  private held: Array<HeldPublish> = []
  private interestSeq = 0
  private interests: Array<PendingInterest> = []
  /** Delivery reports of this turn per node and topic (`flushDelivered` ends the turn). */
  private readonly acking = new Map<string, Map<string, AckState>>()
  /** Topics with publishes waiting for reports (their deadlines are the timer's). */
  private readonly waitingTopics = new Set<Topic>()
  /** Highest Interest seq of this epoch each member acknowledged. */
  private readonly acks = new Map<string, number>()
  private nextSubscriber = 1
  private closed = false

  constructor(options: TopicsOptions, nodes: ReadonlyArray<string>) {
    this.options = options
    this.self = options.self
    for (const n of nodes) if (n !== this.self) this.members.add(n)
    for (const n of this.members) this.unknown.add(n)
  }

  /** Says hello to the members known at start: each answers with its own Interest. */
  start(): void {
    const message = this.interest()
    for (const n of this.members) this.out.push({ _tag: 'Send', to: n, message })
  }

  /** Subscribes one more local subscriber; returns its id, or an error. The op completes when every member knows. */
  subscribe(op: number, topic: string, now: number): number | CoordinationError {
    if (this.closed) return closedError()
    const t = this.topic(topic)
    if (t instanceof CoordinationError) return t
    const subscriber = this.nextSubscriber++
    t.subscribers.add(subscriber)
    if (t.subscribers.size === 1) this.announce(op, now, { topic, subscriber })
    else this.wait(op, now, { topic, subscriber })
    return subscriber
  }

  /** Removes a local subscriber; delivery to it stops at once, the op completes when the members know. */
  unsubscribe(op: number, topic: string, subscriber: number, now: number): void {
    const t = this.topics.get(topic)
    if (this.closed || t === undefined || !t.subscribers.delete(subscriber)) {
      this.out.push({ _tag: 'Done', op })
      return
    }
    if (t.subscribers.size === 0) this.announce(op, now, undefined)
    else this.out.push({ _tag: 'Done', op })
  }

  /** True while the subscriber receives the topic's messages. */
  subscribed(topic: string, subscriber: number): boolean {
    return this.topics.get(topic)?.subscribers.has(subscriber) === true
  }

  /** Publishes: delivers here at once, sends to every node with a subscriber; the op completes when they have it. */
  publish(op: number, topic: string, payload: Uint8Array, now: number): CoordinationError | undefined {
    if (this.closed) return closedError()
    const t = this.topic(topic)
    if (t instanceof CoordinationError) return t
    t.published++
    if (t.subscribers.size > 0) {
      t.delivered++
      this.out.push({ _tag: 'Deliver', topic, from: this.self, payload })
    }
    // the targets are picked once every member's topics are known, in publish order
    if (this.unknown.size > 0 || this.held.length > 0) this.held.push({ op, topic: t, payload, deadline: now + this.options.publishTimeoutMs })
    else this.send(op, t, payload, now)
    return undefined
  }

  private send(op: number, t: Topic, payload: Uint8Array, now: number): void {
    const to = [...t.nodes].filter((n) => this.members.has(n))
    if (to.length === 0) {
      this.out.push({ _tag: 'Done', op })
      return
    }
    t.nextSeq = (t.nextSeq + 1) >>> 0 || 1
    const seq = t.nextSeq
    t.pending.push({ op, seq, waiting: new Set(to), deadline: now + this.options.publishTimeoutMs, done: false })
    this.waitingTopics.add(t)
    this.out.push({ _tag: 'Publish', topic: t.name, to, message: { _tag: 'Publish', seq, payload }, op })
  }

  /** Sends the held publishes once every member's topics are known. */
  private release(now: number): void {
    if (this.unknown.size > 0) return
    const held = this.held
    this.held = []
    for (const h of held) this.send(h.op, h.topic, h.payload, now)
  }

  /**
   * A Publish arrived on a topic's stream: handed to the subscribers, then reported delivered —
   * at once when it is the first of its node and topic in this turn, else at the turn's end.
   */
  receivePublish(from: string, topic: string, message: TopicMessage.Publish): void {
    if (this.closed) return
    const t = this.topics.get(topic)
    if (t !== undefined && t.subscribers.size > 0) {
      t.delivered++
      this.out.push({ _tag: 'Deliver', topic, from, payload: message.payload })
    }
    let perNode = this.acking.get(from)
    if (perNode === undefined) this.acking.set(from, (perNode = new Map()))
    const state = perNode.get(topic)
    if (state === undefined) {
      perNode.set(topic, { seq: message.seq, due: false })
      this.out.push({ _tag: 'Send', to: from, message: { _tag: 'Delivered', topic, seq: message.seq } })
    } else {
      state.seq = message.seq
      state.due = true
    }
  }

  /** True while a turn with delivery reports is open: the shell calls `flushDelivered` at its end. */
  hasUnacked(): boolean {
    return this.acking.size > 0
  }

  /** Ends the turn: one cumulative Delivered per node and topic for what arrived after its first report. */
  flushDelivered(): void {
    for (const [node, perTopic] of this.acking) {
      for (const [topic, state] of perTopic) if (state.due) this.out.push({ _tag: 'Send', to: node, message: { _tag: 'Delivered', topic, seq: state.seq } })
    }
    this.acking.clear()
  }

  /** A message of the default stream. */
  receive(from: string, message: TopicMessage.TopicMessage, now: number): void {
    if (this.closed) return
    switch (message._tag) {
      case 'Interest': {
        // answered even from a node not seen joining yet: its subscribe waits for this answer
        const known = this.remote.get(from)
        // a node heard from for the first time (or restarted) learns this node's topics in return
        if (known === undefined || known.epoch !== message.epoch) this.out.push({ _tag: 'Send', to: from, message: this.interest() })
        if (known === undefined || known.epoch !== message.epoch || serialAtMost(known.seq, message.seq)) this.setInterest(from, message)
        if (this.unknown.delete(from)) this.release(now)
        this.out.push({ _tag: 'Send', to: from, message: { _tag: 'InterestAck', epoch: message.epoch, seq: message.seq } })
        return
      }
      case 'InterestAck': {
        if (message.epoch !== this.options.epoch) return
        if (!this.ackedAtLeast(from, message.seq)) this.acks.set(from, message.seq)
        this.interests = this.interests.filter((p) => {
          if (serialAtMost(p.seq, message.seq)) p.waiting.delete(from)
          return !this.settleInterest(p)
        })
        return
      }
      case 'Delivered': {
        const t = this.topics.get(message.topic)
        if (t === undefined) return
        // pending is in seq order: the report covers a prefix of it
        const pending = t.pending
        let completed = 0
        for (let i = 0; i < pending.length; i++) {
          const p = pending[i]!
          if (!serialAtMost(p.seq, message.seq)) break
          if (!p.done && p.waiting.delete(from) && p.waiting.size === 0) {
            p.done = true
            completed++
            this.out.push({ _tag: 'Done', op: p.op })
          }
        }
        if (completed > 0) this.compact(t)
        return
      }
      case 'Publish':
        // publishes travel on their topic's stream, never on the default one
        return
    }
  }

  /** Drops the completed publishes of a topic. */
  private compact(t: Topic): void {
    const pending = t.pending
    let head = 0
    while (head < pending.length && pending[head]!.done) head++
    if (head === pending.length) {
      pending.length = 0
      this.waitingTopics.delete(t)
    } else t.pending = pending.filter((p) => !p.done)
  }

  /** The alive members, this node included or not. */
  membership(nodes: ReadonlyArray<string>, now: number): void {
    if (this.closed) return
    const next = new Set(nodes.filter((n) => n !== this.self))
    const gone = [...this.members].filter((n) => !next.has(n))
    const joined = [...next].filter((n) => !this.members.has(n))
    this.members = next
    for (const n of gone) this.forget(n)
    if (joined.length > 0) {
      // every joiner learns this node's topics, an empty set too: its publishes wait for it
      const message = this.interest()
      for (const n of joined) {
        if (!this.remote.has(n)) this.unknown.add(n)
        this.out.push({ _tag: 'Send', to: n, message })
      }
    }
    if (gone.length > 0) this.release(now)
  }

  /** A Publish could not be sent to these nodes. */
  publishFailed(op: number, topic: string, nodes: ReadonlyArray<string>, reason: string): void {
    const t = this.topics.get(topic)
    const p = t?.pending.find((x) => x.op === op && !x.done)
    if (t === undefined || p === undefined) return
    const failed = nodes.filter((n) => p.waiting.has(n) && this.members.has(n))
    for (const n of nodes) p.waiting.delete(n)
    if (failed.length === 0 && p.waiting.size > 0) return
    p.done = true
    this.compact(t)
    if (failed.length === 0) this.out.push({ _tag: 'Done', op })
    else {
      t.failedPublishes++
      this.out.push({ _tag: 'Fail', op, error: new CoordinationError({ reason: 'PublishFailed', message: `topic '${topic}': not sent to ${failed.join(', ')}: ${reason}`, nodes: failed }) })
    }
  }

  tick(now: number): void {
    if (this.held.length > 0 && this.held[0]!.deadline <= now) {
      const nodes = [...this.unknown].sort()
      while (this.held.length > 0 && this.held[0]!.deadline <= now) {
        const h = this.held.shift()!
        h.topic.failedPublishes++
        this.out.push({
          _tag: 'Fail',
          op: h.op,
          error: new CoordinationError({ reason: 'Timeout', message: `topic '${h.topic.name}': the topics of ${nodes.join(', ')} were not known within ${this.options.publishTimeoutMs} ms`, nodes })
        })
      }
    }
    for (const t of this.waitingTopics) {
      let expired = false
      for (const p of t.pending) {
        if (p.deadline > now) break
        p.done = true
        expired = true
        t.failedPublishes++
        const nodes = [...p.waiting].sort()
        this.out.push({
          _tag: 'Fail',
          op: p.op,
          error: new CoordinationError({ reason: 'Timeout', message: `topic '${t.name}': ${nodes.join(', ')} did not take the message within ${this.options.publishTimeoutMs} ms`, nodes })
        })
      }
      if (expired) this.compact(t)
    }
    const expired = this.interests.filter((p) => p.deadline <= now)
    if (expired.length === 0) return
    this.interests = this.interests.filter((p) => p.deadline > now)
    let withdrawn = false
    for (const p of expired) {
      const nodes = [...p.waiting].sort()
      if (p.subscribing === undefined) {
        // an unsubscribe has taken effect here; the members learn it with the next Interest
        this.out.push({ _tag: 'Done', op: p.op })
        continue
      }
      const t = this.topics.get(p.subscribing.topic)
      if (t !== undefined && t.subscribers.delete(p.subscribing.subscriber) && t.subscribers.size === 0) withdrawn = true
      this.out.push({
        _tag: 'Fail',
        op: p.op,
        error: new CoordinationError({ reason: 'Timeout', message: `topic '${p.subscribing.topic}': ${nodes.join(', ')} did not learn of the subscription within ${this.options.subscribeTimeoutMs} ms`, nodes })
      })
    }
    if (withdrawn) this.announce(undefined, now, undefined)
  }

  /** When the engine wants its next tick, if ever. */
  nextWake(): number | undefined {
    let at = Infinity
    for (const t of this.waitingTopics) at = Math.min(at, t.pending[0]!.deadline)
    for (const p of this.interests) at = Math.min(at, p.deadline)
    if (this.held.length > 0) at = Math.min(at, this.held[0]!.deadline)
    return at === Infinity ? undefined : at
  }

  /** Fails everything that waits; the engine takes no more input. */
  close(): void {
    if (this.closed) return
    this.closed = true
    const error = closedError()
    for (const t of this.topics.values()) {
      for (const p of t.pending) if (!p.done) this.out.push({ _tag: 'Fail', op: p.op, error })
      t.pending = []
      t.subscribers.clear()
    }
    this.waitingTopics.clear()
    for (const p of this.interests) this.out.push({ _tag: 'Fail', op: p.op, error })
    this.interests = []
    for (const h of this.held) this.out.push({ _tag: 'Fail', op: h.op, error })
    this.held = []
  }

  stats(): ReadonlyArray<TopicStats> {
    return [...this.topics.values()]
      .map((t) => ({
        topic: t.name,
        localSubscribers: t.subscribers.size,
        subscriberNodes: [...t.nodes].filter((n) => this.members.has(n)).sort(),
        published: t.published,
        delivered: t.delivered,
        pending: t.pending.length,
        failedPublishes: t.failedPublishes
      }))
      .sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0))
  }

  /** Topics with a local subscriber, sorted. */
  localTopics(): ReadonlyArray<string> {
    return [...this.topics.values()]
      .filter((t) => t.subscribers.size > 0)
      .map((t) => t.name)
      .sort()
  }

  private topic(name: string): Topic | CoordinationError {
    const known = this.topics.get(name)
    if (known !== undefined) return known
    const invalid = invalidTopic(name)
    if (invalid !== undefined) return new CoordinationError({ reason: 'InvalidTopic', message: invalid })
    if (this.topics.size >= this.options.maxTopics) {
      return new CoordinationError({ reason: 'TooManyTopics', message: `this node has ${this.topics.size} topics, its limit (maxTopics)` })
    }
    const t: Topic = { name, subscribers: new Set(), nodes: new Set(), nextSeq: 0, pending: [], published: 0, delivered: 0, failedPublishes: 0 }
    for (const [node, interest] of this.remote) if (interest.topics.has(name)) t.nodes.add(node)
    this.topics.set(name, t)
    return t
  }

  private interest(): TopicMessage.Interest {
    return { _tag: 'Interest', epoch: this.options.epoch, seq: this.interestSeq, topics: this.localTopics() }
  }

  /** Tells every member the new set of topics; `op` (if any) completes when they all acknowledged. */
  private announce(op: number | undefined, now: number, subscribing: PendingInterest['subscribing']): void {
    this.interestSeq = (this.interestSeq + 1) >>> 0
    const message = this.interest()
    for (const n of this.members) this.out.push({ _tag: 'Send', to: n, message })
    if (op !== undefined) this.wait(op, now, subscribing)
  }

  /** The op completes when every member acknowledged the current Interest (or left). */
  private wait(op: number, now: number, subscribing: PendingInterest['subscribing']): void {
    const seq = this.interestSeq
    const waiting = new Set([...this.members].filter((n) => !this.ackedAtLeast(n, seq)))
    const p: PendingInterest = { op, seq, waiting, deadline: now + this.options.subscribeTimeoutMs, subscribing }
    if (!this.settleInterest(p)) this.interests.push(p)
  }

  private ackedAtLeast(node: string, seq: number): boolean {
    const acked = this.acks.get(node)
    return acked !== undefined && serialAtMost(seq, acked)
  }

  private settleInterest(p: PendingInterest): boolean {
    if (p.waiting.size > 0) return false
    this.out.push({ _tag: 'Done', op: p.op })
    return true
  }

  private setInterest(from: string, message: TopicMessage.Interest): void {
    const previous = this.remote.get(from)
    const topics = new Set(message.topics)
    this.remote.set(from, { epoch: message.epoch, seq: message.seq, topics })
    if (previous !== undefined) for (const name of previous.topics) if (!topics.has(name)) this.topics.get(name)?.nodes.delete(from)
    for (const name of topics) this.topics.get(name)?.nodes.add(from)
  }

  /** A member left or failed: nothing waits for it any more. */
  private forget(node: string): void {
    const known = this.remote.get(node)
    this.remote.delete(node)
    this.unknown.delete(node)
    this.acking.delete(node)
    this.acks.delete(node)
    if (known !== undefined) for (const name of known.topics) this.topics.get(name)?.nodes.delete(node)
    for (const t of this.waitingTopics) {
      let completed = false
      for (const p of t.pending) {
        if (!p.done && p.waiting.delete(node) && p.waiting.size === 0) {
          p.done = true
          completed = true
          this.out.push({ _tag: 'Done', op: p.op })
        }
      }
      if (completed) this.compact(t)
    }
    this.interests = this.interests.filter((p) => {
      p.waiting.delete(node)
      return !this.settleInterest(p)
    })
  }
}

const closedError = () => new CoordinationError({ reason: 'Closed', message: 'the topics service is shutting down' })
