// The dashboard's model: atomserve's `/stats` JSON (src/observe/scrape/json.rs) in, figures to show out.
//
// Pure functions only — no DOM, no fetch, no React — so that `deno task test` checks every
// number the page shows (src/stats_test.ts). The page (App.tsx) keeps a `History` of samples,
// one a second, and renders `view(history, now)`.

/** One `/stats` document, as the server sends it. */
export interface Stats {
  time_unix_ms: number;
  uptime_seconds: number;
  requests_total: number;
  response_bytes_total: number;
  /** Only codes seen so far appear. */
  responses_by_code: Record<string, number>;
  duration_seconds: {
    /** Upper bounds of the finite buckets, ascending. */
    bounds: number[];
    /** One per bound plus a last one for +Inf; per bucket today (see `perBucket`). */
    counts: number[];
    sum: number;
    count: number;
  };
  workers: { id: number; cpu: number | null; requests: number; connections_accepted: number; connections_active: number }[];
  connections_active: number;
  connections_accepted_total: number;
  accept_queue_depth: number;
  accept_queue_full_total: number;
  cache: {
    generation: number;
    files: number;
    bytes: number;
    hits: number;
    /** The part of `hits` answered whole from a worker's rendered responses (hot files). */
    rendered_hits: number;
    misses: number;
    reloads_ok: number;
    reloads_failed: number;
    last_reload_unix_ms: number;
    /** Identity bytes of every file, and of the files with a gzip/br variant, and the bytes of
     * those files' smallest variants: what compression at load saves. */
    identity_bytes: number;
    compressible_bytes: number;
    compressed_bytes: number;
    /** Files sent from disk (over --max-cached-file or past the budget). */
    disk_files: number;
    /** Large bodies sent from their own file's page cache (--large-bodies): not in `bytes`. */
    page_cache_files: number;
    page_cache_bytes: number;
    /** What loads took from the snapshot they replaced instead of building again, and placed anew. */
    reused_files: number;
    reused_bytes: number;
    built_bytes: number;
    /** Files whose gzip/br variants are still being built in the background. */
    variants_pending: number;
    /** The latest load: what started it, and its two phases (identity served; variants built, 0 until then). */
    last_reload: { trigger: string; identity_ms: number; variants_ms: number };
  };
}

/** The admin `/stats` URL: `?admin=host:port` (or a full URL) wins, else port 9464 on the page's host. */
export function adminUrl(search: string, pageHostname: string): string {
  const admin = new URLSearchParams(search).get("admin")?.trim();
  if (admin) {
    const base = /^https?:\/\//.test(admin) ? admin : `http://${admin}`;
    const url = new URL(base);
    if (url.pathname === "/" || url.pathname === "") url.pathname = "/stats";
    return url.toString();
  }
  // location.hostname keeps the brackets of an IPv6 literal, which a URL needs.
  return `http://${pageHostname || "127.0.0.1"}:9464/stats`;
}

function num(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isFinite(v)) throw new Error(`/stats: ${what} is not a number`);
  return v;
}

function obj(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error(`/stats: ${what} is not an object`);
  return v as Record<string, unknown>;
}

function nums(v: unknown, what: string): number[] {
  if (!Array.isArray(v)) throw new Error(`/stats: ${what} is not an array`);
  return v.map((x, i) => num(x, `${what}[${i}]`));
}

/** Checks the shape of a parsed `/stats` document, so that a changed server fails loudly here. */
export function parseStats(json: unknown): Stats {
  const o = obj(json, "document");
  const d = obj(o.duration_seconds, "duration_seconds");
  const c = obj(o.cache, "cache");
  const codes = obj(o.responses_by_code, "responses_by_code");
  const bounds = nums(d.bounds, "duration_seconds.bounds");
  const counts = nums(d.counts, "duration_seconds.counts");
  if (counts.length !== bounds.length + 1) {
    throw new Error("/stats: duration_seconds.counts must have one more entry than bounds (+Inf)");
  }
  if (!Array.isArray(o.workers)) throw new Error("/stats: workers is not an array");
  return {
    time_unix_ms: num(o.time_unix_ms, "time_unix_ms"),
    uptime_seconds: num(o.uptime_seconds, "uptime_seconds"),
    requests_total: num(o.requests_total, "requests_total"),
    response_bytes_total: num(o.response_bytes_total, "response_bytes_total"),
    responses_by_code: Object.fromEntries(
      Object.entries(codes).map(([k, v]) => [k, num(v, `responses_by_code.${k}`)]),
    ),
    duration_seconds: {
      bounds,
      counts,
      sum: num(d.sum, "duration_seconds.sum"),
      count: num(d.count, "duration_seconds.count"),
    },
    workers: o.workers.map((w: unknown, i: number) => {
      const wo = obj(w, `workers[${i}]`);
      return {
        id: num(wo.id, `workers[${i}].id`),
        cpu: wo.cpu === null ? null : num(wo.cpu, `workers[${i}].cpu`),
        requests: num(wo.requests, `workers[${i}].requests`),
        connections_accepted: num(wo.connections_accepted, `workers[${i}].connections_accepted`),
        connections_active: num(wo.connections_active, `workers[${i}].connections_active`),
      };
    }),
    connections_active: num(o.connections_active, "connections_active"),
    connections_accepted_total: num(o.connections_accepted_total, "connections_accepted_total"),
    accept_queue_depth: num(o.accept_queue_depth, "accept_queue_depth"),
    accept_queue_full_total: num(o.accept_queue_full_total, "accept_queue_full_total"),
    cache: {
      generation: num(c.generation, "cache.generation"),
      files: num(c.files, "cache.files"),
      bytes: num(c.bytes, "cache.bytes"),
      hits: num(c.hits, "cache.hits"),
      rendered_hits: num(c.rendered_hits, "cache.rendered_hits"),
      misses: num(c.misses, "cache.misses"),
      reloads_ok: num(c.reloads_ok, "cache.reloads_ok"),
      reloads_failed: num(c.reloads_failed, "cache.reloads_failed"),
      last_reload_unix_ms: num(c.last_reload_unix_ms, "cache.last_reload_unix_ms"),
      identity_bytes: num(c.identity_bytes, "cache.identity_bytes"),
      compressible_bytes: num(c.compressible_bytes, "cache.compressible_bytes"),
      compressed_bytes: num(c.compressed_bytes, "cache.compressed_bytes"),
      disk_files: num(c.disk_files, "cache.disk_files"),
      page_cache_files: num(c.page_cache_files, "cache.page_cache_files"),
      page_cache_bytes: num(c.page_cache_bytes, "cache.page_cache_bytes"),
      reused_files: num(c.reused_files, "cache.reused_files"),
      reused_bytes: num(c.reused_bytes, "cache.reused_bytes"),
      built_bytes: num(c.built_bytes, "cache.built_bytes"),
      variants_pending: num(c.variants_pending, "cache.variants_pending"),
      last_reload: lastReload(c.last_reload),
    },
  };
}

function lastReload(v: unknown): Stats["cache"]["last_reload"] {
  const o = obj(v, "cache.last_reload");
  if (typeof o.trigger !== "string") throw new Error("cache.last_reload.trigger: expected a string");
  return {
    trigger: o.trigger,
    identity_ms: num(o.identity_ms, "cache.last_reload.identity_ms"),
    variants_ms: num(o.variants_ms, "cache.last_reload.variants_ms"),
  };
}

/** A load's two phases: `identity 12 ms, variants 1.8 s` (variants still building: `pending`). */
export function formatPhases(r: Stats["cache"]["last_reload"], pending: number): string {
  const ms = (v: number) => (v < 1000 ? `${v.toFixed(v < 10 ? 1 : 0)} ms` : `${(v / 1000).toFixed(1)} s`);
  const variants = r.variants_ms > 0 ? ms(r.variants_ms) : `${pending} files pending`;
  return `${r.trigger}: identity ${ms(r.identity_ms)}, variants ${variants}`;
}

// ---------------------------------------------------------------------------------------------
// Histograms

/**
 * Per-bucket counts from either form a histogram comes in. atomserve's `/stats` sends per-bucket
 * counts (src/observe/scrape/prometheus.rs `duration`); Prometheus's `_bucket` series are cumulative.
 * `auto` tells them apart with the total: per-bucket counts sum to it, cumulative ones end at it
 * without ever decreasing. (When both hold, every bucket but the last non-empty one is empty and
 * the two readings agree.)
 */
export function perBucket(
  counts: number[],
  total: number,
  form: "auto" | "cumulative" | "per-bucket" = "auto",
): number[] {
  let cumulative = form === "cumulative";
  if (form === "auto") {
    const sum = counts.reduce((a, b) => a + b, 0);
    const monotone = counts.every((c, i) => i === 0 || c >= counts[i - 1]);
    cumulative = sum !== total && monotone && counts.length > 0 && counts[counts.length - 1] === total;
  }
  return cumulative ? counts.map((c, i) => c - (i === 0 ? 0 : counts[i - 1])) : counts.slice();
}

/**
 * The q-quantile (0..1) of a histogram with per-bucket `counts` (the last one being +Inf), by
 * linear interpolation inside the bucket that holds the rank — what Prometheus's
 * `histogram_quantile` does. The first bucket starts at 0; a rank in the +Inf bucket reports the
 * highest finite bound (all that is known is "above it"). `null` when the histogram is empty.
 */
export function quantile(q: number, bounds: number[], counts: number[]): number | null {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total <= 0 || bounds.length === 0) return null;
  const rank = Math.min(Math.max(q, 0), 1) * total;
  let below = 0;
  for (let i = 0; i < counts.length; i++) {
    const n = counts[i];
    if (n > 0 && below + n >= rank) {
      if (i >= bounds.length) return bounds[bounds.length - 1];
      const lo = i === 0 ? 0 : bounds[i - 1];
      const hi = bounds[i];
      return lo + (hi - lo) * Math.max(rank - below, 0) / n;
    }
    below += n;
  }
  return bounds[bounds.length - 1];
}

/** Bucket-wise `a - b` (a later histogram minus an earlier one): what happened in between. */
export function subtractCounts(a: number[], b: number[]): number[] {
  return a.map((x, i) => Math.max(x - (b[i] ?? 0), 0));
}

// ---------------------------------------------------------------------------------------------
// History and rates

/** Samples in time order, oldest first, at most `HISTORY_SECONDS` apart from newest to oldest. */
export type History = Stats[];

/** How much the chart shows. */
export const HISTORY_SECONDS = 300;

/**
 * Appends a sample. A server that restarted (uptime went back, or a counter went down) starts a
 * new history, since rates across a restart would be meaningless; samples older than the window
 * are dropped. Returns a new array (React state).
 */
export function append(history: History, s: Stats, windowSeconds = HISTORY_SECONDS): History {
  const last = history[history.length - 1];
  if (last && (s.uptime_seconds < last.uptime_seconds || s.requests_total < last.requests_total)) {
    return [s];
  }
  if (last && s.time_unix_ms <= last.time_unix_ms) return history; // a duplicate or stale answer
  const keepFrom = s.time_unix_ms - windowSeconds * 1000;
  const out = history.filter((h) => h.time_unix_ms >= keepFrom);
  out.push(s);
  return out;
}

/** Per-second rate of a counter between two samples; null when they are the same instant. */
export function rate(prev: Stats, next: Stats, pick: (s: Stats) => number): number | null {
  const dt = (next.time_unix_ms - prev.time_unix_ms) / 1000;
  if (dt <= 0) return null;
  return Math.max(pick(next) - pick(prev), 0) / dt;
}

/** One point of the requests/s chart: at `t` (unix ms), the rate since the previous sample. */
export interface Point {
  t: number;
  v: number;
}

export function series(history: History, pick: (s: Stats) => number): Point[] {
  const out: Point[] = [];
  for (let i = 1; i < history.length; i++) {
    const v = rate(history[i - 1], history[i], pick);
    if (v !== null) out.push({ t: history[i].time_unix_ms, v });
  }
  return out;
}

/** The newest sample at least `seconds` older than the last one, else the oldest one. */
export function sampleBefore(history: History, seconds: number): Stats | undefined {
  const last = history[history.length - 1];
  if (!last) return undefined;
  for (let i = history.length - 1; i >= 0; i--) {
    if (last.time_unix_ms - history[i].time_unix_ms >= seconds * 1000) return history[i];
  }
  return history[0];
}

// ---------------------------------------------------------------------------------------------
// The view model

/** Latency window: percentiles of the requests served in the last minute. */
export const LATENCY_WINDOW_SECONDS = 60;

export interface WorkerView {
  id: number;
  cpu: number | null;
  requests: number;
  connectionsAccepted: number;
  connectionsActive: number;
  /** requests/s over the last sample interval, null before two samples */
  perSecond: number | null;
  /** this worker's part of all requests so far, 0..1 */
  share: number;
}

export interface View {
  requestsTotal: number;
  requestsPerSecond: number | null;
  bytesPerSecond: number | null;
  uptimeSeconds: number;
  connectionsActive: number;
  connectionsAcceptedTotal: number;
  connectionsPerSecond: number | null;
  acceptQueueDepth: number;
  acceptQueueFullTotal: number;
  latency: {
    /** "last 60 s", or "since start" when nothing was served in the window */
    window: string;
    count: number;
    p50: number | null;
    p90: number | null;
    p99: number | null;
    mean: number | null;
    /** the lowest and highest finite bucket bounds: what the histogram can resolve */
    floor: number | null;
    ceiling: number | null;
  };
  codes: { code: string; count: number; share: number }[];
  workers: WorkerView[];
  /** max/min of per-worker request counts; 1 is perfect balance, null with fewer than 2 busy workers */
  imbalance: number | null;
  /** compressionSavings: 1 − smallest variants / identity, over the files that have variants. */
  cache: Stats["cache"] & { hitRatio: number | null; renderedShare: number | null; compressionSavings: number | null };
  chart: Point[];
}

export function view(history: History): View | null {
  const s = history[history.length - 1];
  if (!s) return null;
  const prev = history[history.length - 2];
  const r = (pick: (x: Stats) => number) => (prev ? rate(prev, s, pick) : null);

  // Latency over the last minute (the difference of two histograms), or since start.
  const d = s.duration_seconds;
  let counts = perBucket(d.counts, d.count);
  let sum = d.sum;
  let window = "since start";
  const old = sampleBefore(history, LATENCY_WINDOW_SECONDS);
  if (old && old !== s) {
    const oldCounts = perBucket(old.duration_seconds.counts, old.duration_seconds.count);
    const recent = subtractCounts(counts, oldCounts);
    if (recent.some((c) => c > 0)) {
      counts = recent;
      sum = d.sum - old.duration_seconds.sum;
      const secs = Math.round((s.time_unix_ms - old.time_unix_ms) / 1000);
      window = `last ${secs} s`;
    }
  }
  const count = counts.reduce((a, b) => a + b, 0);

  const codeTotal = Object.values(s.responses_by_code).reduce((a, b) => a + b, 0);
  const codes = Object.entries(s.responses_by_code)
    .map(([code, n]) => ({ code, count: n, share: codeTotal ? n / codeTotal : 0 }))
    .sort((a, b) => a.code.localeCompare(b.code));

  const workerTotal = s.workers.reduce((a, w) => a + w.requests, 0);
  const workers = s.workers.map((w) => {
    const before = prev?.workers.find((p) => p.id === w.id);
    const dt = prev ? (s.time_unix_ms - prev.time_unix_ms) / 1000 : 0;
    return {
      id: w.id,
      cpu: w.cpu,
      requests: w.requests,
      connectionsAccepted: w.connections_accepted,
      connectionsActive: w.connections_active,
      perSecond: before && dt > 0 ? Math.max(w.requests - before.requests, 0) / dt : null,
      share: workerTotal ? w.requests / workerTotal : 0,
    };
  });
  const busy = workers.map((w) => w.requests).filter((n) => n > 0);
  const imbalance = workers.length >= 2 && busy.length === workers.length
    ? Math.max(...busy) / Math.min(...busy)
    : null;

  const lookups = s.cache.hits + s.cache.misses;
  return {
    requestsTotal: s.requests_total,
    requestsPerSecond: r((x) => x.requests_total),
    bytesPerSecond: r((x) => x.response_bytes_total),
    uptimeSeconds: s.uptime_seconds,
    connectionsActive: s.connections_active,
    connectionsAcceptedTotal: s.connections_accepted_total,
    connectionsPerSecond: r((x) => x.connections_accepted_total),
    acceptQueueDepth: s.accept_queue_depth,
    acceptQueueFullTotal: s.accept_queue_full_total,
    latency: {
      window,
      count,
      p50: quantile(0.5, d.bounds, counts),
      p90: quantile(0.9, d.bounds, counts),
      p99: quantile(0.99, d.bounds, counts),
      mean: count ? sum / count : null,
      floor: d.bounds[0] ?? null,
      ceiling: d.bounds[d.bounds.length - 1] ?? null,
    },
    codes,
    workers,
    imbalance,
    cache: {
      ...s.cache,
      hitRatio: lookups ? s.cache.hits / lookups : null,
      renderedShare: s.cache.hits ? s.cache.rendered_hits / s.cache.hits : null,
      compressionSavings: s.cache.compressible_bytes
        ? 1 - s.cache.compressed_bytes / s.cache.compressible_bytes
        : null,
    },
    chart: series(history, (x) => x.requests_total),
  };
}

// ---------------------------------------------------------------------------------------------
// Formatting

/** A duration in seconds as µs, ms or s with three significant digits. */
export function formatSeconds(s: number | null): string {
  if (s === null || !Number.isFinite(s)) return "–";
  if (s < 1e-3) return `${sig(s * 1e6)} µs`;
  if (s < 1) return `${sig(s * 1e3)} ms`;
  return `${sig(s)} s`;
}

/**
 * A quantile, honest about the histogram's resolution: a value in the first bucket only says
 * "at most its bound" (interpolation would invent a figure), one at the top "at least the last".
 */
export function formatQuantile(v: number | null, floor: number | null, ceiling: number | null): string {
  if (v === null) return formatSeconds(v);
  if (floor !== null && v <= floor) return `≤ ${formatSeconds(floor)}`;
  if (ceiling !== null && v >= ceiling) return `≥ ${formatSeconds(ceiling)}`;
  return formatSeconds(v);
}

/** Bytes in binary units: 512 B, 4.0 KiB, 412 KiB, 1.5 MiB. */
export function formatBytes(n: number | null): string {
  if (n === null || !Number.isFinite(n)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${Math.round(v)} B` : `${sig(v)} ${units[i]}`;
}

/** A rate or a large count, compact: 0, 7.5, 950, 1.2k, 34k, 1.5M. */
export function formatCompact(n: number | null): string {
  if (n === null || !Number.isFinite(n)) return "–";
  const a = Math.abs(n);
  if (a < 1000) return a >= 100 || Number.isInteger(n) ? String(Math.round(n)) : n.toFixed(1);
  if (a < 1e6) return `${sig(n / 1e3)}k`;
  if (a < 1e9) return `${sig(n / 1e6)}M`;
  return `${sig(n / 1e9)}G`;
}

export function formatPercent(r: number | null): string {
  if (r === null || !Number.isFinite(r)) return "–";
  const p = r * 100;
  return `${p >= 10 || p === 0 ? Math.round(p) : p.toFixed(1)}%`;
}

/** Seconds as "42 s", "3 min 5 s", "2 h 7 min", "3 d 4 h". */
export function formatDuration(seconds: number): string {
  const s = Math.max(Math.floor(seconds), 0);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** When the last reload happened, relative to the newest sample; 0 means "never reloaded". */
export function formatReload(lastUnixMs: number, nowUnixMs: number): string {
  if (!lastUnixMs) return "never (start-up load only)";
  return `${formatDuration((nowUnixMs - lastUnixMs) / 1000)} ago`;
}

function sig(v: number): string {
  const a = Math.abs(v);
  return a >= 100 ? String(Math.round(v)) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
}

// ---------------------------------------------------------------------------------------------
// Chart geometry

/** A "nice" axis maximum at or above `max` (1, 2, 2.5 or 5 times a power of ten) and its ticks. */
export function niceScale(max: number, ticks = 4): { max: number; ticks: number[] } {
  if (!(max > 0)) return { max: 1, ticks: [0, 0.5, 1] };
  const raw = max / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const top = Math.ceil(max / step - 1e-9) * step;
  const out: number[] = [];
  for (let v = 0; v <= top + step / 2; v += step) out.push(Number(v.toPrecision(12)));
  return { max: top, ticks: out };
}

/**
 * An SVG path for `points` in a `width`×`height` box: time runs over the last `spanMs` up to
 * `nowMs` left to right, values from 0 (bottom) to `yMax` (top). Returns the line and the
 * area under it ("" without points).
 */
export function chartPaths(
  points: Point[],
  nowMs: number,
  spanMs: number,
  yMax: number,
  width: number,
  height: number,
): { line: string; area: string } {
  const visible = points.filter((p) => p.t >= nowMs - spanMs);
  if (visible.length === 0) return { line: "", area: "" };
  const x = (t: number) => round2(width - ((nowMs - t) / spanMs) * width);
  const y = (v: number) => round2(height - (Math.min(v, yMax) / (yMax || 1)) * height);
  const line = visible.map((p, i) => `${i ? "L" : "M"}${x(p.t)},${y(p.v)}`).join("");
  const first = x(visible[0].t);
  const last = x(visible[visible.length - 1].t);
  return { line, area: `${line}L${last},${height}L${first},${height}Z` };
}

function round2(v: number): number {
  return Math.round(v * 100) / 100;
}
