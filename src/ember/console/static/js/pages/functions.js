// The functions list: every function with its state, kind, latest version, tags and the
// last hour's invocations, searchable by name and filtered by tag (both kept in the URL).
import { html, useState, useEffect, useMemo } from '../lib.js';
import { api } from '../api.js';
import {
  Page, Card, Table, Badge, ErrorBox, Loading, Empty, usePoll, fmtAgo, fmtTime, fmtPct, href,
} from '../ui.js';

// GET /functions answers at most 1000 a page; the console loads pages until CAP functions
// (then "Load more" raises it), so a large installation costs a few requests, not hundreds.
const PAGE_SIZE = 500;
export const CAP = 2000;

// Functions in name order, page after page, until `cap`; `more`: the server has others.
export async function listFunctions(cap = CAP) {
  const functions = [];
  let cursor = null;
  do {
    const limit = Math.min(PAGE_SIZE, cap - functions.length);
    const page = await api.get('/functions', { limit, cursor });
    functions.push(...page.functions);
    cursor = page.next_cursor;
  } while (cursor && functions.length < cap);
  return { functions, more: Boolean(cursor) };
}

// FunctionConfig.kind → what the console calls it.
export const KINDS = { event: 'handler', web: 'web', custom: 'custom runtime' };

// The function's state badges: enabled or disabled, and paused when its async
// invocations are paused (they queue, nothing runs them).
export function StateBadges({ fn }) {
  return html`<span class="badges"><${Badge}>${fn.state}<//>${fn.async_state === 'paused'
    ? html` <span title="async invocations are paused: they wait in the queue"><${Badge}>paused<//></span>`
    : null}</span>`;
}

// A tag filter as the server reads it: `key` (any value) or `key=value`.
export function hasTag(tags, filter) {
  if (!filter) return true;
  const i = filter.indexOf('=');
  const key = i < 0 ? filter : filter.slice(0, i);
  if (!tags || !Object.prototype.hasOwnProperty.call(tags, key)) return false;
  return i < 0 || tags[key] === filter.slice(i + 1);
}

function tagOptions(functions, current) {
  const keys = new Set();
  const pairs = new Set();
  for (const f of functions) {
    for (const [k, v] of Object.entries(f.config.tags || {})) {
      keys.add(k);
      pairs.add(`${k}=${v}`);
    }
  }
  const options = [...[...keys].map((k) => [k, `${k} (any value)`]), ...[...pairs].map((p) => [p, p])];
  if (current && !keys.has(current) && !pairs.has(current)) options.push([current, current]);
  return options.sort((a, b) => a[0].localeCompare(b[0]));
}

// Keeps the filters in the address (reload keeps them) without a history entry per key.
function keepInUrl(q, tag) {
  const target = href('/functions', { q, tag });
  if (window.location.hash !== target) window.history.replaceState(null, '', target);
}

function Tags({ tags }) {
  const entries = Object.entries(tags || {});
  if (!entries.length) return html`<span class="muted">—</span>`;
  return html`<span class="tags">${entries.map(([k, v]) => html`<a class="tag" key=${k}
    href=${href('/functions', { tag: `${k}=${v}` })} title=${`show functions tagged ${k}=${v}`}>${k}=${v}</a>`)}</span>`;
}

export default function Functions({ query = {} }) {
  const [q, setQ] = useState(query.q || '');
  const [tag, setTag] = useState(query.tag || '');
  const [cap, setCap] = useState(CAP);
  // A link to this page with other filters (a tag's, the sidebar's) is a hash change;
  // typing only replaces the address (keepInUrl), which fires none.
  useEffect(() => {
    const on = () => {
      const [path, search = ''] = window.location.hash.replace(/^#/, '').split('?');
      if (path !== '/functions') return;
      const params = new URLSearchParams(search);
      setQ(params.get('q') || '');
      setTag(params.get('tag') || '');
    };
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  useEffect(() => keepInUrl(q, tag), [q, tag]);

  const list = usePoll(() => listFunctions(cap), 10000, [cap]);
  const stats = usePoll(() => api.get('/stats', { window_s: 3600 }), 10000);

  const all = list.data ? list.data.functions : [];
  const needle = q.trim().toLowerCase();
  const shown = useMemo(() => all.filter((f) => (!needle || f.name.toLowerCase().includes(needle))
    && hasTag(f.config.tags, tag)), [all, needle, tag]);
  const counts = (stats.data && stats.data.functions) || {};

  const columns = [
    { key: 'name', label: 'Name', render: (f) => html`<a href=${href(`/functions/${encodeURIComponent(f.name)}`)}
      class="mono">${f.name}</a>` },
    { key: 'state', label: 'State', render: (f) => html`<${StateBadges} fn=${f} />` },
    { key: 'kind', label: 'Kind', render: (f) => KINDS[f.config.kind] || f.config.kind },
    { key: 'version', label: 'Latest version', cls: 'num',
      render: (f) => (f.last_version ? `v${f.last_version}` : html`<span class="muted" title="nothing published: only latest">—</span>`) },
    { key: 'tags', label: 'Tags', render: (f) => html`<${Tags} tags=${f.config.tags} />` },
    { key: 'invocations', label: 'Invocations (1 h)', cls: 'num',
      render: (f) => (stats.data ? (counts[f.name]?.invocations ?? 0) : '…') },
    { key: 'errors', label: 'Errors (1 h)', cls: 'num', render: (f) => {
      if (!stats.data) return '…';
      const c = counts[f.name];
      if (!c || !c.errors) return '0';
      return html`<span class="text-bad" title=${`${fmtPct(c.errors, c.invocations)} of invocations`}>${c.errors}</span>`;
    } },
    { key: 'updated', label: 'Last modified', render: (f) => html`<time datetime=${f.updated_at}
      title=${fmtTime(f.updated_at)}>${fmtAgo(f.updated_at)}</time>` },
  ];

  const filtering = Boolean(needle || tag);
  const clear = () => { setQ(''); setTag(''); };
  let body;
  if (!list.data && list.loading) body = html`<${Loading} what="functions" />`;
  else if (!list.data) body = null;
  else if (all.length === 0) {
    body = html`<${Empty}>No functions yet. Deploy one from a project folder:
      <code>ember deploy examples/hello</code>, then invoke it: <code>ember invoke hello</code>.<//>`;
  } else if (shown.length === 0) {
    body = html`<div class="empty muted">No function matches
      ${needle ? html` “${q.trim()}”` : null}${tag ? html` tagged <code>${tag}</code>` : null}.
      <button class="link" onClick=${clear}>Clear the filters</button></div>`;
  } else {
    body = html`<${Table} label="Functions" columns=${columns} rows=${shown} rowKey=${(f) => f.name} />`;
  }

  const summary = list.data ? (filtering
    ? `${shown.length} of ${all.length}${list.data.more ? '+' : ''} match`
    : `${all.length}${list.data.more ? '+' : ''} in all`) : '';

  return html`<${Page} title="Functions" subtitle="Invocations and errors over the last hour; refreshed every 10 s.">
    <${Card}>
      <form class="filters" role="search" onSubmit=${(e) => e.preventDefault()}>
        <div class="field"><label for="fn-search">Search functions</label>
          <input id="fn-search" type="search" placeholder="part of a name" autocomplete="off"
            value=${q} onInput=${(e) => setQ(e.target.value)} /></div>
        <div class="field"><label for="fn-tag">Tag</label>
          <select id="fn-tag" value=${tag} onChange=${(e) => setTag(e.target.value)}>
            <option value="">Any tag</option>
            ${tagOptions(all, tag).map(([value, label]) => html`<option value=${value} key=${value}>${label}</option>`)}
          </select></div>
        ${filtering ? html`<button type="button" onClick=${clear}>Clear</button>` : null}
        <span class="spacer"></span>
        <span class="muted small" aria-live="polite">${summary}</span>
      </form>
      <${ErrorBox} error=${list.error} retry=${list.reload} />
      ${stats.error ? html`<${ErrorBox} error=${{ ...stats.error, message: `invocation counts: ${stats.error.message}` }} />` : null}
      ${body}
      ${list.data && list.data.more ? html`<p class="row muted small">Showing the first ${all.length} by name.
        <button onClick=${() => setCap(cap + CAP)}>Load more</button></p>` : null}
    <//>
  <//>`;
}
