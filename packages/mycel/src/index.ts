/**
 * @mycorrizal/mycel — the distributed cache.
 *
 * @since 0.1.0
 */
export * as Mycel from './Mycel.js'
export * from './MycelError.js'
