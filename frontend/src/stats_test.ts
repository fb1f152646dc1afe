/// <reference lib="deno.ns" />
// Unit tests of the stats → view-model code: `deno task test` (run by `make frontend-test`).
import assert from "node:assert/strict";
import {
  adminUrl,
  append,
  chartPaths,
  formatBytes,
  formatPhases,
  formatCompact,
  formatDuration,
  formatPercent,
  formatQuantile,
  formatReload,
  formatSeconds,
  niceScale,
  parseStats,
  perBucket,
  quantile,
  rate,
  sampleBefore,
  series,
  type Stats,
  view,
} from "./stats.ts";

const BOUNDS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** A document shaped exactly like one captured from `curl 127.0.0.1:9464/stats`. */
const CAPTURED = `{"time_unix_ms":1795663214835,"uptime_seconds":1.932,"requests_total":2,"response_bytes_total":468,"responses_by_code":{"200":1,"404":1},"duration_seconds":{"bounds":[0.00005,0.0001,0.00025,0.0005,0.001,0.0025,0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10],"counts":[0,1,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"sum":0.000200797,"count":2},"workers":[{"id":0,"cpu":0,"requests":1,"connections_accepted":1,"connections_active":0,"turns":14,"recv_buffers_exhausted":0,"cq_overflows":0},{"id":1,"cpu":1,"requests":1,"connections_accepted":1,"connections_active":1,"turns":9,"recv_buffers_exhausted":0,"cq_overflows":0}],"connections_active":0,"connections_accepted_total":2,"accept_queue_depth":0,"accept_queue_full_total":0,"cache":{"generation":0,"files":9,"bytes":422088,"hits":1,"rendered_hits":0,"misses":1,"reloads_ok":0,"reloads_failed":0,"last_reload_unix_ms":0,"identity_bytes":239413,"compressible_bytes":239413,"compressed_bytes":64458,"disk_files":0,"page_cache_files":0,"page_cache_bytes":0,"reused_files":0,"reused_bytes":0,"built_bytes":239413,"variants_pending":0,"last_reload":{"trigger":"start","identity_ms":3.214,"variants_ms":612.5}}}`;

/** A sample `seconds` after the captured one, with the given counters. */
function sample(seconds: number, requests: number, extra: Partial<Stats> = {}): Stats {
  const base = parseStats(JSON.parse(CAPTURED));
  return {
    ...base,
    time_unix_ms: base.time_unix_ms + seconds * 1000,
    uptime_seconds: base.uptime_seconds + seconds,
    requests_total: requests,
    ...extra,
  };
}

Deno.test("parseStats accepts the server's document and keeps every field", () => {
  const s = parseStats(JSON.parse(CAPTURED));
  assert.equal(s.requests_total, 2);
  assert.deepEqual(s.responses_by_code, { "200": 1, "404": 1 });
  assert.equal(s.duration_seconds.counts.length, s.duration_seconds.bounds.length + 1);
  assert.equal(s.workers[1].cpu, 1);
  assert.equal(s.workers[1].connections_active, 1);
  assert.equal(s.cache.files, 9);
  assert.deepEqual(s.cache.last_reload, { trigger: "start", identity_ms: 3.214, variants_ms: 612.5 });
});

Deno.test("formatPhases: both phases of the last load, or what is still pending", () => {
  assert.equal(formatPhases({ trigger: "watch", identity_ms: 12.4, variants_ms: 1830 }, 0), "watch: identity 12 ms, variants 1.8 s");
  assert.equal(formatPhases({ trigger: "start", identity_ms: 3.21, variants_ms: 0 }, 4), "start: identity 3.2 ms, variants 4 files pending");
});

Deno.test("parseStats rejects a document whose shape changed", () => {
  const doc = JSON.parse(CAPTURED);
  delete doc.cache.generation;
  assert.throws(() => parseStats(doc), /cache.generation/);
  const short = JSON.parse(CAPTURED);
  short.duration_seconds.counts.pop();
  assert.throws(() => parseStats(short), /\+Inf/);
  assert.throws(() => parseStats("nope"), /document/);
  const unpinned = JSON.parse(CAPTURED);
  unpinned.workers[0].cpu = null; // --no-pin
  assert.equal(parseStats(unpinned).workers[0].cpu, null);
});

Deno.test("adminUrl: ?admin= overrides, else port 9464 on the page's host", () => {
  assert.equal(adminUrl("", "example.org"), "http://example.org:9464/stats");
  assert.equal(adminUrl("?admin=127.0.0.1:19464", "x"), "http://127.0.0.1:19464/stats");
  assert.equal(adminUrl("?admin=http://h:1/other", "x"), "http://h:1/other");
  assert.equal(adminUrl("?admin=[::1]:9464", "x"), "http://[::1]:9464/stats");
  assert.equal(adminUrl("", "[::1]"), "http://[::1]:9464/stats");
});

Deno.test("perBucket reads per-bucket and cumulative counts alike", () => {
  assert.deepEqual(perBucket([1, 2, 0, 3], 6), [1, 2, 0, 3]); // sums to the total
  assert.deepEqual(perBucket([1, 3, 3, 6], 6), [1, 2, 0, 3]); // ends at the total, monotone
  assert.deepEqual(perBucket([0, 0, 5], 5), [0, 0, 5]); // both readings agree
  assert.deepEqual(perBucket([2, 2], 2, "cumulative"), [2, 0]);
  assert.deepEqual(perBucket([2, 2], 4, "per-bucket"), [2, 2]);
});

Deno.test("quantile interpolates inside the bucket, like histogram_quantile", () => {
  const bounds = [1, 2, 4];
  // 10 in (0,1], 10 in (1,2], 0 in (2,4], 0 above.
  assert.equal(quantile(0.5, bounds, [10, 10, 0, 0]), 1);
  assert.equal(quantile(0.75, bounds, [10, 10, 0, 0]), 1.5);
  assert.equal(quantile(0.25, bounds, [10, 10, 0, 0]), 0.5);
  assert.equal(quantile(1, bounds, [10, 10, 0, 0]), 2);
  // Ranks in +Inf report the highest finite bound.
  assert.equal(quantile(0.99, bounds, [1, 0, 0, 99]), 4);
  assert.equal(quantile(0.5, bounds, [0, 0, 0, 0]), null);
  // The captured document: one request in (50µs,100µs], one in (100µs,250µs].
  const s = parseStats(JSON.parse(CAPTURED));
  assert.equal(quantile(0.5, BOUNDS, s.duration_seconds.counts), 0.0001);
  assert.ok(Math.abs(quantile(0.99, BOUNDS, s.duration_seconds.counts)! - 0.000247) < 1e-9);
});

Deno.test("rate and series: per second from successive samples", () => {
  const a = sample(0, 100);
  const b = sample(2, 300);
  assert.equal(rate(a, b, (s) => s.requests_total), 100);
  assert.equal(rate(a, a, (s) => s.requests_total), null);
  assert.deepEqual(series([a, b, sample(3, 350)], (s) => s.requests_total), [
    { t: b.time_unix_ms, v: 100 },
    { t: b.time_unix_ms + 1000, v: 50 },
  ]);
});

Deno.test("append keeps a window, drops duplicates, restarts after a server restart", () => {
  let h = [sample(0, 1)];
  h = append(h, sample(1, 2));
  assert.equal(append(h, sample(1, 2)).length, 2, "same instant twice is ignored");
  h = append(h, sample(400, 3), 300);
  assert.equal(h.length, 1, "samples older than the window go");
  const restarted = append(h, { ...sample(401, 0), uptime_seconds: 0.5 });
  assert.equal(restarted.length, 1);
  assert.equal(restarted[0].requests_total, 0);
});

Deno.test("sampleBefore finds the sample a window back, or the oldest", () => {
  const h = [0, 30, 50, 70].map((t) => sample(t, t));
  assert.equal(sampleBefore(h, 60)?.requests_total, 0);
  assert.equal(sampleBefore(h, 20)?.requests_total, 50);
  assert.equal(sampleBefore([], 20), undefined);
});

Deno.test("view: headline figures, latency of the last minute, codes, worker balance", () => {
  const counts0 = BOUNDS.map(() => 0).concat(0);
  const c1 = counts0.slice();
  c1[4] = 100; // 100 requests in (0.5 ms, 1 ms] before the window
  const c2 = c1.slice();
  c2[1] = 50; // 50 more in (50 µs, 100 µs] within it
  const first = sample(0, 100, {
    duration_seconds: { bounds: BOUNDS, counts: c1, sum: 0.075, count: 100 },
    workers: [{ id: 0, cpu: 0, requests: 50, connections_accepted: 1, connections_active: 1 }, { id: 1, cpu: 1, requests: 50, connections_accepted: 1, connections_active: 1 }],
  });
  const second = sample(60, 150, {
    duration_seconds: { bounds: BOUNDS, counts: c2, sum: 0.079, count: 150 },
    responses_by_code: { "200": 140, "304": 10 },
    workers: [{ id: 0, cpu: 0, requests: 80, connections_accepted: 1, connections_active: 1 }, { id: 1, cpu: 1, requests: 70, connections_accepted: 1, connections_active: 1 }],
  });
  const v = view([first, second])!;
  assert.equal(v.requestsTotal, 150);
  assert.ok(Math.abs(v.requestsPerSecond! - 50 / 60) < 1e-9);
  assert.equal(v.latency.window, "last 60 s");
  assert.equal(v.latency.count, 50, "only the window's requests");
  assert.ok(v.latency.p99! <= 0.0001 && v.latency.p50! > 0.00005);
  assert.ok(Math.abs(v.latency.mean! - 0.004 / 50) < 1e-12);
  assert.deepEqual(v.codes.map((c) => [c.code, c.share]), [["200", 140 / 150], ["304", 10 / 150]]);
  assert.equal(v.workers[0].perSecond, 0.5);
  assert.equal(v.workers[1].connectionsAccepted, 1);
  assert.equal(v.latency.floor, 0.00005);
  assert.ok(Math.abs(v.imbalance! - 80 / 70) < 1e-9);
  assert.equal(v.chart.length, 1);
  assert.equal(view([]), null);
});

Deno.test("view: a single sample shows lifetime latency and no rates yet", () => {
  const v = view([parseStats(JSON.parse(CAPTURED))])!;
  assert.equal(v.requestsPerSecond, null);
  assert.equal(v.latency.window, "since start");
  assert.equal(v.latency.count, 2);
  assert.equal(v.cache.hitRatio, 0.5);
  assert.equal(v.cache.renderedShare, 0); // one hit, answered by the responder
  assert.ok(Math.abs(v.cache.compressionSavings! - (1 - 64458 / 239413)) < 1e-12);
  assert.equal(v.imbalance, 1);
});

Deno.test("formatting", () => {
  assert.equal(formatSeconds(0.0000731), "73.1 µs");
  assert.equal(formatSeconds(0.0025), "2.50 ms");
  assert.equal(formatSeconds(2.5), "2.50 s");
  assert.equal(formatSeconds(null), "–");
  assert.equal(formatQuantile(0.00003, 0.00005, 10), "≤ 50.0 µs");
  assert.equal(formatQuantile(0.0007, 0.00005, 10), "700 µs");
  assert.equal(formatQuantile(10, 0.00005, 10), "≥ 10.0 s");
  assert.equal(formatQuantile(null, 0.00005, 10), "–");
  assert.equal(formatBytes(512), "512 B");
  assert.equal(formatBytes(422088), "412 KiB");
  assert.equal(formatBytes(1.5 * 1024 * 1024), "1.50 MiB");
  assert.equal(formatCompact(7.5), "7.5");
  assert.equal(formatCompact(950), "950");
  assert.equal(formatCompact(34_567), "34.6k");
  assert.equal(formatCompact(1_500_000), "1.50M");
  assert.equal(formatPercent(0.5), "50%");
  assert.equal(formatPercent(0.0123), "1.2%");
  assert.equal(formatDuration(42.9), "42 s");
  assert.equal(formatDuration(185), "3 min 5 s");
  assert.equal(formatDuration(7620), "2 h 7 min");
  assert.equal(formatReload(0, 1), "never (start-up load only)");
  assert.equal(formatReload(1_000, 31_000), "30 s ago");
});

Deno.test("chart geometry: nice scales and paths", () => {
  assert.deepEqual(niceScale(0), { max: 1, ticks: [0, 0.5, 1] });
  assert.deepEqual(niceScale(7), { max: 8, ticks: [0, 2, 4, 6, 8] });
  assert.deepEqual(niceScale(950), { max: 1000, ticks: [0, 250, 500, 750, 1000] });
  assert.equal(niceScale(12_345).max, 15_000);
  const now = 10_000;
  const p = chartPaths([{ t: 0, v: 5 }, { t: 5_000, v: 10 }, { t: 10_000, v: 0 }], now, 10_000, 10, 100, 50);
  assert.equal(p.line, "M0,25L50,0L100,50");
  assert.equal(p.area, "M0,25L50,0L100,50L100,50L0,50Z");
  assert.deepEqual(chartPaths([], now, 10_000, 10, 100, 50), { line: "", area: "" });
});
