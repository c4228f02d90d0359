/**
 * @mycorrizal/metrics — Prometheus metrics of a Mycorrizal node on an injected prom-client
 * registry, read from the stats of the cluster, streams and cache at scrape time.
 *
 * @since 0.1.0
 */
export * as Metrics from './Metrics.js'
