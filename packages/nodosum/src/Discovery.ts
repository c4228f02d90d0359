/**
 * Where a node finds its seeds: a static list, DNS (A/AAAA, or SRV for names starting with
 * `_` — a Kubernetes headless service works), or the Consul catalog. Resolved again every
 * `discoveryInterval`, so nodes that come later, or a cluster that split, find each other.
 *
 * @since 0.1.0
 */
import * as Context from 'effect/Context'
import * as Effect from 'effect/Effect'
import * as Layer from 'effect/Layer'
import * as Redacted from 'effect/Redacted'
import { Resolver } from 'node:dns/promises'
import { isIP } from 'node:net'
import type { Discovery as DiscoverySettings } from './NodosumConfig.js'
import { DiscoveryError } from './NodosumError.js'
import { type Address, formatAddress } from './Transport.js'

/** Resolves the current seed addresses. */
export class Discovery extends Context.Tag('@mycorrizal/nodosum/Discovery')<
  Discovery,
  {
    /** A short description for logs, e.g. `dns mycorrizal.svc:7000`. */
    readonly describe: string
    readonly resolve: Effect.Effect<ReadonlyArray<Address>, DiscoveryError>
  }
>() {}

/** A fixed list of seeds. */
export const fixed = (seeds: ReadonlyArray<Address>): Discovery['Type'] => ({
  describe: seeds.length === 0 ? 'no seeds' : `seeds ${seeds.map(formatAddress).join(',')}`,
  resolve: Effect.succeed(seeds)
})

const dedupe = (addresses: ReadonlyArray<Address>): ReadonlyArray<Address> => {
  const seen = new Set<string>()
  return addresses.filter((a) => {
    const key = formatAddress(a)
    if (seen.has(key)) return false
    seen.add(key)
    return true
  })
}

/**
 * DNS discovery. A name starting with `_` is an SRV name (`_service._proto.domain`): every
 * target with its port, each target resolved to A and AAAA. Any other name is resolved to A
 * and AAAA records, all with `port`.
 */
export const dns = (options: { readonly name: string; readonly port?: number | undefined; readonly server?: Address | undefined; readonly timeoutMs?: number }): Discovery['Type'] => {
  const resolver = new Resolver({ timeout: options.timeoutMs ?? 2_000, tries: 2 })
  if (options.server !== undefined) resolver.setServers([formatAddress(options.server)])
  const hostsOf = async (name: string): Promise<Array<string>> => {
    if (isIP(name) !== 0) return [name]
    const [v4, v6] = await Promise.allSettled([resolver.resolve4(name), resolver.resolve6(name)])
    const hosts = [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])]
    if (hosts.length === 0) {
      const reason = v4.status === 'rejected' ? (v4.reason as Error).message : 'no A or AAAA records'
      throw new Error(`${name}: ${reason}`)
    }
    return hosts
  }
  const resolve = Effect.tryPromise({
    try: async () => {
      if (options.name.startsWith('_')) {
        const records = await resolver.resolveSrv(options.name)
        const resolved = await Promise.all(
          records.map(async (srv) => (await hostsOf(srv.name).catch(() => [] as Array<string>)).map((host) => ({ host, port: srv.port })))
        )
        return dedupe(resolved.flat())
      }
      const hosts = await hostsOf(options.name)
      return dedupe(hosts.map((host) => ({ host, port: options.port ?? 0 })))
    },
    catch: (e) => new DiscoveryError({ source: 'dns', message: `DNS lookup of ${options.name} failed: ${(e as Error).message}` })
  })
  return { describe: `dns ${options.name}${options.port === undefined ? '' : `:${options.port}`}`, resolve }
}

interface ConsulEntry {
  readonly Node?: { readonly Address?: string }
  readonly Service?: { readonly Address?: string; readonly Port?: number }
}

/**
 * A Consul URL split into the URL to fetch (no credentials: Node's `fetch` refuses them) and
 * the `Authorization: Basic` header its `user:pass@` asks for. `display` is for logs: never
 * the credentials.
 */
export const consulEndpoint = (url: string): { readonly url: string; readonly display: string; readonly authorization: string | undefined } => {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return { url, display: url.replace(/\/\/[^/@]*@/, '//***@'), authorization: undefined }
  }
  const authorization =
    parsed.username === '' && parsed.password === ''
      ? undefined
      : `Basic ${Buffer.from(`${decodeURIComponent(parsed.username)}:${decodeURIComponent(parsed.password)}`, 'utf8').toString('base64')}`
  parsed.username = ''
  parsed.password = ''
  const bare = parsed.toString().replace(/\/$/, '')
  return { url: bare, display: bare, authorization }
}

/**
 * Consul discovery: the passing instances of a service from `/v1/health/service/<name>?passing`.
 * Credentials in the URL (`http://user:pass@consul:8500`) are sent as `Authorization: Basic`,
 * an ACL token as `X-Consul-Token`; neither appears in `describe` nor in errors.
 */
export const consul = (options: {
  readonly url: string
  readonly service: string
  readonly timeoutMs?: number
  /** Consul ACL token, sent as `X-Consul-Token`. */
  readonly token?: Redacted.Redacted<string> | undefined
}): Discovery['Type'] => {
  const target = consulEndpoint(options.url)
  const path = `/v1/health/service/${encodeURIComponent(options.service)}?passing`
  const endpoint = `${target.url}${path}`
  const headers: Record<string, string> = { accept: 'application/json' }
  if (target.authorization !== undefined) headers['authorization'] = target.authorization
  const resolve = Effect.tryPromise({
    try: async (signal) => {
      // the token is read at each request, never kept in a string of ours
      const response = await fetch(endpoint, {
        headers: options.token === undefined ? headers : { ...headers, 'x-consul-token': Redacted.value(options.token) },
        signal: AbortSignal.any([signal, AbortSignal.timeout(options.timeoutMs ?? 3_000)])
      })
      if (!response.ok) throw new Error(`HTTP ${response.status}`)
      const body = (await response.json()) as unknown
      if (!Array.isArray(body)) throw new Error('expected a JSON array of service entries')
      const addresses: Array<Address> = []
      for (const entry of body as ReadonlyArray<ConsulEntry>) {
        const host = entry.Service?.Address || entry.Node?.Address
        const port = entry.Service?.Port
        if (typeof host === 'string' && host.length > 0 && typeof port === 'number' && Number.isInteger(port) && port > 0 && port < 65536) {
          addresses.push({ host, port })
        }
      }
      return dedupe(addresses)
    },
    catch: (e) => new DiscoveryError({ source: 'consul', message: `Consul query ${target.display}${path} failed: ${(e as Error).message}` })
  })
  return { describe: `consul ${target.display} service ${options.service}`, resolve }
}

/** The discovery the settings ask for. */
export const fromSettings = (settings: DiscoverySettings): Discovery['Type'] => {
  switch (settings._tag) {
    case 'Static':
      return fixed(settings.seeds)
    case 'Dns':
      return dns({ name: settings.name, port: settings.port, server: settings.server })
    case 'Consul':
      return consul({ url: settings.url, service: settings.service, token: settings.token })
  }
}

/** Discovery as a layer. */
export const layer = (settings: DiscoverySettings): Layer.Layer<Discovery> => Layer.succeed(Discovery, fromSettings(settings))
