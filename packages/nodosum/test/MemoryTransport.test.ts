import { testApi } from '@mycorrizal/testing'
import * as MemoryTransport from '../src/MemoryTransport.js'
import { transportSuite } from '../src/testing.js'

transportSuite(
  'MemoryTransport',
  (options) =>
    MemoryTransport.make({
      host: '127.0.0.1',
      handshakeTimeoutMs: options.handshakeTimeoutMs,
      idleTimeoutMs: options.idleTimeoutMs,
      limits: { maxStreams: options.maxStreams }
    }),
  MemoryTransport.networkLayer,
  testApi
)
