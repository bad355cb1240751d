// Invoke a function from the console: a JSON payload, a qualifier, sync or async; the
// answer with Ember's X-Ember-* headers, then the request's own log lines (or, for an async
// call, the task until it ends).
import { html, useState, useEffect, useRef } from '../lib.js';
import { api, can, send, fn, session } from '../api.js';
import { Badge, ErrorBox, Loading, Table, fmtJson, fmtMs, fmtTime, href } from '../ui.js';
import { LogLines } from './logs.js';

const FINAL = ['succeeded', 'failed', 'stopped', 'expired'];
const LOG_TRIES = 6;       // a request's lines may land just after its answer
const LOG_GAP_MS = 400;
const TASK_WAIT_S = 10;    // each GET /tasks/{id}?wait_s= holds this long
const TASK_POLLS = 30;

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

// The payload as JSON, or a message that says where it is wrong.
export function parsePayload(text) {
  if (!text.trim()) return { error: 'The payload is empty: enter a JSON value, for example {} or "text".' };
  try {
    return { value: JSON.parse(text) };
  } catch (e) {
    return { error: `The payload is not valid JSON: ${e.message}` };
  }
}

function statusTone(status) {
  if (status >= 200 && status < 300) return 'ok';
  if (status === 429 || status === 409) return 'warn';
  return 'bad';
}

// An answer's body: pretty JSON when it is JSON, else its text.
function readBody(text, type) {
  if (type.includes('json') || /^\s*[[{"]/.test(text)) {
    try { return { json: JSON.parse(text), text: fmtJson(JSON.parse(text)) }; } catch { /* text */ }
  }
  return { json: null, text };
}

// The X-Ember-* headers of an answer, as rows of the headers table.
function emberHeaders(headers, roundTripMs) {
  const rows = [];
  const add = (label, header, show) => {
    const v = headers.get(header);
    if (v !== null) rows.push({ label, header, value: show ? show(v) : v });
  };
  add('Request id', 'X-Ember-Request-Id');
  add('Version', 'X-Ember-Version');
  add('Cold start', 'X-Ember-Cold-Start', (v) => (v === 'true' ? 'yes' : 'no'));
  add('Init', 'X-Ember-Init-Ms', (v) => fmtMs(Number(v)));
  add('Duration', 'X-Ember-Duration-Ms', (v) => fmtMs(Number(v)));
  rows.push({ label: 'Round trip', header: 'measured by the browser', value: fmtMs(roundTripMs) });
  return rows;
}

function HeadersTable({ rows }) {
  return html`<${Table} label="Response headers" rows=${rows} rowKey=${(r) => r.label}
    columns=${[
      { key: 'label', label: 'Field' },
      { key: 'value', label: 'Value', render: (r) => html`<span class="mono">${r.value}</span>` },
      { key: 'header', label: 'Header', render: (r) => html`<span class="muted small mono">${r.header}</span>` },
    ]} />`;
}

// An error body {"error": {code, message, details}}: the message first, the traceback
// (of a handler that raised) below.
function ErrorAnswer({ error }) {
  const details = error.details || {};
  const { traceback, ...rest } = details;
  return html`<div class="error" role="alert">
    <strong>${error.code || 'Error'}</strong>: ${error.message || ''}
    ${error.code === 'FunctionError' ? html`<div class="small">The handler raised: this is the function's error, not Ember's.</div>` : null}
  </div>
  ${traceback ? html`<details open class="traceback"><summary>Traceback</summary><pre>${traceback}</pre></details>` : null}
  ${Object.keys(rest).length ? html`<details><summary>Error details</summary><pre>${fmtJson(rest)}</pre></details>` : null}`;
}

// The lines logged under one request id, polled a few times while there are none yet.
function RequestLogs({ name, requestId, tries = LOG_TRIES }) {
  const [state, setState] = useState({ lines: null, error: null, polling: true });
  const [again, setAgain] = useState(0);
  useEffect(() => {
    let alive = true;
    setState({ lines: null, error: null, polling: true });
    (async () => {
      for (let i = 0; i < tries && alive; i += 1) {
        try {
          const out = await api.get(`${fn(name)}/logs`, { request_id: requestId, limit: 1000 });
          if (!alive) return;
          setState({ lines: out.logs, error: null, polling: !out.logs.length && i < tries - 1 });
          if (out.logs.length) return;
        } catch (error) {
          if (alive) setState((s) => ({ ...s, error, polling: false }));
          return;
        }
        await sleep(LOG_GAP_MS);
      }
    })();
    return () => { alive = false; };
  }, [name, requestId, again]);
  const { lines, error, polling } = state;
  return html`<section class="card" aria-label="Request logs">
    <header class="card-head"><h2>Request logs</h2>
      <div class="actions">
        <button type="button" onClick=${() => setAgain(again + 1)}>Reload</button>
        <a href=${href(`/functions/${name}`, { tab: 'logs', request_id: requestId })}>Open in Logs</a>
      </div></header>
    <${ErrorBox} error=${error} retry=${() => setAgain(again + 1)} />
    ${lines && lines.length ? html`<${LogLines} lines=${lines} label="Log lines of the request" />`
      : polling ? html`<${Loading} what="the request's log lines" />`
        : error ? null : html`<p class="muted">The request logged no lines.</p>`}
  </section>`;
}

// An async call's task, waited on (GET /tasks/{id}?wait_s=) until it ends.
function TaskProgress({ name, accepted, onFinal }) {
  const [task, setTask] = useState(accepted.task);
  const [error, setError] = useState(null);
  const [again, setAgain] = useState(0);
  const id = accepted.request_id;
  useEffect(() => {
    let alive = true;
    setError(null);
    (async () => {
      let current = accepted.task;
      for (let i = 0; i < TASK_POLLS && alive && !FINAL.includes(current.status); i += 1) {
        try {
          current = await api.get(`/tasks/${encodeURIComponent(id)}`, { wait_s: TASK_WAIT_S });
        } catch (err) {
          if (alive) setError(err);
          return;
        }
        if (alive) setTask(current);
      }
      if (alive && FINAL.includes(current.status)) onFinal();
    })();
    return () => { alive = false; };
  }, [id, again]);
  const done = FINAL.includes(task.status);
  const result = task.result || {};
  return html`<div class="task-progress">
    <dl class="facts">
      <dt>Request id</dt><dd class="mono">${id}</dd>
      <dt>Task</dt><dd><a href=${href('/tasks', { function: name, task: id })}>Open the task</a>
        ${accepted.deduplicated ? html` <${Badge} tone="info">deduplicated<//>` : null}</dd>
      <dt>Status</dt><dd aria-live="polite"><${Badge}>${task.status}<//>
        ${done ? null : html` <span class="muted small">waiting for the task to end…</span>`}</dd>
      <dt>Attempts</dt><dd>${task.attempts}</dd>
      ${task.version ? html`<dt>Version</dt><dd>${task.version}</dd>` : null}
      ${task.finished_at ? html`<dt>Finished</dt><dd>${fmtTime(task.finished_at)} UTC</dd>` : null}
    </dl>
    <${ErrorBox} error=${error} retry=${() => setAgain(again + 1)} />
    ${done && task.error ? html`<${ErrorAnswer} error=${task.error} />` : null}
    ${done && task.result ? html`<h3>Result</h3><pre aria-label="Task result">${
      'value' in result ? fmtJson(result.value) : 'text' in result ? result.text
        : `(binary, base64) ${result.base64}`}</pre>` : null}
  </div>`;
}

function Answer({ name, answer, onFinal }) {
  if (answer.kind === 'async') {
    return html`<section class="card" aria-label="Response">
      <header class="card-head"><h2>Response <${Badge} tone=${statusTone(answer.status)}>${answer.status}<//></h2></header>
      ${answer.accepted ? html`<${TaskProgress} name=${name} accepted=${answer.accepted} onFinal=${onFinal} />`
        : html`<${ErrorAnswer} error=${answer.body.json?.error || { message: answer.body.text }} />`}
    </section>`;
  }
  const error = answer.body.json && answer.body.json.error;
  return html`<section class="card" aria-label="Response">
    <header class="card-head"><h2>Response <${Badge} tone=${statusTone(answer.status)}>${answer.status}<//></h2>
      <span class="muted small">${answer.type || 'no content type'}</span></header>
    ${error && answer.status >= 400 ? html`<${ErrorAnswer} error=${error} />` : null}
    <${HeadersTable} rows=${answer.headers} />
    <h3>Body</h3>
    <pre aria-label="Response body">${answer.body.text === '' ? '(empty)' : answer.body.text}</pre>
  </section>`;
}

export function InvokePanel({ name, qualifiers }) {
  const choices = qualifiers && qualifiers.length ? qualifiers : ['latest'];
  const [payload, setPayload] = useState('{\n  \n}');
  const [qualifier, setQualifier] = useState(choices[0]);
  const [mode, setMode] = useState('sync');
  const [idem, setIdem] = useState('');
  const [problem, setProblem] = useState(null);
  const [busy, setBusy] = useState(false);
  const [answer, setAnswer] = useState(null);
  const [final, setFinal] = useState(false);
  const run = useRef(0);

  useEffect(() => { if (!choices.includes(qualifier)) setQualifier(choices[0]); }, [choices.join(',')]);
  useEffect(() => () => { run.current += 1; }, []);

  const format = () => {
    const out = parsePayload(payload);
    if (out.error) { setProblem({ message: out.error }); return; }
    setProblem(null);
    setPayload(fmtJson(out.value));
  };

  const invoke = async () => {
    if (busy) return;
    const out = parsePayload(payload);
    if (out.error) { setProblem({ message: out.error }); return; }
    setProblem(null);
    run.current += 1;
    const mine = run.current;
    setBusy(true);
    setAnswer(null);
    setFinal(false);
    const headers = {};
    if (mode === 'async') {
      headers['X-Ember-Invocation-Type'] = 'async';
      if (idem.trim()) headers['X-Ember-Idempotency-Key'] = idem.trim();
    }
    const started = performance.now();
    try {
      const response = await send('POST', `${fn(name)}/invoke`, { params: { qualifier }, body: out.value, headers });
      const text = await response.text();
      if (mine !== run.current) return;
      const type = response.headers.get('content-type') || '';
      const body = readBody(text, type);
      const requestId = response.headers.get('X-Ember-Request-Id');
      if (mode === 'async') {
        const accepted = response.status === 202 && body.json && body.json.task ? body.json : null;
        setAnswer({ kind: 'async', status: response.status, body, accepted, requestId });
      } else {
        setAnswer({
          kind: 'sync', status: response.status, type, body, requestId,
          headers: emberHeaders(response.headers, performance.now() - started),
        });
      }
    } catch (err) {
      if (mine === run.current) setProblem(err);
    } finally {
      if (mine === run.current) setBusy(false);
    }
  };

  const onKey = (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); invoke(); }
  };
  return html`<div class="invoke-panel">
    <form class="card" aria-label="Invoke" onSubmit=${(e) => { e.preventDefault(); invoke(); }}>
      <div class="field">
        <div class="row"><label for="invoke-payload">Payload</label>
          <span class="muted small">JSON, the handler's event · Ctrl+Enter invokes</span>
          <span class="spacer"></span>
          <button type="button" onClick=${format}>Format</button></div>
        <textarea id="invoke-payload" rows="8" spellcheck="false" value=${payload}
          aria-invalid=${problem && !problem.code ? 'true' : undefined}
          onInput=${(e) => setPayload(e.target.value)} onKeyDown=${onKey}></textarea>
      </div>
      <div class="filters">
        <div class="field"><label for="invoke-qualifier">Qualifier</label>
          <select id="invoke-qualifier" value=${qualifier} onChange=${(e) => setQualifier(e.target.value)}>
            ${choices.map((q) => html`<option value=${q}>${q}</option>`)}
          </select></div>
        <div class="field"><label for="invoke-mode">Mode</label>
          <select id="invoke-mode" value=${mode} onChange=${(e) => setMode(e.target.value)}>
            <option value="sync">Sync</option>
            <option value="async">Async</option>
          </select></div>
        ${mode === 'async' ? html`<div class="field"><label for="invoke-idem">Idempotency key</label>
          <input id="invoke-idem" placeholder="optional" value=${idem} onInput=${(e) => setIdem(e.target.value)} /></div>` : null}
        <button type="submit" class="primary" disabled=${busy || !can('invoke')}>${busy ? 'Invoking…' : 'Invoke'}</button>
      </div>
      ${can('invoke') ? null : html`<p class="muted small">This session's key (role ${session.role}) may not invoke functions.</p>`}
      <${ErrorBox} error=${problem} />
    </form>
    ${busy ? html`<${Loading} what="the answer" />` : null}
    ${answer ? html`<${Answer} name=${name} answer=${answer} onFinal=${() => setFinal(true)} />` : null}
    ${answer && answer.requestId && (answer.kind === 'sync' || final)
      ? html`<${RequestLogs} key=${answer.requestId} name=${name} requestId=${answer.requestId} />` : null}
  </div>`;
}

export default InvokePanel;
