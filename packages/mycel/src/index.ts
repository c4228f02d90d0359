/**
 * @mycorrizal/mycel — the distributed cache.
 *
 * @since 0.1.0
 */
export * as Mycel from './Mycel.js'
export * as MycelConfig from './MycelConfig.js'
export * from './MycelError.js'
