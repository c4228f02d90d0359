/**
 * Copies bytes out of a view. Not `view.slice()`: on a Node `Buffer` that is a view into
 * the same memory, and the transports hand out views of buffers they reuse.
 */
export const copyBytes = (view: Uint8Array, start = 0): Uint8Array => new Uint8Array(start === 0 ? view : view.subarray(start))
