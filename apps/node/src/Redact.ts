/**
 * Credentials kept out of what a node prints: a URL's user and password (a Consul URL such as
 * `http://user:pass@consul:8500`) become `***` wherever a URL appears in a text — log
 * messages, log fields, error causes, config errors.
 *
 * @since 0.1.0
 */

// scheme://userinfo@ — the userinfo runs to the last "@" before the path, query or fragment
const URL_CREDENTIALS = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@]*(?:@[^\s/?#@]*)*@/gi

/** The text with the credentials of every URL in it replaced by `***`. */
export const redactUrlCredentials = (text: string): string => (text.includes('@') ? text.replace(URL_CREDENTIALS, '$1***@') : text)

/** A value with every string in it (nested in arrays and plain objects) redacted. */
export const redactValue = (value: unknown, depth = 0): unknown => {
  if (typeof value === 'string') return redactUrlCredentials(value)
  if (depth > 8 || value === null || typeof value !== 'object') return value
  if (Array.isArray(value)) return value.map((v) => redactValue(v, depth + 1))
  if (Object.getPrototypeOf(value) !== Object.prototype) return value
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactValue(v, depth + 1)]))
}
