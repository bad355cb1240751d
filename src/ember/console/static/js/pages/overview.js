// The overview: the last hour of every function the key reaches — totals, per-minute
// charts and the busiest functions — refreshed every 5 s.
import { html } from '../lib.js';
import { api } from '../api.js';
import {
  Page, Card, Table, ErrorBox, Loading, Empty, Stat, Chart, minuteSeries, usePoll, fmtMs, fmtPct,
  fmtTime, href,
} from '../ui.js';
import { listFunctions } from './functions.js';

const WINDOW_S = 3600;
const TOP = 8;

function perMinute(count, windowS) {
  const rate = count / (windowS / 60);
  if (rate === 0) return '0';
  return rate >= 10 ? rate.toFixed(0) : String(+rate.toFixed(2));
}

const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

// The `functions` map of GET /stats as rows, busiest first by `by`.
function top(functions, by) {
  return Object.entries(functions || {})
    .map(([name, c]) => ({ name, ...c }))
    .filter((r) => r[by] > 0)
    .sort((a, b) => b[by] - a[by] || a.name.localeCompare(b.name))
    .slice(0, TOP);
}

const COLUMNS = [
  { key: 'name', label: 'Function', render: (r) => html`<a class="mono"
    href=${href(`/functions/${encodeURIComponent(r.name)}`)}>${r.name}</a>` },
  { key: 'invocations', label: 'Invocations', cls: 'num' },
  { key: 'errors', label: 'Errors', cls: 'num' },
  { key: 'rate', label: 'Error rate', cls: 'num', render: (r) => fmtPct(r.errors, r.invocations) },
  { key: 'cold_starts', label: 'Cold starts', cls: 'num' },
];

function Charts({ stats }) {
  const { x, rows } = minuteSeries(stats.series, stats.until, Math.round(stats.window_s / 60));
  const pick = (key) => rows.map((r) => (r ? r[key] : 0));
  // Durations exist only for minutes that had invocations: a quiet minute is a gap (not 0),
  // and a minute alone between gaps shows as a point (ui.js Chart).
  const ms = (key) => rows.map((r) => (r && r[key] !== undefined ? r[key] : null));
  const timed = rows.some((r) => r && r.p50_ms !== null && r.p50_ms !== undefined);
  return html`<div class="grid">
    <${Card} title="Invocations per minute">
      <${Chart} x=${x} series=${[
        { label: 'invocations', values: pick('invocations') },
        { label: 'errors', values: pick('errors'), color: '#c92a2a' },
        { label: 'throttles', values: pick('throttles'), color: '#a66b00' },
      ]} />
    <//>
    <${Card} title="Duration per minute">
      ${timed ? html`<${Chart} x=${x} series=${[
        { label: 'p50', values: ms('p50_ms'), unit: 'ms', color: '#1971c2' },
        { label: 'p99', values: ms('p99_ms'), unit: 'ms', color: '#7048e8' },
      ]} />` : html`<${Empty}>Nothing ran to completion: only throttled requests.<//>`}
    <//>
    <${Card} title="Cold starts and retries per minute">
      <${Chart} x=${x} series=${[
        { label: 'cold starts', values: pick('cold_starts'), color: '#1971c2' },
        { label: 'retries', values: pick('retries'), color: '#868e96' },
      ]} />
    <//>
  </div>`;
}

function Tops({ stats }) {
  const errors = top(stats.functions, 'errors');
  return html`<div class="grid">
    <${Card} title="Top by invocations">
      <${Table} label="Top by invocations" columns=${COLUMNS} rows=${top(stats.functions, 'invocations')}
        rowKey=${(r) => r.name} empty="Nothing ran in the last hour." />
    <//>
    <${Card} title="Top by errors">
      <${Table} label="Top by errors" columns=${COLUMNS} rows=${errors} rowKey=${(r) => r.name}
        empty="No errors in the last hour." />
    <//>
  </div>`;
}

function Quiet({ count }) {
  if (count === 0) {
    return html`<${Card} title="No functions yet">
      <p>Deploy one from a project folder, e.g. the example that ships with Ember:</p>
      <pre>${'ember deploy examples/hello\nember invoke hello -d \'"world"\''}</pre>
      <p class="muted">Its invocations show here within seconds.</p>
    <//>`;
  }
  return html`<${Card} title="Nothing ran in the last hour">
    <p>Invoke a function and its figures show here within seconds:</p>
    <pre>ember invoke NAME -d '{"key": "value"}'</pre>
    <p class="muted">Or deploy another one: <code>ember deploy examples/hello</code>.</p>
  <//>`;
}

export default function Overview() {
  const stats = usePoll(() => api.get('/stats', { window_s: WINDOW_S }), 5000);
  // The count changes far less often than the figures.
  const list = usePoll(() => listFunctions(), 30000);

  const s = stats.data;
  const count = list.data ? list.data.functions.length : null;
  const countText = list.data ? `${count}${list.data.more ? '+' : ''}` : (list.error ? '?' : '…');
  const ran = s && (s.invocations > 0 || s.throttles > 0);

  return html`<${Page} title="Overview" subtitle="Every function over the last hour; refreshed every 5 s.">
    <${ErrorBox} error=${stats.error} retry=${stats.reload} />
    <${ErrorBox} error=${list.error} retry=${list.reload} />
    ${!s && stats.loading ? html`<${Loading} what="the last hour" />` : null}
    ${s ? html`
      <div class="stats" role="group" aria-label="Last hour">
        <${Stat} label="Functions" value=${countText} />
        <${Stat} label="Invocations per minute" value=${perMinute(s.invocations, s.window_s)}
          hint=${`${s.invocations} in the last hour`} />
        <${Stat} label="Error rate" value=${fmtPct(s.errors, s.invocations)}
          hint=${`${plural(s.errors, 'error')}, ${plural(s.timeouts, 'timeout')}`} />
        <${Stat} label="Cold starts" value=${fmtPct(s.cold_starts, s.invocations)}
          hint=${`${s.cold_starts} of ${s.invocations}`} />
        <${Stat} label="p50 duration" value=${fmtMs(s.duration_ms.p50)} />
        <${Stat} label="p99 duration" value=${fmtMs(s.duration_ms.p99)} />
        ${s.throttles ? html`<${Stat} label="Throttled" value=${s.throttles} hint="refused: too many at once" />` : null}
      </div>
      ${ran ? html`<${Charts} stats=${s} /><${Tops} stats=${s} />`
        : (count === null && !list.error ? html`<${Loading} what="functions" />` : html`<${Quiet} count=${count} />`)}
      <p class="muted small">As of ${fmtTime(s.until)} UTC.</p>` : null}
  <//>`;
}
