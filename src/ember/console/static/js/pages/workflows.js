// Workflows: the deployed documents, each one's executions, and an execution with its
// task tree drawn as a graph (the document's tasks, coloured by what the execution's
// history says of each).
import { html, useState, useEffect, useMemo, useRef } from '../lib.js';
import { api, can } from '../api.js';
import {
  Page, Card, Table, Badge, ErrorBox, Loading, Empty, Confirm, Tabs, toast, usePoll,
  fmtTime, fmtAgo, fmtJson, href, go,
} from '../ui.js';
import { fmtSpan, useCursorList, LoadMore } from './tasks.js';

const EXECUTION_STATUSES = ['running', 'waiting', 'succeeded', 'failed', 'cancelled'];
const ACTIVE = new Set(['running', 'waiting']);
const KINDS = ['call', 'fork', 'switch', 'for', 'set', 'wait', 'raise', 'try', 'emit', 'listen', 'run', 'do'];
const wf = (name) => `/workflows/${encodeURIComponent(name)}`;

// ---- the document ----------------------------------------------------------------------

// A task name in a path, as the engine writes it (JSON pointer escapes).
const escapeName = (name) => name.replace(/~/g, '~0').replace(/\//g, '~1');

// What a task does, in a few words.
function describe(kind, def) {
  const v = def[kind];
  if (kind === 'call') return `call ${typeof v === 'string' ? v : '?'}`;
  if (kind === 'for' && v && typeof v === 'object') return `for each ${v.each || 'item'} in ${v.in}`;
  if (kind === 'wait') return `wait ${typeof v === 'string' ? v : fmtJson(v).replace(/\s+/g, ' ')}`;
  if (kind === 'run') return `run ${v?.workflow?.name || ''}`.trim();
  if (kind === 'listen') return `listen to ${Object.keys(v?.to || {})[0] || '?'}`;
  if (kind === 'fork' && v?.compete) return 'fork (compete)';
  return kind;
}

// Every task of a document with its path and its parent's, parents first, in document
// order: the paths the engine gives task instances (``/do/1/each/do/0/double``).
export function documentTasks(doc) {
  const out = [];
  const walk = (items, listPath, parent) => {
    if (!Array.isArray(items)) return;
    items.forEach((item, i) => {
      if (!item || typeof item !== 'object') return;
      const name = Object.keys(item)[0];
      if (name === undefined) return;
      const def = item[name] && typeof item[name] === 'object' ? item[name] : {};
      const path = `${listPath}/${i}/${escapeName(name)}`;
      const kind = KINDS.find((k) => k in def) || 'task';
      out.push({ path, name, kind, what: describe(kind, def), parent });
      if (Array.isArray(def.do)) walk(def.do, `${path}/do`, path);
      if (def.fork && Array.isArray(def.fork.branches)) walk(def.fork.branches, `${path}/fork/branches`, path);
      if (Array.isArray(def.try)) walk(def.try, `${path}/try`, path);
      if (def.catch && Array.isArray(def.catch.do)) walk(def.catch.do, `${path}/catch/do`, path);
    });
  };
  walk(doc?.do, '/do', '');
  return out;
}

// A JSON value as YAML (block style; strings quoted when YAML could read them otherwise).
function yamlScalar(v) {
  if (v === null || v === undefined) return 'null';
  if (typeof v !== 'string') return String(v);
  const plain = /^[A-Za-z_./][\w ./@-]*$/.test(v) && !/\s$/.test(v)
    && !/^(true|false|null|yes|no|on|off|y|n)$/i.test(v);
  return plain ? v : JSON.stringify(v);
}
function yamlBlock(v, indent) {
  if (Array.isArray(v)) {
    if (!v.length) return ' []';
    return v.map((item) => `\n${indent}- ${yamlBlock(item, `${indent}  `).replace(/^(\n\s*| )/, '')}`).join('');
  }
  if (v && typeof v === 'object') {
    const keys = Object.keys(v);
    if (!keys.length) return ' {}';
    return keys.map((k) => `\n${indent}${yamlScalar(k)}:${yamlBlock(v[k], `${indent}  `)}`).join('');
  }
  return ` ${yamlScalar(v)}`;
}
export function toYaml(v) { return yamlBlock(v, '').replace(/^\n/, '').replace(/^ /, ''); }

// An execution's or a step's status ("waiting" is on hold, not failing).
function Status({ s }) {
  return html`<${Badge} tone=${s === 'waiting' ? 'warn' : undefined}>${s}<//>`;
}

// ---- the graph -------------------------------------------------------------------------

const NODE_W = 200;
const NODE_H = 46;
const GAP_X = 48;
const GAP_Y = 14;
const PAD = 10;
const LEGEND = [
  ['succeeded', 'succeeded'], ['running', 'running'], ['waiting', 'waiting'], ['failed', 'failed'],
  ['cancelled', 'cancelled'], ['not-run', 'not run'],
];

// The status of a task from its instances (a `for` runs its tasks once per item).
function nodeStatus(steps) {
  if (!steps.length) return 'not-run';
  const has = (s) => steps.some((x) => x.status === s);
  if (has('running')) return 'running';
  if (has('waiting')) return 'waiting';
  if (has('failed')) return 'failed';
  if (steps.every((x) => x.status === 'succeeded')) return 'succeeded';
  return steps[steps.length - 1].status;
}

const statusClass = (s) => (LEGEND.some(([k]) => k === s) ? s : 'other');

function clip(text, n) { return text.length > n ? `${text.slice(0, n - 1)}…` : text; }

// The tree: the document's tasks plus any path the history has that the document lacks
// (an execution of an older revision), each under the nearest task whose path starts its own.
export function buildTree(rootLabel, doc, steps, plain = false) {
  const root = { path: '', name: rootLabel, kind: 'workflow', what: 'workflow', children: [], steps: [], root: true };
  const byPath = new Map([['', root]]);
  for (const t of documentTasks(doc)) {
    const node = { ...t, children: [], steps: [] };
    byPath.set(t.path, node);
    (byPath.get(t.parent) || root).children.push(node);
  }
  for (const s of steps || []) {
    let node = byPath.get(s.path);
    if (!node) {
      let parent = root;
      for (let cut = s.path.lastIndexOf('/'); cut > 0; cut = s.path.lastIndexOf('/', cut - 1)) {
        const found = byPath.get(s.path.slice(0, cut));
        if (found) { parent = found; break; }
      }
      const name = s.path.split('/').pop().replace(/~1/g, '/').replace(/~0/g, '~');
      node = { path: s.path, name, kind: 'task', what: s.function ? `call ${s.function}` : 'task', children: [], steps: [] };
      byPath.set(s.path, node);
      parent.children.push(node);
    }
    node.steps.push(s);
  }
  // Left to right: depth is the column; leaves take rows in order, a parent sits level
  // with the middle of its children.
  const order = [];
  let row = 0;
  let depth = 0;
  const place = (n, d, parent) => {
    n.depth = d;
    n.parentNode = parent;
    depth = Math.max(depth, d);
    order.push(n);
    if (!n.children.length) {
      n.row = row;
      row += 1;
    } else {
      n.children.forEach((c) => place(c, d + 1, n));
      n.row = (n.children[0].row + n.children[n.children.length - 1].row) / 2;
    }
    n.status = n.root || plain ? null : nodeStatus(n.steps);
  };
  place(root, 0, null);
  for (const n of order) {
    n.x = PAD + n.depth * (NODE_W + GAP_X);
    n.y = PAD + n.row * (NODE_H + GAP_Y);
  }
  return {
    root, nodes: order, plain,
    width: PAD * 2 + (depth + 1) * NODE_W + depth * GAP_X,
    height: PAD * 2 + row * NODE_H + Math.max(0, row - 1) * GAP_Y,
  };
}

function nodeSummary(n) {
  if (n.root) return n.status || '';
  if (n.steps.length > 1) {
    const counts = {};
    n.steps.forEach((s) => { counts[s.status] = (counts[s.status] || 0) + 1; });
    return `${n.steps.length} runs: ${Object.entries(counts).map(([s, c]) => `${c} ${s}`).join(', ')}`;
  }
  return n.status === 'not-run' ? 'not run' : n.status;
}

// The execution's (or the document's) tasks as an SVG tree; nodes take the focus (Tab, or
// the arrow keys along the tree) and show their details on focus or click.
export function TaskGraph({ tree, selected, onSelect, label }) {
  const box = useRef(null);
  const focusPath = (path) => {
    const el = box.current?.querySelector(`[data-path="${CSS.escape(path)}"]`);
    if (el) el.focus();
  };
  const keyDown = (e, n) => {
    const i = tree.nodes.indexOf(n);
    let next = null;
    if (e.key === 'ArrowDown') next = tree.nodes[i + 1];
    else if (e.key === 'ArrowUp') next = tree.nodes[i - 1];
    else if (e.key === 'ArrowLeft') next = n.parentNode;
    else if (e.key === 'ArrowRight') next = n.children[0];
    else if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); onSelect(n.path); return; }
    if (next) { e.preventDefault(); focusPath(next.path); }
  };
  const edges = tree.nodes.filter((n) => n.parentNode).map((n) => {
    const p = n.parentNode;
    const x1 = p.x + NODE_W;
    const y1 = p.y + NODE_H / 2;
    const x2 = n.x;
    const y2 = n.y + NODE_H / 2;
    const mx = (x1 + x2) / 2;
    return html`<path key=${`e${n.path}`} class=${`edge edge-${statusClass(n.status)}`}
      d=${`M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`} />`;
  });
  return html`<div class="graph" ref=${box}>
    ${tree.plain ? null : html`<ul class="legend" aria-label="Legend">${LEGEND.map(([k, text]) => html`
      <li key=${k}><span class=${`swatch swatch-${k}`} aria-hidden="true"></span>${text}</li>`)}</ul>`}
    <div class="graph-scroll">
      <svg role="group" aria-label=${label} width=${tree.width} height=${tree.height}
        viewBox=${`0 0 ${tree.width} ${tree.height}`} class="graph-svg">
        <g aria-hidden="true">${edges}</g>
        ${tree.nodes.map((n) => {
          const status = n.root ? 'root' : tree.plain ? 'plain' : statusClass(n.status);
          const summary = tree.plain ? '' : nodeSummary(n);
          const name = n.root ? n.name : `${n.name}: ${summary || n.what}`;
          return html`<g key=${n.path || 'root'} data-path=${n.path} data-status=${n.root ? undefined : n.status}
            class=${`gnode gnode-${status}${selected === n.path ? ' selected' : ''}`}
            transform=${`translate(${n.x},${n.y})`} tabindex="0" role="button"
            aria-pressed=${selected === n.path ? 'true' : 'false'}
            aria-label=${n.root ? `workflow ${n.name}${summary ? `: ${summary}` : ''}` : name}
            onFocus=${() => onSelect(n.path)} onClick=${() => onSelect(n.path)}
            onKeyDown=${(e) => keyDown(e, n)}>
            <title>${n.root ? n.name : `${n.name} (${n.what})${summary ? `: ${summary}` : ''}`}</title>
            <rect width=${NODE_W} height=${NODE_H} rx="7" ry="7" />
            <text x="10" y="19" class="gnode-name">${clip(n.name, summary && !n.root ? 17 : 25)}</text>
            ${summary && !n.root ? html`<text x=${NODE_W - 8} y="19" class="gnode-status">${clip(summary, 14)}</text>` : null}
            <text x="10" y="36" class="gnode-sub">${clip(n.root ? (summary || 'workflow') : n.what, 31)}</text>
          </g>`;
        })}
      </svg>
    </div>
  </div>`;
}

function taskLink(s) {
  if (!s.request_id) return '—';
  if (!s.function) return html`<code>${s.request_id}</code>`;
  return html`<a class="mono" href=${href('/tasks', { function: s.function, task: s.request_id })}
    title="the invocation's task, with its logs">${s.request_id.slice(0, 12)}…</a>`;
}

function NodeDetail({ node }) {
  if (!node) return html`<p class="muted">Focus or click a task in the graph to see its details.</p>`;
  if (node.root) return html`<p>The workflow <strong>${node.name}</strong>: its tasks are drawn to the right, each under the task that holds it.</p>`;
  return html`<div>
    <h3><span class="mono">${node.name}</span> <${Badge} tone=${node.status === 'not-run' ? 'muted' : undefined}>${node.status === 'not-run' ? 'not run' : node.status}<//></h3>
    <p class="muted small"><code>${node.path}</code> · ${node.what}</p>
    ${node.steps.length === 0 ? html`<p class="muted">This execution has not run this task.</p>` : html`
      <${Table} label=${`Runs of ${node.name}`} rows=${node.steps} rowKey=${(s) => s.key} columns=${STEP_COLUMNS} />`}
  </div>`;
}

const STEP_COLUMNS = [
  { label: 'Key', render: (s) => html`<code>${s.key}</code>` },
  { label: 'Status', render: (s) => html`<${Status} s=${s.status} />` },
  { key: 'attempts', label: 'Attempts', cls: 'num' },
  { label: 'Started', render: (s) => fmtTime(s.started_at) },
  { label: 'Duration', cls: 'num', render: (s) => (s.started_at ? fmtSpan(s.started_at, s.ended_at) : '—') },
  { label: 'Function', render: (s) => (s.function ? `${s.function}${s.version ? `:${s.version}` : ''}` : '—') },
  { label: 'Task', render: taskLink },
  { label: 'Error', render: (s) => (s.error ? html`<span class="error-text">${problemText(s.error)}</span>` : '—') },
];

// Problem details (RFC 9457, as the workflow engine reports errors) in one line.
function problemText(e) {
  if (!e) return '';
  const title = e.title || e.code || e.type || 'error';
  const detail = e.detail || e.message;
  return `${title}${e.status ? ` (${e.status})` : ''}${detail ? `: ${detail}` : ''}`;
}

// ---- pages -----------------------------------------------------------------------------

function ExecutionsTable({ rows, showWorkflow }) {
  const columns = [
    { label: 'ID', render: (e) => html`<a class="mono" href=${href(`/executions/${e.id}`)}>${e.id}</a>` },
    ...(showWorkflow ? [{ label: 'Workflow', render: (e) => html`<a href=${href(`/workflows/${e.workflow}`)}>${e.workflow}</a>` }] : []),
    { label: 'Status', render: (e) => html`<${Status} s=${e.status} />` },
    { key: 'revision', label: 'Revision', cls: 'num' },
    { label: 'Started', render: (e) => html`<span title=${fmtTime(e.created_at)}>${fmtAgo(e.created_at)}</span>` },
    { label: 'Duration', cls: 'num', render: (e) => fmtSpan(e.created_at, e.finished_at) },
    { label: 'Error', render: (e) => (e.error ? html`<span class="error-text">${problemText(e.error)}</span>` : '—') },
  ];
  return html`<${Table} label="Executions" columns=${columns} rows=${rows} rowKey=${(e) => e.id}
    empty="No executions." />`;
}

export function Workflows() {
  const list = useCursorList((cursor) => api.get('/workflows', { limit: 100, cursor }), 'workflows', 10000, []);
  const recent = usePoll(() => api.get('/executions', { limit: 10 }), 5000, []);
  // The list leaves documents out: each row's task count comes from its own GET, once per
  // revision.
  const [counts, setCounts] = useState({});
  const asked = useRef(new Set());
  useEffect(() => {
    for (const w of list.rows) {
      const k = `${w.name}@${w.revision}`;
      if (asked.current.has(k)) continue;
      asked.current.add(k);
      api.get(wf(w.name)).then(
        (full) => setCounts((c) => ({ ...c, [k]: documentTasks(full.document).length })),
        () => setCounts((c) => ({ ...c, [k]: null })),
      );
    }
  }, [list.rows.map((w) => `${w.name}@${w.revision}`).join(',')]);
  const columns = [
    { label: 'Name', render: (w) => html`<a href=${href(`/workflows/${w.name}`)}><strong>${w.name}</strong></a>` },
    { label: 'Version', render: (w) => html`${w.namespace}/${w.version}` },
    { key: 'revision', label: 'Revision', cls: 'num' },
    { label: 'Tasks', cls: 'num', render: (w) => counts[`${w.name}@${w.revision}`] ?? '…' },
    { label: 'Updated', render: (w) => html`<span title=${fmtTime(w.updated_at)}>${fmtAgo(w.updated_at)}</span>` },
    { label: 'Executions', render: (w) => html`<a href=${`${href(`/workflows/${w.name}`)}`}
        aria-label=${`Executions of ${w.name}`}>executions</a>` },
  ];
  return html`<${Page} title="Workflows" subtitle="Serverless Workflow documents deployed on this server.">
    <${Card} title="Workflows">
      <${ErrorBox} error=${list.error} retry=${list.reload} />
      ${list.loading && !list.data ? html`<${Loading} what="workflows" />` : html`
        <${Table} label="Workflows" columns=${columns} rows=${list.rows} rowKey=${(w) => w.name}
          empty="No workflows yet: deploy one with ember workflow deploy FILE." />
        <${LoadMore} list=${list} what="workflows" />`}
    <//>
    <${Card} title="Recent executions">
      <${ErrorBox} error=${recent.error} retry=${recent.reload} />
      ${recent.loading && !recent.data ? html`<${Loading} what="executions" />`
        : html`<${ExecutionsTable} rows=${recent.data?.executions || []} showWorkflow />`}
    <//>
  <//>`;
}

function DocumentGraph({ w }) {
  const [selected, setSelected] = useState(null);
  const tree = useMemo(() => buildTree(w.name, w.document, [], true), [w.name, w.revision]);
  const node = tree.nodes.find((n) => n.path === selected);
  return html`
    <${Card} title="Tasks">
      <${TaskGraph} tree=${tree} selected=${selected} onSelect=${setSelected} label=${`Tasks of ${w.name}`} />
      <p class="node-detail" aria-live="polite">${node && !node.root ? html`<strong class="mono">${node.name}</strong> <span class="muted">${node.what} · <code>${node.path}</code></span>`
        : html`<span class="muted">Focus or click a task to see what it does.</span>`}</p>
    <//>`;
}

function Definition({ w }) {
  const [format, setFormat] = useState('yaml');
  return html`
    <${Card} title="Definition">
      <${Tabs} tabs=${[{ key: 'yaml', label: 'YAML' }, { key: 'json', label: 'JSON' }]} current=${format} onSelect=${setFormat} />
      <pre class="definition" aria-label=${`Definition of ${w.name} as ${format.toUpperCase()}`}>${format === 'yaml' ? toYaml(w.document) : fmtJson(w.document)}</pre>
    <//>`;
}

export function WorkflowPage({ params, query }) {
  const name = params.name;
  const status = query.status || '';
  const w = usePoll(() => api.get(wf(name)), 0, [name]);
  const list = useCursorList(
    (cursor) => api.get(`${wf(name)}/executions`, { status, limit: 50, cursor }), 'executions', 3000, [name, status],
  );
  const d = w.data;
  return html`<${Page} title=${name}
      subtitle=${d ? `${d.namespace}/${d.name} ${d.version} · revision ${d.revision} · updated ${fmtTime(d.updated_at)}` : 'Workflow'}
      actions=${html`<a href="#/workflows">All workflows</a>`}>
    <${ErrorBox} error=${w.error} retry=${w.reload} />
    ${w.loading && !d ? html`<${Loading} what="the workflow" />` : null}
    ${d ? html`<${DocumentGraph} w=${d} />` : null}
    <${Card} title="Executions" id="executions">
      <form class="filters" onSubmit=${(e) => e.preventDefault()} aria-label="Execution filters">
        <div class="field"><label for="exec-status">Status</label>
          <select id="exec-status" value=${status} onChange=${(e) => go(`/workflows/${name}`, { status: e.target.value })}>
            <option value="">Any status</option>
            ${EXECUTION_STATUSES.map((s) => html`<option value=${s}>${s}</option>`)}
          </select></div>
      </form>
      <${ErrorBox} error=${list.error} retry=${list.reload} />
      ${list.loading && !list.data ? html`<${Loading} what="executions" />` : html`
        <${ExecutionsTable} rows=${list.rows} />
        <${LoadMore} list=${list} what="executions" />`}
    <//>
    ${d ? html`<${Definition} w=${d} />` : null}
  <//>`;
}

function Progress({ p }) {
  const pct = p.total ? Math.round((100 * p.done) / p.total) : 0;
  return html`<div class="progress-row">
    <div class="row"><code>${p.key}</code><span class="muted">${p.done} of ${p.total} done${p.failed ? `, ${p.failed} failed` : ''}</span></div>
    <progress max=${p.total || 1} value=${p.done} aria-label=${`${p.key}: ${pct} %`}>${pct} %</progress>
    ${p.failed_items.length ? html`<div class="muted small">failed items: ${p.failed_items.slice(0, 50).join(', ')}${p.failed_items.length > 50 ? '…' : ''}</div>` : null}
  </div>`;
}

export function ExecutionPage({ params }) {
  const id = params.id;
  const [live, setLive] = useState(true);
  const ex = usePoll(() => api.get(`/executions/${encodeURIComponent(id)}`), live ? 1000 : 0, [id]);
  const e = ex.data;
  useEffect(() => { if (e && !ACTIVE.has(e.status)) setLive(false); }, [e?.status]);
  const doc = usePoll(() => (e ? api.get(wf(e.workflow)) : Promise.resolve(null)), 0, [e?.workflow]);
  const [selected, setSelected] = useState(null);
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  const steps = e?.history || [];
  const stepsKey = steps.map((s) => `${s.key}:${s.status}:${s.attempts}`).join('|');
  const tree = useMemo(
    () => (e ? buildTree(e.workflow, doc.data?.document, steps) : null),
    [e?.workflow, e?.status, doc.data?.revision, stepsKey],
  );
  if (tree) tree.root.status = e.status;
  const node = tree?.nodes.find((n) => n.path === selected);
  const cancel = async () => {
    setAsking(false);
    setBusy(true);
    try {
      const out = await api.post(`/executions/${encodeURIComponent(id)}/cancel`);
      toast(`Execution ${out.status === 'cancelled' ? 'cancelled' : `is ${out.status}`}`);
      ex.reload();
    } catch (err) {
      toast(`Cancel failed: ${err.message}`, 'bad');
    } finally {
      setBusy(false);
    }
  };
  const older = doc.data && e && doc.data.revision !== e.revision;
  return html`<${Page} title="Execution" subtitle=${html`<code>${id}</code>`}
      actions=${html`${e && ACTIVE.has(e.status) && can('invoke') ? html`<button class="danger" disabled=${busy}
        onClick=${() => setAsking(true)}>Cancel execution</button>` : null}
        ${e ? html`<a href=${href(`/workflows/${e.workflow}`)}>${e.workflow}</a>` : null}`}>
    <${ErrorBox} error=${ex.error} retry=${ex.reload} />
    ${ex.loading && !e ? html`<${Loading} what="the execution" />` : null}
    ${e ? html`
      <dl class="facts card">
        <dt>Status</dt><dd><${Status} s=${e.status} />${ACTIVE.has(e.status) ? html` <span class="muted small">updating every second</span>` : null}</dd>
        <dt>Workflow</dt><dd><a href=${href(`/workflows/${e.workflow}`)}>${e.workflow}</a> revision ${e.revision}</dd>
        <dt>Started</dt><dd>${fmtTime(e.created_at)}</dd>
        <dt>Finished</dt><dd>${fmtTime(e.finished_at)}</dd>
        <dt>Duration</dt><dd>${fmtSpan(e.created_at, e.finished_at)}</dd>
        ${e.reruns ? html`<dt>Reruns</dt><dd>${e.reruns}</dd>` : null}
        ${e.parent ? html`<dt>Parent</dt><dd><a href=${href(`/executions/${e.parent}`)}>${e.parent}</a></dd>` : null}
      </dl>
      ${e.error ? html`<div class="error" role="alert"><strong>${problemText(e.error)}</strong>
        <details><summary>problem details</summary><pre>${fmtJson(e.error)}</pre></details></div>` : null}
      <${Card} title="Task graph">
        ${doc.error ? html`<p class="muted small">The workflow's document cannot be read (${doc.error.message}): the graph shows the tasks that ran.</p>` : null}
        ${older ? html`<p class="muted small">This execution ran revision ${e.revision}; the graph follows the latest document (revision ${doc.data.revision}) and adds the tasks that ran.</p>` : null}
        <${TaskGraph} tree=${tree} selected=${selected} onSelect=${setSelected} label=${`Tasks of execution ${id}`} />
        <div class="node-detail" aria-live="polite"><${NodeDetail} node=${node} /></div>
      <//>
      ${e.progress.length ? html`<${Card} title="Loops">${e.progress.map((p) => html`<${Progress} key=${p.key} p=${p} />`)}<//>` : null}
      <div class="grid io-grid">
        <${Card} title="Input"><pre>${fmtJson(e.input)}</pre><//>
        <${Card} title="Output">${ACTIVE.has(e.status) && e.output == null ? html`<p class="muted">not yet</p>` : html`<pre>${fmtJson(e.output)}</pre>`}<//>
      </div>
      <${Card} title="History">
        <${Table} label="Steps" rows=${steps} rowKey=${(s) => s.key} columns=${STEP_COLUMNS} empty="No task has started yet." />
      <//>` : null}
    <${Confirm} open=${asking} title="Cancel this execution?" confirmLabel="Cancel execution" danger
      onConfirm=${cancel} onCancel=${() => setAsking(false)}>
      <p>Its running function steps are stopped and its timers and listens dropped.</p><//>
  <//>`;
}
