// atomserve's live dashboard: polls the admin `/stats` once a second and draws `view(history)`.
// Every figure's arithmetic lives in stats.ts (unit-tested); this file only fetches and lays out.
import { useEffect, useState } from 'react'
import {
  adminUrl,
  append,
  formatBytes,
  formatCompact,
  formatDuration,
  formatPercent,
  formatQuantile,
  formatPhases,
  formatReload,
  formatSeconds,
  HISTORY_SECONDS,
  type History,
  parseStats,
  view,
} from './stats.ts'
import { RateChart } from './RateChart.tsx'
import './App.css'

const POLL_MS = 1000
const TIMEOUT_MS = 2500

interface Failure {
  message: string
  since: number
}

/** Polls `url` every second, forever; a failure is reported and the next poll tries again. */
function useStats(url: string): { history: History; failure: Failure | null; now: number } {
  const [history, setHistory] = useState<History>([])
  const [failure, setFailure] = useState<Failure | null>(null)
  const [now, setNow] = useState(() => Date.now())
  useEffect(() => {
    let stopped = false
    let timer: ReturnType<typeof setTimeout> | undefined
    const tick = async () => {
      const started = Date.now()
      const abort = new AbortController()
      const deadline = setTimeout(() => abort.abort(), TIMEOUT_MS)
      try {
        const res = await fetch(url, { cache: 'no-store', signal: abort.signal })
        if (!res.ok) throw new Error(`HTTP ${res.status} ${res.statusText}`)
        const stats = parseStats(await res.json())
        if (stopped) return
        setHistory((h) => append(h, stats))
        setFailure(null)
      } catch (e) {
        if (stopped) return
        const message = abort.signal.aborted
          ? `no answer within ${TIMEOUT_MS / 1000} s`
          : e instanceof Error ? e.message : String(e)
        setFailure((f) => ({ message, since: f?.since ?? started }))
      } finally {
        clearTimeout(deadline)
      }
      if (stopped) return
      setNow(Date.now())
      timer = setTimeout(tick, Math.max(POLL_MS - (Date.now() - started), 0))
    }
    tick()
    return () => {
      stopped = true
      clearTimeout(timer)
    }
  }, [url])
  return { history, failure, now }
}

/** A headline figure: `data-metric` names the /stats key, `data-value` holds the raw number. */
function Figure(
  { metric, label, value, text, hint }: {
    metric: string
    label: string
    value: number | null
    text?: string
    hint?: string
  },
) {
  return (
    <div className="figure" title={hint}>
      <span className="value" data-metric={metric} data-value={value ?? ''}>
        {text ?? (value === null ? '–' : String(value))}
      </span>
      <span className="label">{label}</span>
    </div>
  )
}

function App() {
  const [url] = useState(() => adminUrl(location.search, location.hostname))
  const { history, failure, now } = useStats(url)
  const v = view(history)
  const last = history[history.length - 1]

  return (
    <main>
      <header>
        <h1>
          atomserve <span className="sub">live</span>
        </h1>
        <p className="source">
          <code>{url}</code>
          {last && !failure && <> · up {formatDuration(v!.uptimeSeconds)}</>}
        </p>
      </header>

      {failure && (
        <p className="failure" role="alert" data-state="unreachable">
          Cannot reach the admin endpoint at <code>{url}</code> ({failure.message}). Retrying every
          second — start atomserve with <code>--admin-listen</code>, or open this page with{' '}
          <code>?admin=host:port</code>.
        </p>
      )}
      {!v && !failure && <p className="waiting">Waiting for the first sample…</p>}

      {v && (
        <div className={failure ? 'stale' : undefined} data-state={failure ? 'stale' : 'live'}>
          <section className="figures">
            <Figure metric="requests_total" label="requests" value={v.requestsTotal} />
            <Figure
              metric="requests_per_second"
              label="requests/s"
              value={v.requestsPerSecond}
              text={formatCompact(v.requestsPerSecond)}
            />
            <Figure
              metric="response_bytes_per_second"
              label="sent/s"
              value={v.bytesPerSecond}
              text={formatBytes(v.bytesPerSecond)}
            />
            <Figure metric="connections_active" label="open connections" value={v.connectionsActive} />
            <Figure
              metric="accept_queue_depth"
              label="accept queue"
              value={v.acceptQueueDepth}
              hint="accepted connections waiting for a worker"
            />
            <Figure
              metric="accept_queue_full_total"
              label="queue full (503)"
              value={v.acceptQueueFullTotal}
              hint="connections refused because every worker was behind"
            />
          </section>

          <section className="panel">
            <h2>Requests per second, last {HISTORY_SECONDS / 60} minutes</h2>
            <RateChart points={v.chart} now={last.time_unix_ms} spanMs={HISTORY_SECONDS * 1000} />
          </section>

          <div className="columns">
            <section className="panel">
              <h2>Latency <span className="note">({v.latency.window}, {v.latency.count} requests)</span></h2>
              <div className="figures small">
                {(['p50', 'p90', 'p99'] as const).map((q) => (
                  <Figure
                    key={q}
                    metric={`duration_seconds_${q}`}
                    label={q}
                    value={v.latency[q]}
                    text={formatQuantile(v.latency[q], v.latency.floor, v.latency.ceiling)}
                  />
                ))}
                <Figure metric="duration_seconds_mean" label="mean" value={v.latency.mean} text={formatSeconds(v.latency.mean)} />
              </div>
              <p className="note">
                From the read that brought a request in to its response fully handed to the kernel;
                interpolated inside histogram buckets (≤ the lowest bound when that is all they can tell).
              </p>
            </section>

            <section className="panel">
              <h2>Status codes</h2>
              <div className="bar" aria-hidden="true">
                {v.codes.map((c) => (
                  <span key={c.code} className={`code c${c.code[0]}`} style={{ flexGrow: c.share }} />
                ))}
              </div>
              <table>
                <tbody>
                  {v.codes.map((c) => (
                    <tr key={c.code}>
                      <th><span className={`dot c${c.code[0]}`} />{c.code}</th>
                      <td data-metric={`responses_by_code.${c.code}`} data-value={c.count}>{c.count}</td>
                      <td>{formatPercent(c.share)}</td>
                    </tr>
                  ))}
                  {v.codes.length === 0 && <tr><td>no responses yet</td></tr>}
                </tbody>
              </table>
            </section>
          </div>

          <div className="columns">
            <section className="panel">
              <h2>
                Workers{' '}
                <span className="note">
                  busiest/quietest{' '}
                  <span data-metric="workers_imbalance" data-value={v.imbalance ?? ''}>
                    {v.imbalance === null ? '–' : `${formatCompact(v.imbalance)}×`}
                  </span>
                </span>
              </h2>
              <table className="workers">
                <thead>
                  <tr><th>worker</th><th>CPU</th><th>open</th><th>connections</th><th>requests</th><th>req/s</th><th>share</th></tr>
                </thead>
                <tbody>
                  {v.workers.map((w) => (
                    <tr key={w.id}>
                      <th>w{w.id}</th>
                      <td>{w.cpu ?? 'unpinned'}</td>
                      <td data-metric="worker_connections_active" data-worker={w.id} data-value={w.connectionsActive}>{w.connectionsActive}</td>
                      <td data-metric="worker_connections_accepted" data-worker={w.id} data-value={w.connectionsAccepted}>{w.connectionsAccepted}</td>
                      <td data-metric="worker_requests" data-worker={w.id} data-value={w.requests}>{w.requests}</td>
                      <td>{formatCompact(w.perSecond)}</td>
                      <td className="share">
                        <span className="meter" style={{ width: `${w.share * 100}%` }} />
                        {formatPercent(w.share)}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </section>

            <section className="panel">
              <h2>Cache snapshot</h2>
              <div className="figures small">
                <Figure metric="cache_generation" label="generation" value={v.cache.generation} />
                <Figure metric="cache_files" label="files" value={v.cache.files} />
                <Figure metric="cache_bytes" label="bytes" value={v.cache.bytes} text={formatBytes(v.cache.bytes)} />
                <Figure
                  metric="cache_hit_ratio"
                  label="hit ratio"
                  value={v.cache.hitRatio}
                  text={formatPercent(v.cache.hitRatio)}
                />
                <Figure
                  metric="cache_compression_savings"
                  label="saved by gzip/br"
                  value={v.cache.compressionSavings}
                  text={formatPercent(v.cache.compressionSavings)}
                />
              </div>
              <table>
                <tbody>
                  <tr><th>identity / compressed</th><td data-metric="cache_compressible_bytes" data-value={v.cache.compressible_bytes}>{formatBytes(v.cache.compressible_bytes)}</td><td data-metric="cache_compressed_bytes" data-value={v.cache.compressed_bytes}>{formatBytes(v.cache.compressed_bytes)}</td></tr>
                  <tr><th>files from disk</th><td colSpan={2} data-metric="cache_disk_files" data-value={v.cache.disk_files}>{v.cache.disk_files}</td></tr>
                  <tr><th>from the page cache</th><td data-metric="cache_page_cache_files" data-value={v.cache.page_cache_files}>{v.cache.page_cache_files} files</td><td data-metric="cache_page_cache_bytes" data-value={v.cache.page_cache_bytes}>{formatBytes(v.cache.page_cache_bytes)}</td></tr>
                  <tr><th>hits / misses</th><td data-metric="cache_hits" data-value={v.cache.hits}>{v.cache.hits}</td><td data-metric="cache_misses" data-value={v.cache.misses}>{v.cache.misses}</td></tr>
                  <tr><th>hits rendered whole</th><td colSpan={2} data-metric="cache_rendered_hits" data-value={v.cache.rendered_hits}>{v.cache.rendered_hits} ({formatPercent(v.cache.renderedShare)})</td></tr>
                  <tr><th>reloads ok / failed</th><td data-metric="cache_reloads_ok" data-value={v.cache.reloads_ok}>{v.cache.reloads_ok}</td><td data-metric="cache_reloads_failed" data-value={v.cache.reloads_failed}>{v.cache.reloads_failed}</td></tr>
                  <tr><th>last reload</th><td colSpan={2} data-metric="cache_last_reload_unix_ms" data-value={v.cache.last_reload_unix_ms}>{formatReload(v.cache.last_reload_unix_ms, last.time_unix_ms)}</td></tr>
                  <tr><th>last load's phases</th><td colSpan={2} data-metric="cache_last_reload_identity_ms" data-value={v.cache.last_reload.identity_ms}>{formatPhases(v.cache.last_reload, v.cache.variants_pending)}</td></tr>
                  <tr><th>reused / new bytes</th><td data-metric="cache_reused_bytes" data-value={v.cache.reused_bytes}>{formatBytes(v.cache.reused_bytes)}</td><td data-metric="cache_built_bytes" data-value={v.cache.built_bytes}>{formatBytes(v.cache.built_bytes)}</td></tr>
                  <tr><th>connections accepted</th><td colSpan={2} data-metric="connections_accepted_total" data-value={v.connectionsAcceptedTotal}>{v.connectionsAcceptedTotal} ({formatCompact(v.connectionsPerSecond)}/s)</td></tr>
                </tbody>
              </table>
              <p className="note">Reload with <code>kill -HUP $(pidof atomserve)</code> and watch the generation.</p>
            </section>
          </div>
        </div>
      )}
      <footer className="note">Sampled {last ? new Date(last.time_unix_ms).toLocaleTimeString() : '–'} · page clock {new Date(now).toLocaleTimeString()}</footer>
    </main>
  )
}

export default App
