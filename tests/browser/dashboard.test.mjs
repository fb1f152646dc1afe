// The dashboard in a real browser (issue #6), and the bundled front end's second load (issue #5),
// under the strict Content-Security-Policy of frontend/public/_headers (issue #17).
//
// `make browser` runs this: Debian's chromium, driven by playwright-core over CDP, loads
// frontend/dist from target/debug/atomserve and watches it report live figures from the admin
// `/stats`. Any page error, console error, failed request or 4xx/5xx seen by the page fails the
// test. The screenshot lands in target/browser/dashboard.png.
//
// Environment: ATOMSERVE_BIN (default target/debug/atomserve), ATOMSERVE_FRONTEND_DIST (default
// frontend/dist), CHROMIUM (default /usr/bin/chromium).

import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const BIN = process.env.ATOMSERVE_BIN ?? path.join(ROOT, 'target/debug/atomserve')
const DIST = process.env.ATOMSERVE_FRONTEND_DIST ?? path.join(ROOT, 'frontend/dist')
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium'
const ARTIFACTS = path.join(ROOT, 'target/browser')
/** Requests the test sends itself; the dashboard must count at least these. */
const LOAD_REQUESTS = 200
/** The figures the issue names; each must be on the page with a `data-metric` attribute. */
const HEADLINE = [
  'requests_total', 'requests_per_second', 'connections_active', 'accept_queue_depth',
  'accept_queue_full_total', 'cache_generation', 'cache_files', 'cache_bytes',
  'duration_seconds_p50', 'duration_seconds_p90', 'duration_seconds_p99',
]

let server // { child, main, admin, log }
let context
let tmp
/** Everything the pages did wrong; checked after each test. */
const problems = []

/** Starts atomserve on port 0 (main and admin) and reads the real ports from its banner. */
async function startServer() {
  fs.mkdirSync(ARTIFACTS, { recursive: true })
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ATOMSERVE_')))
  const child = spawn(BIN, [
    '--root', DIST, '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--shutdown-grace', '1s',
    // `make test` runs this file once per backend: ATOMSERVE_IO=uring asks for io_uring.
    '--io', process.env.ATOMSERVE_IO ?? 'epoll',
  ], { env, stdio: ['ignore', 'ignore', 'pipe'] })
  const srv = { child, main: 0, admin: 0, log: '' }
  server = srv // from here on, after() stops it whatever happens
  child.stderr.on('data', (chunk) => (srv.log += chunk))
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`atomserve did not start in 60 s:\n${srv.log}`)), 60_000)
    child.once('error', reject)
    child.once('exit', (code) => reject(new Error(`atomserve exited with ${code}:\n${srv.log}`)))
    child.stderr.on('data', () => {
      const main = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(srv.log)
      const admin = /admin on http:\/\/127\.0\.0\.1:(\d+)/.exec(srv.log)
      if (main && admin && !srv.main) {
        clearTimeout(timer)
        srv.main = Number(main[1])
        srv.admin = Number(admin[1])
        resolve()
      }
    })
  })
  return srv
}

const exited = (child) => child.exitCode !== null || child.signalCode !== null

async function stopServer() {
  if (!server || exited(server.child)) return
  const gone = new Promise((resolve) => server.child.once('exit', resolve))
  server.child.kill('SIGTERM')
  const killer = setTimeout(() => server.child.kill('SIGKILL'), 5_000)
  await gone
  clearTimeout(killer)
}

/** The server's own view, straight from the admin listener (not through the page). */
async function stats() {
  const res = await fetch(`http://127.0.0.1:${server.admin}/stats`)
  assert.equal(res.status, 200)
  return res.json()
}

/** Fails the test on anything a healthy page never does. */
function watch(page, label) {
  const state = { closing: false }
  page.on('pageerror', (e) => problems.push(`${label}: page error: ${e.message}`))
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`${label}: console error: ${m.text()}`)
  })
  page.on('requestfailed', (r) => {
    // A poll in flight when the test closes the page is aborted; that is the test, not the page.
    if (!state.closing) problems.push(`${label}: request failed: ${r.url()} ${r.failure()?.errorText}`)
  })
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`${label}: ${r.status()} for ${r.url()}`)
  })
  return state
}

function assertNoProblems() {
  assert.deepEqual(problems.splice(0), [], 'the page misbehaved')
}

/** The raw number behind a `data-metric` figure. */
async function metric(page, name) {
  const v = await page.locator(`[data-metric="${name}"]`).first().getAttribute('data-value')
  return v === '' || v === null ? null : Number(v)
}

before(async () => {
  assert.ok(fs.existsSync(path.join(DIST, 'index.html')), `${DIST}/index.html missing: run make frontend`)
  assert.ok(fs.existsSync(BIN), `${BIN} missing: run cargo build --bin atomserve`)
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atomserve-browser-'))
  for (const d of ['home', 'tmp', 'profile']) fs.mkdirSync(path.join(tmp, d))
  server = await startServer()
  // A fresh profile (so the first load is cold) in a temp dir; HOME and TMPDIR point at temp dirs
  // so chromium writes nothing outside it.
  context = await chromium.launchPersistentContext(path.join(tmp, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync',
    ],
    env: { ...process.env, HOME: path.join(tmp, 'home'), TMPDIR: path.join(tmp, 'tmp') },
    viewport: { width: 1120, height: 1000 },
    colorScheme: 'light',
  })
})

after(async () => {
  await context?.close().catch(() => {})
  await stopServer()
  if (server) fs.writeFileSync(path.join(ARTIFACTS, 'atomserve.log'), server.log)
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true })
})

// Belt and braces: never leave the server behind, whatever happens to the test process.
process.on('exit', () => server && !exited(server.child) && server.child.kill('SIGKILL'))

let dashboard // the first page, reused by the later tests
let dashboardState

test('the dashboard shows live figures that follow the load', async () => {
  const page = await context.newPage()
  dashboardState = watch(page, 'dashboard')
  // Every Content-Security-Policy violation the page reports (frontend/public/_headers sets a
  // strict policy; chromium also logs each as a console error, which watch() catches).
  await page.addInitScript(() => {
    window.__cspViolations = []
    document.addEventListener('securitypolicyviolation', (e) =>
      window.__cspViolations.push(`${e.violatedDirective}: ${e.blockedURI}`))
  })
  const url = `http://127.0.0.1:${server.main}/?admin=127.0.0.1:${server.admin}`
  const doc = await page.goto(url)
  assert.match(doc.headers()['content-security-policy'] ?? '', /default-src 'self'/, 'the CSP from _headers is on')
  assert.equal(doc.headers()['x-content-type-options'], 'nosniff')
  await page.locator('[data-state="live"]').waitFor({ timeout: 10_000 })
  for (const name of HEADLINE) {
    assert.equal(await page.locator(`[data-metric="${name}"]`).count(), 1, `data-metric="${name}" on the page`)
  }
  const before = await metric(page, 'requests_total')
  assert.ok(before >= 1, 'the page load itself was counted')

  // Load from outside the browser: LOAD_REQUESTS fetches over keep-alive, 20 at a time, a few of
  // them for a missing asset so that the status mix shows a 404.
  const base = `http://127.0.0.1:${server.main}`
  for (let i = 0; i < LOAD_REQUESTS; i += 20) {
    await Promise.all(Array.from({ length: 20 }, async (_, j) => {
      const missing = (i + j) % 25 === 0
      const res = await fetch(missing ? `${base}/assets/missing-${i + j}.js` : `${base}/`)
      await res.arrayBuffer()
      assert.equal(res.status, missing ? 404 : 200)
    }))
  }

  await page.waitForFunction(
    (want) => Number(document.querySelector('[data-metric="requests_total"]')?.getAttribute('data-value')) >= want,
    before + LOAD_REQUESTS,
    { timeout: 10_000 },
  )
  const after = await metric(page, 'requests_total')
  assert.ok(after - before >= LOAD_REQUESTS, `requests_total rose by ${after - before}`)
  assert.ok((await page.locator('[data-metric="responses_by_code.404"]').count()) === 1, '404s in the status mix')

  // The chart: an SVG with a drawn line over at least two rates, and a real size on screen.
  await page.waitForFunction(() => Number(document.querySelector('svg[data-chart]')?.getAttribute('data-points')) >= 2)
  const line = page.locator('svg[data-chart="requests_per_second"] path.line')
  assert.match(await line.getAttribute('d'), /^M[\d.]+,[\d.]+(L[\d.]+,[\d.]+)+$/)
  const box = await page.locator('svg[data-chart]').boundingBox()
  assert.ok(box.width > 300 && box.height > 60, `chart is ${box.width}×${box.height}`)

  // Figures agree with the server's own document, once the load's second phase is done: its
  // compressed variants are built in the background at SCHED_IDLE, so a busy machine (chromium
  // itself) can hold them back for seconds, and their bytes count in `cache_bytes`. Then the
  // page must have sampled since.
  let s
  for (const end = Date.now() + 60_000; (s = await stats()).cache.variants_pending > 0;) {
    assert.ok(Date.now() < end, `variants still pending after 60 s: ${s.cache.variants_pending}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  await page.waitForFunction(
    (want) => Number(document.querySelector('[data-metric="cache_bytes"]')?.getAttribute('data-value')) === want,
    s.cache.bytes,
    { timeout: 10_000 },
  )
  assert.equal(await metric(page, 'cache_files'), s.cache.files)
  assert.equal(await metric(page, 'cache_bytes'), s.cache.bytes)
  assert.equal(await metric(page, 'cache_page_cache_files'), s.cache.page_cache_files)
  assert.equal(await metric(page, 'cache_page_cache_bytes'), s.cache.page_cache_bytes)
  // Counts move with traffic: the part shown is never more than the hits shown with it.
  const rendered = await metric(page, 'cache_rendered_hits')
  assert.ok(rendered >= 0 && rendered <= (await metric(page, 'cache_hits')), `rendered hits ${rendered}`)
  assert.equal(await page.locator('[data-metric="worker_requests"]').count(), s.workers.length)
  const p50 = await metric(page, 'duration_seconds_p50')
  assert.ok(p50 > 0 && p50 <= s.duration_seconds.bounds.at(-1), `p50 ${p50}`)

  assert.deepEqual(await page.evaluate(() => window.__cspViolations), [], 'no CSP violation')
  await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard.png'), fullPage: true })
  dashboard = page
  assertNoProblems()
})

test('SIGHUP swaps in a new snapshot and the page shows the new generation', async () => {
  const generation = await metric(dashboard, 'cache_generation')
  server.child.kill('SIGHUP')
  await dashboard.waitForFunction(
    (g) => Number(document.querySelector('[data-metric="cache_generation"]')?.getAttribute('data-value')) > g,
    generation,
    { timeout: 30_000 },
  )
  assert.match(await dashboard.locator('[data-metric="cache_last_reload_unix_ms"]').innerText(), /ago$/)
  assertNoProblems()
})

// Issue #5's "second load": Vite fingerprints everything under /assets/ and atomserve marks those
// `immutable` for a year, while index.html is `no-cache` (revalidate every time). So a browser
// that loads the app again should send exactly one request — the HTML, answered 304 — and take
// the rest from its cache. Two independent witnesses: chromium's own network log over CDP
// (which says when a response came from its disk or memory cache), and the server's counters
// (every request that reached atomserve during the second load must have been a 304).
test('a second load in the same browser gets 304s or cache hits only', async () => {
  const page = await context.newPage()
  const state = watch(page, 'second load')
  const cdp = await context.newCDPSession(page)
  await cdp.send('Network.enable')
  const origin = `http://127.0.0.1:${server.main}`
  // requestId → what happened. After a successful revalidation chromium reports the cached 200
  // in `responseReceived`; the status that crossed the wire (304) is in `responseReceivedExtraInfo`,
  // which only requests that reached the network get.
  const seen = new Map()
  const entry = (id) => seen.get(id) ?? seen.set(id, { url: null, wire: null, cached: false, inm: null }).get(id)
  cdp.on('Network.requestWillBeSent', (e) => (entry(e.requestId).url = e.request.url))
  // The validator sent, for the log: a 200 after a first load that caught the snapshot before
  // its compressed variants existed was a bug (the If-None-Match named the identity variant).
  cdp.on('Network.requestWillBeSentExtraInfo', (e) => (entry(e.requestId).inm = e.headers['If-None-Match'] ?? null))
  cdp.on('Network.requestServedFromCache', (e) => (entry(e.requestId).cached = true)) // memory cache
  cdp.on('Network.responseReceivedExtraInfo', (e) => (entry(e.requestId).wire = e.statusCode))
  cdp.on('Network.responseReceived', (e) => {
    entry(e.requestId).cached ||= Boolean(e.response.fromDiskCache || e.response.fromPrefetchCache)
  })

  const s0 = await stats()
  await page.goto(`${origin}/?admin=127.0.0.1:${server.admin}`)
  await page.locator('[data-state="live"]').waitFor({ timeout: 10_000 })
  await page.waitForLoadState('load')
  const s1 = await stats()

  const requests = [...seen.values()].filter((r) => r.url?.startsWith(origin))
  const log = requests
    .map((r) => `${r.wire ?? (r.cached ? 'cache' : '?')} ${r.url}${r.inm ? ` (If-None-Match: ${r.inm})` : ''}`)
    .join('\n')
  assert.ok(requests.some((r) => r.url.includes('/assets/') && r.cached), `an asset from the cache:\n${log}`)
  for (const r of requests) {
    assert.ok((r.cached && r.wire === null) || r.wire === 304, `second load fetched ${r.url} again:\n${log}`)
  }
  const reached = s1.requests_total - s0.requests_total
  const notModified = (s1.responses_by_code['304'] ?? 0) - (s0.responses_by_code['304'] ?? 0)
  assert.equal(reached, notModified, `every request that reached the server was a 304:\n${log}`)
  assert.equal(reached, requests.filter((r) => r.wire !== null).length, `server and browser agree:\n${log}`)
  console.log(`second load:\n${log}`)
  assert.ok(reached >= 1, 'index.html (no-cache) was revalidated')

  state.closing = true
  await page.close()
  assertNoProblems()
})

test('an unreachable admin endpoint is said plainly, and the page keeps trying', async () => {
  // A port nothing listens on: bind one, note it, close it.
  const port = await new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port
      s.close(() => resolve(p))
    })
  })
  const page = await context.newPage()
  const errors = []
  page.on('pageerror', (e) => errors.push(e.message))
  let attempts = 0
  page.on('request', (r) => r.url().includes(`:${port}/stats`) && attempts++)
  await page.goto(`http://127.0.0.1:${server.main}/?admin=127.0.0.1:${port}`)
  const alert = page.locator('[data-state="unreachable"]')
  await alert.waitFor({ timeout: 10_000 })
  assert.match(await alert.innerText(), /Cannot reach the admin endpoint/)
  await page.waitForTimeout(2_500)
  assert.ok(attempts >= 3, `retried ${attempts} times`)
  assert.deepEqual(errors, [], 'no uncaught exceptions while unreachable')
  await page.close()
  dashboardState.closing = true
  await dashboard.close()
  assertNoProblems()
})
