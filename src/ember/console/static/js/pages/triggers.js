// Triggers: every event source bound to a function, the workflow bus or a workflow, with
// what each did since the server started (events, invocations, failures, the last error)
// and the actions that change its state (pause / resume, disable / enable).
import { html, useState } from '../lib.js';
import { api, can } from '../api.js';
import {
  Page, Card, Table, Badge, ErrorBox, Loading, Empty, toast, usePoll, fmtTime, fmtAgo, href,
} from '../ui.js';

// What a source listens to, in a few words.
function sourceText(s) {
  switch (s.kind) {
    case 'http': return `${(s.methods || []).join(' ')} /http${s.path === '/' ? '' : s.path}${s.auth === 'api_key' ? ' (key)' : ''}`;
    case 'timer': return `${s.schedule}${s.timezone && s.timezone !== 'UTC' ? ` ${s.timezone}` : ''}`;
    case 'mqtt': return `${s.topic} @ ${s.url}`;
    case 'amqp': return `queue ${s.queue} @ ${s.url}`;
    case 'nats': return `${s.subject}${s.stream ? ` (stream ${s.stream})` : ''} @ ${s.url}`;
    case 'redis_stream': return `${(s.streams || []).join(', ')} @ ${s.url}`;
    case 'storage': return `${s.path}/${s.pattern || '*'} (${(s.events || []).join(', ')})`;
    default: return '';
  }
}

function Target({ t }) {
  if (t.target === 'events') return html`<span>event bus</span>`;
  if (t.target === 'workflow') {
    return html`<span>workflow <a href=${href(`/workflows/${t.workflow}`)}>${t.workflow}</a></span>`;
  }
  return html`<span><a href=${href(`/functions/${t.function}`)}>${t.function}</a>:${t.qualifier || 'latest'}</span>`;
}

// The state changes each state allows: [route, label, hint].
const ACTIONS = {
  enabled: [['pause', 'Pause', 'stop taking events; the source keeps them'], ['disable', 'Disable', 'stop the source']],
  paused: [['resume', 'Resume', 'take the events kept meanwhile, then new ones'], ['disable', 'Disable', 'stop the source']],
  disabled: [['enable', 'Enable', 'start the source']],
};
const DONE = { pause: 'paused', resume: 'resumed', disable: 'disabled', enable: 'enabled' };

function Actions({ t, onChanged }) {
  const [busy, setBusy] = useState(false);
  if (!can('write')) return html`<span class="muted">—</span>`;
  const act = async (action) => {
    setBusy(true);
    try {
      await api.post(`/triggers/${encodeURIComponent(t.name)}/${action}`);
      toast(`Trigger ${t.name} ${DONE[action]}`);
      onChanged();
    } catch (err) {
      toast(`Could not ${action} ${t.name}: ${err.message}`, 'bad');
    } finally {
      setBusy(false);
    }
  };
  return html`<div class="actions nowrap">${(ACTIONS[t.state] || []).map(([action, label, hint]) => html`
    <button key=${action} disabled=${busy} title=${hint} aria-label=${`${label} trigger ${t.name}`}
      onClick=${() => act(action)}>${label}</button>`)}</div>`;
}

function State({ t }) {
  const st = t.status || {};
  return html`<div class="badges"><${Badge}>${t.state}<//>
    ${t.state !== 'disabled' ? html` <${Badge} tone=${st.connected ? 'ok' : 'warn'}>${st.connected ? 'connected' : 'not connected'}<//>` : null}</div>`;
}

function LastError({ st }) {
  if (!st.last_error) return html`<span class="muted">none</span>`;
  const text = st.last_error.length > 200 ? `${st.last_error.slice(0, 199)}…` : st.last_error;
  return html`<div class="last-error"><span class="error-text" title=${st.last_error}>${text}</span>
    <div class="muted small" title=${fmtTime(st.last_error_at)}>${fmtAgo(st.last_error_at)}</div></div>`;
}

// Counts since the server started: events taken, invocations made (or events published,
// executions started), failures, events given up.
function Counters({ st }) {
  const item = (n, what, bad) => html`<span class=${bad && n ? 'error-text' : ''}><strong>${n ?? 0}</strong> ${what}</span>`;
  return html`<div class="counters">${item(st.events, 'events')}${item(st.invocations, 'invoked')}
    ${item(st.failures, 'failed', true)}${item(st.dropped, 'dropped', true)}</div>`;
}

function matches(t, needle) {
  if (!needle) return true;
  const hay = [t.name, t.function, t.workflow, t.target, t.state, t.description, t.source?.kind,
    sourceText(t.source || {})].filter(Boolean).join(' ').toLowerCase();
  return needle.toLowerCase().split(/\s+/).every((w) => hay.includes(w));
}

export default function Triggers({ query = {} }) {
  const list = usePoll(() => api.get('/triggers'), 5000, []);
  // A link from a function's Triggers tab names the trigger: #/triggers?name=web
  const [search, setSearch] = useState(query.name || '');
  const all = list.data?.triggers || [];
  const rows = all.filter((t) => matches(t, search.trim()));
  const columns = [
    { label: 'Name', render: (t) => html`<strong class="nowrap">${t.name}</strong>${t.description ? html`<div class="muted small">${t.description}</div>` : null}` },
    { label: 'Kind', render: (t) => html`<${Badge} tone="info">${t.source?.kind}<//><div class="muted small mono">${sourceText(t.source || {})}</div>` },
    { label: 'Target', render: (t) => html`<${Target} t=${t} />` },
    { label: 'State', render: (t) => html`<${State} t=${t} />` },
    { label: 'Activity', render: (t) => html`<${Counters} st=${t.status || {}} />` },
    { label: 'Last event', render: (t) => (t.status?.last_event_at
      ? html`<span title=${fmtTime(t.status.last_event_at)}>${fmtAgo(t.status.last_event_at)}</span>` : html`<span class="muted">never</span>`) },
    { label: 'Last error', render: (t) => html`<${LastError} st=${t.status || {}} />` },
    { label: 'Actions', render: (t) => html`<${Actions} t=${t} onChanged=${list.reload} />` },
  ];
  return html`<${Page} title="Triggers"
      subtitle="Event sources and what they did since the server started. Counters restart with the server.">
    <div class="filters">
      <div class="field"><label for="trigger-search">Search triggers</label>
        <input id="trigger-search" type="search" value=${search} placeholder="name, function, kind…"
          onInput=${(e) => setSearch(e.target.value)} /></div>
    </div>
    <${Card} title=${list.data ? `${rows.length} of ${all.length} triggers` : 'Triggers'}>
      <${ErrorBox} error=${list.error} retry=${list.reload} />
      ${list.loading && !list.data ? html`<${Loading} what="triggers" />`
        : all.length === 0 && list.data ? html`<${Empty}>No triggers yet: create one with <code>ember trigger create</code>.<//>`
        : html`<${Table} label="Triggers" columns=${columns} rows=${rows} rowKey=${(t) => t.name}
            empty=${`No trigger matches “${search}”.`} />`}
    <//>
  <//>`;
}
