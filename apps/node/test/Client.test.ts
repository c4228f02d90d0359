import { describe, expect, it } from '@effect/vitest'
import { formatAgo, formatBytes, formatLeaders, formatLocks, formatMembers, formatStream, formatTopics } from '../src/Client.js'

describe('Client formatting', () => {
  it('bytes in binary units', () => {
    expect(formatBytes(0)).toBe('0 B')
    expect(formatBytes(1023)).toBe('1023 B')
    expect(formatBytes(1536)).toBe('1.5 KiB')
    expect(formatBytes(10 * 1024 * 1024)).toBe('10.0 MiB')
    expect(formatBytes(3 * 1024 ** 4)).toBe('3.0 TiB')
  })

  it('durations in the past', () => {
    expect(formatAgo(400)).toBe('now')
    expect(formatAgo(2_000)).toBe('2s ago')
    expect(formatAgo(185_000)).toBe('3m 5s ago')
    expect(formatAgo(3_720_000)).toBe('1h 2m ago')
    expect(formatAgo(90_000_000)).toBe('1d 1h ago')
    expect(formatAgo(-5)).toBe('now')
  })

  it("the spec's stream block comes first", () => {
    const now = 1_800_000_000_000
    const text = formatStream(
      {
        app: 'SYSTEM-MYCEL',
        stream: 'bucket:sessions',
        bytesSent: 10 * 1024 * 1024,
        bytesReceived: 2048,
        messagesOut: 6000,
        messagesIn: 4000,
        failedSends: 1,
        receiveErrors: 0,
        errorRate: 0.0001,
        queuedMessages: 0,
        queuedBytes: 0,
        createdAt: now - 60_000,
        lastActive: now - 2_000,
        activeNodes: ['node-1', 'node-2', 'node-3']
      },
      now
    )
    expect(text.split('\n').slice(0, 6)).toEqual([
      'Stream: bucket:sessions',
      'Active nodes: [node-1, node-2, node-3]',
      'Bytes sent: 10.0 MiB',
      'Messages: 10000 (6000 out, 4000 in)',
      'Error rate: 0.01%',
      'Last active: 2s ago'
    ])
  })

  it('members as an aligned table', () => {
    const text = formatMembers([
      { id: 'a', address: '127.0.0.1:7400', state: 'alive', self: true },
      { id: 'bbbb', address: '[::1]:7400', state: 'left' }
    ])
    expect(text.split('\n')).toEqual(['ID        ADDRESS         STATE  SINCE', 'a (self)  127.0.0.1:7400  alive  ', 'bbbb      [::1]:7400      left   '])
  })

  it('topics as an aligned table, and a line when there are none', () => {
    expect(formatTopics([])).toBe('no topics on this node')
    const text = formatTopics([
      { topic: 'orders', localSubscribers: 2, subscriberNodes: ['b', 'c'], published: 10, delivered: 30, pending: 1, failedPublishes: 0 },
      { topic: 'x', localSubscribers: 0, subscriberNodes: [], published: 0, delivered: 0, pending: 0, failedPublishes: 3 }
    ])
    expect(text.split('\n')).toEqual([
      'TOPIC   LOCAL  NODES  PUBLISHED  DELIVERED  PENDING  FAILED',
      'orders  2      b,c    10         30         1        0',
      'x       0      -      0          0          0        3'
    ])
  })

  it('locks: the counts, then the held locks as a table', () => {
    const counts = { acquires: 3, contended: 1, timeouts: 0, releases: 2, lost: 0, refused: 0 }
    expect(formatLocks({ ...counts, held: [] })).toBe('Acquired 3, contended 1, timed out 0, released 2, lost 0, refused 0\nno locks held by this node')
    expect(formatLocks({ ...counts, held: [{ name: 'invoice-42', token: '18446744073709551615', remainingMs: 9_500 }] }).split('\n')).toEqual([
      'Acquired 3, contended 1, timed out 0, released 2, lost 0, refused 0',
      'LOCK        TOKEN                 LEASE LEFT',
      'invoice-42  18446744073709551615  9.5s'
    ])
  })

  it('leaders: one row per election, and a line when there are none', () => {
    expect(formatLeaders({ led: 0, revoked: 0, elections: [] })).toBe('no elections on this node')
    const text = formatLeaders({
      led: 2,
      revoked: 1,
      elections: [
        { name: 'nightly', isLeader: true, leader: 'a', token: '7', terms: 2 },
        { name: 'x', isLeader: false, leader: null, token: null, terms: 0 }
      ]
    })
    expect(text.split('\n')).toEqual(['ELECTION  LEADER  THIS NODE  TOKEN  TERMS', 'nightly   a       leader     7      2', 'x         -       candidate  -      0', 'Terms led 2, revoked 1'])
  })
})
