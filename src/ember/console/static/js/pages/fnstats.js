// A function's figures over a window (GET /functions/{name}/stats): tiles, per-minute
// charts, and its async queue; refreshed every 5 s.
import { html, useState } from '../lib.js';
import { api, fn } from '../api.js';
import {
  Card, Chart, ErrorBox, Loading, Stat, fmtAgo, fmtMs, fmtPct, fmtTime, minuteSeries, usePoll,
} from '../ui.js';

const WINDOWS = [['900', 'Last 15 min'], ['3600', 'Last 1 h'], ['86400', 'Last 24 h']];
const REFRESH_MS = 5000;

function Tiles({ s }) {
  const q = s.queue || {};
  const d = s.duration_ms || {};
  const queueHint = [
    q.leased ? `${q.leased} running` : null,
    q.delayed ? `${q.delayed} waiting to retry` : null,
    q.oldest_age_s !== null && q.oldest_age_s !== undefined ? `oldest ${Math.round(q.oldest_age_s)} s` : null,
    q.dead_letters ? `${q.dead_letters} dead letters` : null,
  ].filter(Boolean).join(' · ');
  return html`<div class="stats" role="group" aria-label="Totals">
    <${Stat} label="Invocations" value=${s.invocations} />
    <${Stat} label="Errors" value=${s.errors}
      hint=${`${fmtPct(s.errors, s.invocations)} error rate${s.timeouts ? ` · ${s.timeouts} timeouts` : ''}`} />
    <${Stat} label="Cold starts" value=${s.cold_starts}
      hint=${`${fmtPct(s.cold_starts, s.invocations)} of calls${s.init_ms && s.init_ms.p50 !== null ? ` · init p50 ${fmtMs(s.init_ms.p50)}` : ''}`} />
    <${Stat} label="p50" value=${fmtMs(d.p50)} hint="duration, median" />
    <${Stat} label="p99" value=${fmtMs(d.p99)} hint=${d.max !== null && d.max !== undefined ? `max ${fmtMs(d.max)}` : 'duration'} />
    <${Stat} label="Throttles" value=${s.throttles} hint="refused: over concurrency" />
    <${Stat} label="Retries" value=${s.retries} hint="async attempts after the first" />
    <${Stat} label="Queue depth" value=${q.depth ?? '—'} hint=${queueHint || 'async events waiting'} />
  </div>`;
}

function Charts({ s, windowS }) {
  const minutes = Math.max(1, Math.round(windowS / 60));
  const { x, rows } = minuteSeries(s.series, s.until, minutes);
  const count = (k) => rows.map((r) => (r ? r[k] : 0));
  // Durations exist only for minutes with calls: a quiet minute is a gap (not 0), and a
  // minute alone between gaps shows as a point (ui.js Chart).
  const ms = (k) => rows.map((r) => (r ? r[k] : null));
  const timed = rows.some((r) => r && r.p50_ms !== null);
  return html`<div class="grid">
    <${Card} title="Invocations and errors per minute">
      <${Chart} x=${x} label="Invocations and errors per minute" series=${[
        { label: 'Invocations', values: count('invocations') },
        { label: 'Errors', values: count('errors'), color: '#c92a2a' },
        { label: 'Throttles', values: count('throttles'), color: '#a66b00' },
      ]} />
    <//>
    <${Card} title="Duration per minute">
      ${timed ? html`<${Chart} x=${x} label="Duration p50 / p99 (ms)" series=${[
        { label: 'p50', values: ms('p50_ms'), unit: 'ms', color: '#1971c2' },
        { label: 'p99', values: ms('p99_ms'), unit: 'ms', color: '#7048e8' },
      ]} />` : html`<p class="muted">No calls in this window.</p>`}
    <//>
    <${Card} title="Cold starts per minute">
      <${Chart} x=${x} label="Cold starts per minute" series=${[
        { label: 'Cold starts', values: count('cold_starts'), color: '#2f9e44' },
        { label: 'Retries', values: count('retries'), color: '#868e96' },
      ]} />
    <//>
  </div>`;
}

export function StatsPanel({ name }) {
  const [windowS, setWindowS] = useState('3600');
  const { data, error, loading, reload } = usePoll(
    () => api.get(`${fn(name)}/stats`, { window_s: windowS }), REFRESH_MS, [name, windowS]);
  return html`<div class="stats-panel">
    <div class="filters">
      <div class="field"><label for="stats-window">Window</label>
        <select id="stats-window" value=${windowS} onChange=${(e) => setWindowS(e.target.value)}>
          ${WINDOWS.map(([v, label]) => html`<option value=${v}>${label}</option>`)}
        </select></div>
      <button type="button" onClick=${reload}>Refresh</button>
      ${data ? html`<span class="muted small" title=${`${fmtTime(data.since)} – ${fmtTime(data.until)} UTC`}>
        updated ${fmtAgo(data.until)} · every 5 s</span>` : null}
    </div>
    <${ErrorBox} error=${error} retry=${reload} />
    ${data && Number(data.window_s) === Number(windowS) ? html`<${Tiles} s=${data} /><${Charts} s=${data} windowS=${Number(windowS)} />`
      : loading ? html`<${Loading} what="statistics" />` : null}
  </div>`;
}

export default StatsPanel;
