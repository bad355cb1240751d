// Shared pieces of every page: polling, formatting, tables, badges, errors, charts, dialogs.
import { html, useState, useEffect, useRef, useCallback, uPlot } from './lib.js';

// ---- data ------------------------------------------------------------------------------

// Calls load() now, then every intervalMs (0: once) while the page shows; keeps the last
// good data beside the last error. deps reloads at once when they change.
export function usePoll(load, intervalMs, deps = []) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const alive = useRef(true);
  const run = useCallback(async () => {
    try {
      const data = await load();
      if (alive.current) setState({ data, error: null, loading: false });
    } catch (error) {
      if (alive.current) setState((s) => ({ data: s.data, error, loading: false }));
    }
  }, deps);
  useEffect(() => {
    alive.current = true;
    setState((s) => ({ ...s, loading: true }));
    run();
    let timer = null;
    if (intervalMs) {
      timer = setInterval(() => { if (!document.hidden) run(); }, intervalMs);
    }
    return () => { alive.current = false; if (timer) clearInterval(timer); };
  }, [run, intervalMs]);
  return { ...state, reload: run };
}

// ---- formatting ------------------------------------------------------------------------

const pad = (n) => String(n).padStart(2, '0');

// A time as UTC ISO 8601 without fractions: unix seconds, or an ISO string.
export function fmtTime(value) {
  if (value === null || value === undefined || value === '') return '—';
  const d = typeof value === 'number' ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} `
    + `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
}

export function fmtAgo(value) {
  if (value === null || value === undefined) return '—';
  const t = typeof value === 'number' ? value * 1000 : Date.parse(value);
  const s = Math.round((Date.now() - t) / 1000);
  if (s < 0) return `in ${fmtDuration(-s)}`;
  return `${fmtDuration(s)} ago`;
}

export function fmtDuration(seconds) {
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86400)}d`;
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return '—';
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

export function fmtPct(part, whole) {
  if (!whole) return '—';
  return `${((100 * part) / whole).toFixed(1)} %`;
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function fmtJson(value) {
  try { return JSON.stringify(value, null, 2); } catch { return String(value); }
}

// ---- navigation ------------------------------------------------------------------------

export function href(path, params) {
  const q = params ? Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&') : '';
  return `#${path}${q ? `?${q}` : ''}`;
}

export function go(path, params) { window.location.hash = href(path, params).slice(1); }

// ---- pieces ----------------------------------------------------------------------------

export function Page({ title, subtitle, actions, children }) {
  useEffect(() => { document.title = `${title} · Ember`; }, [title]);
  return html`<section class="page">
    <header class="page-head">
      <div><h1>${title}</h1>${subtitle ? html`<p class="muted">${subtitle}</p>` : null}</div>
      ${actions ? html`<div class="actions">${actions}</div>` : null}
    </header>
    ${children}
  </section>`;
}

export function Card({ title, actions, children, id }) {
  return html`<section class="card" id=${id}>
    ${title || actions ? html`<header class="card-head"><h2>${title}</h2>
      ${actions ? html`<div class="actions">${actions}</div>` : null}</header>` : null}
    ${children}
  </section>`;
}

// An API error (or any error) as a readable message; `retry` adds a button.
export function ErrorBox({ error, retry }) {
  if (!error) return null;
  const code = error.code ? html`<strong>${error.code}</strong>: ` : null;
  const details = error.details && Object.keys(error.details).length
    ? html`<details><summary>details</summary><pre>${fmtJson(error.details)}</pre></details>` : null;
  return html`<div class="error" role="alert">${code}${error.message || String(error)}${details}
    ${retry ? html` <button class="link" onClick=${retry}>Try again</button>` : null}</div>`;
}

export function Loading({ what }) {
  return html`<p class="muted loading" aria-live="polite">Loading${what ? ` ${what}` : ''}…</p>`;
}

export function Empty({ children }) {
  return html`<p class="empty muted">${children}</p>`;
}

const TONES = {
  enabled: 'ok', ready: 'ok', success: 'ok', succeeded: 'ok', connected: 'ok', idle: 'ok',
  running: 'info', busy: 'info', starting: 'info', queued: 'info', warm: 'ok', active: 'ok',
  paused: 'warn', frozen: 'warn', stop_requested: 'warn', retrying: 'warn', pending: 'warn',
  disabled: 'muted', stopped: 'muted', cancelled: 'muted', draining: 'muted',
  failed: 'bad', error: 'bad', timeout: 'bad', timed_out: 'bad', throttled: 'warn', dead: 'bad',
};

export function Badge({ tone, children }) {
  const t = tone || TONES[String(children).toLowerCase()] || 'muted';
  return html`<span class=${`badge badge-${t}`}>${children}</span>`;
}

// columns: [{ key, label, render(row), cls }]; rows: array; rowKey(row) → key.
export function Table({ columns, rows, rowKey, empty, label }) {
  if (!rows || rows.length === 0) return html`<${Empty}>${empty || 'Nothing here yet.'}<//>`;
  return html`<div class="table-wrap"><table aria-label=${label}>
    <thead><tr>${columns.map((c) => html`<th scope="col" class=${c.cls}>${c.label}</th>`)}</tr></thead>
    <tbody>${rows.map((row, i) => html`<tr key=${rowKey ? rowKey(row) : i}>
      ${columns.map((c) => html`<td class=${c.cls} data-label=${c.label}>
        ${c.render ? c.render(row) : row[c.key] ?? '—'}</td>`)}</tr>`)}</tbody>
  </table></div>`;
}

export function Stat({ label, value, hint }) {
  return html`<div class="stat"><div class="stat-value">${value}</div>
    <div class="stat-label">${label}</div>${hint ? html`<div class="muted small">${hint}</div>` : null}</div>`;
}

export function Tabs({ tabs, current, onSelect }) {
  const keyDown = (e, i) => {
    const step = e.key === 'ArrowRight' ? 1 : e.key === 'ArrowLeft' ? -1 : 0;
    if (!step) return;
    e.preventDefault();
    const next = tabs[(i + step + tabs.length) % tabs.length];
    onSelect(next.key);
    setTimeout(() => document.getElementById(`tab-${next.key}`)?.focus(), 0);
  };
  return html`<div class="tabs" role="tablist">${tabs.map((t, i) => html`<button role="tab"
      id=${`tab-${t.key}`} aria-selected=${t.key === current} tabindex=${t.key === current ? 0 : -1}
      class=${t.key === current ? 'tab active' : 'tab'} onClick=${() => onSelect(t.key)}
      onKeyDown=${(e) => keyDown(e, i)}>${t.label}</button>`)}</div>`;
}

// A confirmation dialog: open while `open`; onConfirm / onCancel.
export function Confirm({ open, title, children, confirmLabel, onConfirm, onCancel, danger }) {
  const ref = useRef(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (open && !d.open) d.showModal();
    if (!open && d.open) d.close();
  }, [open]);
  return html`<dialog ref=${ref} class="dialog" onCancel=${(e) => { e.preventDefault(); onCancel(); }}>
    <h2>${title}</h2><div>${children}</div>
    <div class="actions"><button onClick=${onCancel}>Cancel</button>
      <button class=${danger ? 'danger' : 'primary'} onClick=${onConfirm}>${confirmLabel || 'Confirm'}</button></div>
  </dialog>`;
}

// Short messages at the bottom of the screen: toast('Saved'), toast(err.message, 'bad').
const toastListeners = new Set();
export function toast(message, tone = 'ok') { toastListeners.forEach((fn) => fn({ message, tone, id: Math.random() })); }
export function Toasts() {
  const [items, setItems] = useState([]);
  useEffect(() => {
    const add = (t) => {
      setItems((xs) => [...xs, t]);
      setTimeout(() => setItems((xs) => xs.filter((x) => x.id !== t.id)), 5000);
    };
    toastListeners.add(add);
    return () => toastListeners.delete(add);
  }, []);
  return html`<div class="toasts" role="status" aria-live="polite">${items.map((t) => html`
    <div key=${t.id} class=${`toast toast-${t.tone}`}>${t.message}</div>`)}</div>`;
}

// ---- charts ----------------------------------------------------------------------------

const PALETTE = ['#e8590c', '#1971c2', '#2f9e44', '#c2255c', '#7048e8', '#868e96'];

function hasIsolated(values) {
  const gap = (v) => v === null || v === undefined;
  return values.some((v, i) => !gap(v) && gap(values[i - 1]) && gap(values[i + 1]));
}

// A time-series chart. x: unix seconds; series: [{ label, values, color?, unit?, points?,
// spanGaps? }] (points: draw each value as a dot; spanGaps: join values across nulls);
// title is drawn above the chart, label only names it for screen readers (and tests).
export function Chart({ x, series, height = 180, title, label }) {
  const box = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return undefined;
    const width = Math.max(240, el.clientWidth || 480);
    const opts = {
      width, height, title,
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
      scales: { x: { time: true } },
      axes: [{ stroke: '#868e96', grid: { stroke: '#e9ecef' } },
        { stroke: '#868e96', grid: { stroke: '#e9ecef' }, size: 50 }],
      series: [{}, ...series.map((s, i) => ({
        label: s.label, stroke: s.color || PALETTE[i % PALETTE.length], width: 2,
        // Points where a line cannot show a value: few of them, or one between two gaps.
        points: { show: s.points ?? (x.length < 3 || hasIsolated(s.values)) },
        spanGaps: s.spanGaps ?? false,
        value: (u, v) => (v === null || v === undefined ? '—' : `${+v.toFixed(2)}${s.unit ? ` ${s.unit}` : ''}`),
      }))],
    };
    const data = [x, ...series.map((s) => s.values)];
    if (plot.current) plot.current.destroy();
    plot.current = new uPlot(opts, data, el);
    const resize = () => plot.current && plot.current.setSize({ width: Math.max(240, el.clientWidth), height });
    window.addEventListener('resize', resize);
    return () => { window.removeEventListener('resize', resize); };
  }, [JSON.stringify(x), JSON.stringify(series.map((s) => [s.label, s.values])), height]);
  useEffect(() => () => { if (plot.current) plot.current.destroy(); plot.current = null; }, []);
  return html`<div class="chart" ref=${box} role="img" aria-label=${label || title || series.map((s) => s.label).join(', ')}></div>`;
}

// Per-minute points of a stats answer (`series`) filled to a window of minutes, so that
// quiet minutes show as 0 rather than a line drawn across them.
export function minuteSeries(points, untilSeconds, minutes = 60) {
  const byMinute = new Map((points || []).map((p) => [p.minute, p]));
  const end = Math.floor(untilSeconds / 60) * 60;
  const x = [];
  const rows = [];
  for (let m = end - (minutes - 1) * 60; m <= end; m += 60) {
    x.push(m);
    rows.push(byMinute.get(m) || null);
  }
  return { x, rows };
}
