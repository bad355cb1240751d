// Tasks: a function's async invocations (newest first), each with its attempts, result or
// error and logs; a task that has not ended can be stopped. Also the pieces the dead-letter
// page shares: the function picker, a payload's body, a span of time, a request's logs.
import { html, useState, useEffect, useRef } from '../lib.js';
import { api, fn, can } from '../api.js';
import {
  Page, Card, Table, Badge, ErrorBox, Loading, Empty, Confirm, toast, usePoll,
  fmtTime, fmtAgo, fmtJson, href, go,
} from '../ui.js';

export const TASK_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'stopped', 'expired'];
const FINAL = new Set(['succeeded', 'failed', 'stopped', 'expired']);
const PAGE = 50;

// Seconds between two times (unix seconds or ISO strings) as "1.23 s"; to now when open.
export function fmtSpan(start, end) {
  const t = (v) => (typeof v === 'number' ? v * 1000 : Date.parse(v));
  if (start === null || start === undefined) return '—';
  const ms = (end === null || end === undefined ? Date.now() : t(end)) - t(start);
  if (Number.isNaN(ms)) return '—';
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  if (ms < 120000) return `${(ms / 1000).toFixed(2)} s`;
  return `${Math.round(ms / 60000)} min`;
}

// A body as the API returns it: {value} (JSON), {text} or {base64}.
export function Body({ body, contentType }) {
  if (body === null || body === undefined) return html`<p class="muted">none</p>`;
  let shown;
  if ('value' in body) shown = fmtJson(body.value);
  else if ('text' in body) shown = body.text;
  else if ('base64' in body) shown = `(${contentType || 'binary'}, base64)\n${body.base64}`;
  else shown = fmtJson(body);
  return html`<pre>${shown}</pre>`;
}

// An API problem ({code, message, details}) as a block: code, message, then its details
// (a traceback is shown as the text it is).
export function Problem({ error }) {
  if (!error) return null;
  const { code, message, details, ...rest } = error;
  const more = { ...(details || {}), ...rest };
  const trace = typeof more.traceback === 'string' ? more.traceback : null;
  if (trace) delete more.traceback;
  return html`<div class="problem">
    <p><strong>${code || 'Error'}</strong>${message ? html`: ${message}` : null}</p>
    ${Object.keys(more).length ? html`<pre>${fmtJson(more)}</pre>` : null}
    ${trace ? html`<pre>${trace}</pre>` : null}
  </div>`;
}

// The function picker: a <select> over GET /functions, or a text field when the key may not
// list functions (an invoker). `any` adds an "All functions" choice with value ''.
export function FunctionSelect({ id, value, onChange, any }) {
  const list = usePoll(() => api.get('/functions', { limit: 1000 }), 0, []);
  if (list.error && !list.data) {
    return html`<div class="field"><label for=${id}>Function</label>
      <input id=${id} value=${value || ''} placeholder="function name"
        onChange=${(e) => onChange(e.target.value.trim())} />
      <span class="muted small">functions cannot be listed: ${list.error.message}</span></div>`;
  }
  const names = (list.data?.functions || []).map((f) => f.name);
  if (value && !names.includes(value)) names.unshift(value);
  return html`<div class="field"><label for=${id}>Function</label>
    <select id=${id} value=${value || ''} onChange=${(e) => onChange(e.target.value)}>
      ${any ? html`<option value="">All functions</option>` : null}
      ${!any && !value ? html`<option value="">${list.loading ? 'Loading…' : 'Choose a function'}</option>` : null}
      ${names.map((n) => html`<option value=${n}>${n}</option>`)}
    </select></div>`;
}

// A request's log lines (GET /functions/{name}/logs?request_id=…), refreshed while `live`.
export function RequestLogs({ name, requestId, live }) {
  const logs = usePoll(
    () => api.get(`${fn(name)}/logs`, { request_id: requestId, limit: 1000 }),
    live ? 3000 : 0, [name, requestId, live],
  );
  if (logs.loading && !logs.data) return html`<${Loading} what="logs" />`;
  const lines = logs.data?.logs || [];
  return html`<div>
    <${ErrorBox} error=${logs.error} retry=${logs.reload} />
    ${lines.length === 0 ? html`<${Empty}>No log lines for this request.<//>` : html`
      <div class="logs" role="log" aria-label="Logs">${lines.map((l) => html`
        <div class=${`line lvl-${l.level}`} key=${l.id}><span class="ts">${fmtTime(l.ts)}</span>
          ${' '}<span>${l.level}</span>${' '}${l.line}</div>`)}</div>`}
  </div>`;
}

// First page polled; "Load more" pages appended below it (deduplicated by id).
function useCursorList(load, key, intervalMs, deps) {
  const first = usePoll(() => load(null), intervalMs, deps);
  const [more, setMore] = useState({ items: [], cursor: undefined, busy: false, error: null });
  useEffect(() => setMore({ items: [], cursor: undefined, busy: false, error: null }), deps);
  const cursor = more.cursor === undefined ? first.data?.next_cursor : more.cursor;
  const loadMore = async () => {
    setMore((m) => ({ ...m, busy: true, error: null }));
    try {
      const page = await load(cursor);
      setMore((m) => ({ items: [...m.items, ...page[key]], cursor: page.next_cursor, busy: false, error: null }));
    } catch (error) {
      setMore((m) => ({ ...m, busy: false, error }));
    }
  };
  const seen = new Set();
  const rows = [...(first.data?.[key] || []), ...more.items].filter((r) => {
    if (seen.has(r.id)) return false;
    seen.add(r.id);
    return true;
  });
  return { ...first, rows, cursor, loadMore, more };
}

export function LoadMore({ list, what }) {
  if (!list.cursor) return null;
  return html`<div class="row load-more"><button onClick=${list.loadMore} disabled=${list.more.busy}>
    ${list.more.busy ? 'Loading…' : `Load more ${what}`}</button>
    <${ErrorBox} error=${list.more.error} /></div>`;
}

export { useCursorList };

function duration(t) {
  if (!t.started_at) return '—';
  return fmtSpan(t.started_at, t.finished_at ?? (t.status === 'running' ? null : t.updated_at));
}

function StatusBadges({ task }) {
  return html`<${Badge}>${task.status}<//>
    ${task.stop_requested && !FINAL.has(task.status) ? html` <${Badge} tone="warn">stop requested<//>` : null}
    ${task.dead_lettered ? html` <${Badge} tone="bad">dead letter<//>` : null}`;
}

function TaskDetail({ id, onClose }) {
  const task = usePoll(() => api.get(`/tasks/${encodeURIComponent(id)}`), 3000, [id]);
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  const head = useRef(null);
  useEffect(() => { head.current?.focus(); }, [id]);
  const t = task.data;
  const stop = async () => {
    setAsking(false);
    setBusy(true);
    try {
      const out = await api.post(`/tasks/${encodeURIComponent(id)}/stop`);
      toast(`Task ${id} ${out.status === 'stopped' ? 'stopped' : 'is stopping'}`);
      task.reload();
    } catch (err) {
      toast(`Stop failed: ${err.message}`, 'bad');
    } finally {
      setBusy(false);
    }
  };
  const actions = html`
    ${t && !FINAL.has(t.status) && can('invoke') ? html`<button class="danger" disabled=${busy || t.stop_requested}
      onClick=${() => setAsking(true)}>${t.stop_requested ? 'Stopping…' : 'Stop'}</button>` : null}
    <button onClick=${onClose}>Close</button>`;
  return html`<section class="card task-detail" aria-labelledby="task-detail-title">
    <header class="card-head"><h2 id="task-detail-title" tabindex="-1" ref=${head}>Task <code>${id}</code></h2>
      <div class="actions">${actions}</div></header>
    <${ErrorBox} error=${task.error} retry=${task.reload} />
    ${!t ? (task.loading ? html`<${Loading} what="the task" />` : null) : html`
      <dl class="facts">
        <dt>Status</dt><dd><${StatusBadges} task=${t} /></dd>
        <dt>Function</dt><dd><a href=${href(`/functions/${t.function}`)}>${t.function}</a>:${t.qualifier}
          ${t.version ? html` <span class="muted">(version ${t.version})</span>` : null}</dd>
        <dt>Attempts</dt><dd>${t.attempts}</dd>
        <dt>Created</dt><dd>${fmtTime(t.created_at)}</dd>
        <dt>Started</dt><dd>${fmtTime(t.started_at)}</dd>
        <dt>Finished</dt><dd>${fmtTime(t.finished_at)}</dd>
        <dt>Duration</dt><dd>${duration(t)}</dd>
        ${t.idempotency_key ? html`<dt>Idempotency key</dt><dd><code>${t.idempotency_key}</code></dd>` : null}
      </dl>
      ${t.dead_lettered ? html`<p>This task is a <a href=${href('/dead-letters', { id: t.id })}>dead letter</a>.</p>` : null}
      ${t.error ? html`<h3>Error</h3><div class="error"><${Problem} error=${t.error} /></div>` : null}
      ${t.status === 'succeeded' ? html`<h3>Result</h3><${Body} body=${t.result} contentType=${t.result_content_type} />` : null}
      <h3>Attempts</h3>
      <${Table} label="Attempts" rows=${t.history} rowKey=${(a) => a.attempt}
        empty=${t.status === 'queued' ? 'Not run yet.' : 'No attempt recorded.'}
        columns=${[
          { key: 'attempt', label: '#', cls: 'num' },
          { label: 'Outcome', render: (a) => html`<${Badge} tone=${a.outcome === 'success' ? 'ok' : a.outcome === 'stopped' ? 'muted' : 'bad'}>${a.outcome}<//>` },
          { label: 'Started', render: (a) => fmtTime(a.started_at) },
          { label: 'Duration', render: (a) => fmtSpan(a.started_at, a.finished_at) },
          { label: 'Version', render: (a) => a.version ?? '—' },
          { label: 'Error', render: (a) => (a.error_code ? html`<strong>${a.error_code}</strong>${a.message ? `: ${a.message}` : ''}` : '—') },
        ]} />
      <h3>Logs</h3>
      <${RequestLogs} name=${t.function} requestId=${t.id} live=${!FINAL.has(t.status)} />`}
    <${Confirm} open=${asking} title="Stop this task?" confirmLabel="Stop task" danger
      onConfirm=${stop} onCancel=${() => setAsking(false)}>
      <p>Task <code>${id}</code> will not run again: a queued task never starts, a running one's
        instance is killed.</p><//>
  </section>`;
}

export default function Tasks({ query }) {
  const name = query.function || '';
  const status = query.status || '';
  const selected = query.task || '';
  const set = (changes) => go('/tasks', { function: name, status, task: selected, ...changes });
  const list = useCursorList(
    (cursor) => (name ? api.get(`${fn(name)}/tasks`, { status, limit: PAGE, cursor }) : Promise.resolve(null)),
    'tasks', 3000, [name, status],
  );
  const columns = [
    { label: 'ID', render: (t) => html`<a class="mono" href=${href('/tasks', { function: name, status, task: t.id })}
        aria-current=${t.id === selected ? 'true' : undefined} title=${t.id}>${t.id}</a>` },
    { label: 'Status', render: (t) => html`<${StatusBadges} task=${t} />` },
    { key: 'attempts', label: 'Attempts', cls: 'num' },
    { label: 'Created', render: (t) => html`<span title=${fmtTime(t.created_at)}>${fmtAgo(t.created_at)}</span>` },
    { label: 'Updated', render: (t) => html`<span title=${fmtTime(t.updated_at)}>${fmtAgo(t.updated_at)}</span>` },
    { label: 'Duration', render: duration, cls: 'num' },
    { label: 'Error', render: (t) => (t.error ? html`<span class="error-text">${t.error.code}</span>` : '—') },
  ];
  return html`<${Page} title="Tasks" subtitle="Async invocations of a function, newest first.">
    <form class="filters" onSubmit=${(e) => e.preventDefault()} aria-label="Task filters">
      <${FunctionSelect} id="tasks-function" value=${name}
        onChange=${(v) => set({ function: v, task: '' })} />
      <div class="field"><label for="tasks-status">Status</label>
        <select id="tasks-status" value=${status} onChange=${(e) => set({ status: e.target.value })}>
          <option value="">Any status</option>
          ${TASK_STATUSES.map((s) => html`<option value=${s}>${s}</option>`)}
        </select></div>
    </form>
    ${selected ? html`<${TaskDetail} key=${selected} id=${selected} onClose=${() => set({ task: '' })} />` : null}
    <${Card} title=${name ? html`Tasks of <code>${name}</code>` : 'Tasks'}>
      ${!name ? html`<${Empty}>Choose a function to see its tasks.<//>` : html`
        <${ErrorBox} error=${list.error} retry=${list.reload} />
        ${list.loading && !list.data ? html`<${Loading} what="tasks" />` : html`
          <${Table} label="Tasks" columns=${columns} rows=${list.rows} rowKey=${(t) => t.id}
            empty=${status ? `No ${status} task of ${name}.` : `${name} has no task yet: invoke it with X-Ember-Invocation-Type: async.`} />
          <${LoadMore} list=${list} what="tasks" />`}`}
    <//>
  <//>`;
}
