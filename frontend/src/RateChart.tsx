// The requests/s chart: a hand-made SVG (no chart library: a few hundred bytes instead of tens of KiB).
import { chartPaths, formatCompact, niceScale, type Point } from './stats.ts'

const W = 640
const H = 160
const PAD = { left: 44, right: 8, top: 8, bottom: 20 }

export function RateChart({ points, now, spanMs }: { points: Point[]; now: number; spanMs: number }) {
  const innerW = W - PAD.left - PAD.right
  const innerH = H - PAD.top - PAD.bottom
  const peak = points.reduce((m, p) => Math.max(m, p.v), 0)
  const scale = niceScale(peak)
  const { line, area } = chartPaths(points, now, spanMs, scale.max, innerW, innerH)
  const minutes = Math.round(spanMs / 60000)
  const xTicks = Array.from({ length: minutes + 1 }, (_, i) => i)
  return (
    <svg
      className="chart"
      data-chart="requests_per_second"
      data-points={points.length}
      viewBox={`0 0 ${W} ${H}`}
      role="img"
      aria-label={`requests per second, last ${minutes} minutes, peak ${formatCompact(peak)}`}
    >
      <g transform={`translate(${PAD.left},${PAD.top})`}>
        {scale.ticks.map((t) => {
          const y = innerH - (t / scale.max) * innerH
          return (
            <g key={t}>
              <line className="grid" x1={0} x2={innerW} y1={y} y2={y} />
              <text className="axis" x={-6} y={y} dy="0.32em" textAnchor="end">{formatCompact(t)}</text>
            </g>
          )
        })}
        {xTicks.map((m) => {
          const x = innerW - (m / minutes) * innerW
          return (
            <text key={m} className="axis" x={x} y={innerH + 14} textAnchor={m === 0 ? 'end' : m === minutes ? 'start' : 'middle'}>
              {m === 0 ? 'now' : `−${m} min`}
            </text>
          )
        })}
        {area && <path className="area" d={area} />}
        {line && <path className="line" d={line} />}
        {!line && (
          <text className="axis" x={innerW / 2} y={innerH / 2} textAnchor="middle">
            collecting samples…
          </text>
        )}
      </g>
    </svg>
  )
}
