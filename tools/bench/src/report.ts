/** Percentile of unsorted samples (nearest rank). */
export const percentile = (samples: ReadonlyArray<number>, p: number): number => {
  const sorted = [...samples].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? Number.NaN
}

/** The benchmark's result: the last line of output, one JSON object. */
export const printResult = (result: unknown): void => {
  process.stdout.write(`${JSON.stringify(result)}\n`)
}

/** Runs `body` repeatedly for about `ms` milliseconds; returns iterations and elapsed ms. */
export const timed = (ms: number, body: () => void): { readonly iterations: number; readonly elapsedMs: number } => {
  const start = performance.now()
  let iterations = 0
  let now = start
  while (now - start < ms) {
    body()
    iterations++
    now = performance.now()
  }
  return { iterations, elapsedMs: now - start }
}
