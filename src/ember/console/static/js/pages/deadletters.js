// Dead letters: async events that failed for good (retries exhausted, too old, a system
// failure) with their payload and reason; redriving one queues it again as a fresh event.
import { html, useState, useEffect, useRef } from '../lib.js';
import { api, can } from '../api.js';
import {
  Page, Card, Table, ErrorBox, Loading, Confirm, toast, fmtTime, fmtAgo, href, go,
} from '../ui.js';
import { Body, Problem, FunctionSelect, useCursorList, LoadMore } from './tasks.js';

const PAGE = 50;

function reasonText(reason) {
  if (!reason) return '—';
  const parts = [reason.condition, reason.code].filter(Boolean).join(' · ');
  return html`<strong>${parts || 'failed'}</strong>${reason.message ? html`: ${reason.message}` : null}`;
}

function Detail({ id, onClose, onRedriven }) {
  const letter = useDeadLetter(id);
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  const head = useRef(null);
  useEffect(() => { head.current?.focus(); }, [id]);
  const d = letter.data;
  const redrive = async () => {
    setAsking(false);
    setBusy(true);
    try {
      const task = await api.post(`/dead-letters/${encodeURIComponent(id)}/redrive`);
      toast(`Redriven: task ${task.id} is ${task.status} again`);
      onRedriven(task);
    } catch (err) {
      toast(`Redrive failed: ${err.message}`, 'bad');
    } finally {
      setBusy(false);
    }
  };
  return html`<section class="card" aria-labelledby="dl-detail-title">
    <header class="card-head"><h2 id="dl-detail-title" tabindex="-1" ref=${head}>Dead letter <code>${id}</code></h2>
      <div class="actions">
        ${d && can('write') ? html`<button class="primary" disabled=${busy} onClick=${() => setAsking(true)}>Redrive</button>` : null}
        <button onClick=${onClose}>Close</button></div></header>
    <${ErrorBox} error=${letter.error} retry=${letter.reload} />
    ${!d ? (letter.loading ? html`<${Loading} what="the dead letter" />` : null) : html`
      <dl class="facts">
        <dt>Function</dt><dd>${d.function}:${d.qualifier}</dd>
        <dt>Task</dt><dd><a href=${href('/tasks', { function: d.function, task: d.id })}>${d.id}</a></dd>
        <dt>Attempts</dt><dd>${d.reason?.attempts ?? '—'}</dd>
        <dt>Enqueued</dt><dd>${fmtTime(d.enqueued_at)}</dd>
        <dt>Dead since</dt><dd>${fmtTime(d.dead_at)} (${fmtAgo(d.dead_at)})</dd>
      </dl>
      <h3>Reason</h3>
      <div class="error"><${Problem} error=${d.reason} /></div>
      <h3>Payload <span class="muted small">${d.content_type}</span></h3>
      <${Body} body=${d.payload} contentType=${d.content_type} />`}
    <${Confirm} open=${asking} title="Redrive this event?" confirmLabel="Redrive"
      onConfirm=${redrive} onCancel=${() => setAsking(false)}>
      <p>The event of task <code>${id}</code> is queued again for <code>${d?.function}</code>, as a fresh
        event with its retries; the dead letter goes away.</p><//>
  </section>`;
}

// One dead letter, read once (it does not change until redriven).
function useDeadLetter(id) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const load = async () => {
    setState((s) => ({ ...s, loading: true }));
    try {
      setState({ data: await api.get(`/dead-letters/${encodeURIComponent(id)}`), error: null, loading: false });
    } catch (error) {
      setState({ data: null, error, loading: false });
    }
  };
  useEffect(() => { load(); }, [id]);
  return { ...state, reload: load };
}

export default function DeadLetters({ query }) {
  const name = query.function || '';
  const selected = query.id || '';
  const set = (changes) => go('/dead-letters', { function: name, id: selected, ...changes });
  const list = useCursorList(
    (cursor) => api.get('/dead-letters', { function: name, limit: PAGE, cursor }),
    'dead_letters', 5000, [name],
  );
  const columns = [
    { label: 'Task', render: (d) => html`<a class="mono" href=${href('/dead-letters', { function: name, id: d.id })}
        aria-current=${d.id === selected ? 'true' : undefined}>${d.id}</a>` },
    { label: 'Function', render: (d) => html`<a href=${href(`/functions/${d.function}`)}>${d.function}</a>` },
    { label: 'Reason', render: (d) => reasonText(d.reason) },
    { label: 'Attempts', cls: 'num', render: (d) => d.reason?.attempts ?? '—' },
    { label: 'When', render: (d) => html`<span title=${fmtTime(d.dead_at)}>${fmtAgo(d.dead_at)}</span>` },
  ];
  return html`<${Page} title="Dead letters"
      subtitle="Async events that failed for good. Redrive one to queue it again.">
    <form class="filters" onSubmit=${(e) => e.preventDefault()} aria-label="Dead letter filters">
      <${FunctionSelect} id="dl-function" value=${name} any onChange=${(v) => set({ function: v, id: '' })} />
    </form>
    ${selected ? html`<${Detail} key=${selected} id=${selected} onClose=${() => set({ id: '' })}
      onRedriven=${() => { set({ id: '' }); list.reload(); }} />` : null}
    <${Card} title="Dead letters">
      <${ErrorBox} error=${list.error} retry=${list.reload} />
      ${list.loading && !list.data ? html`<${Loading} what="dead letters" />` : html`
        <${Table} label="Dead letters" columns=${columns} rows=${list.rows} rowKey=${(d) => d.id}
          empty=${name ? `No dead letter of ${name}.` : 'No dead letters: every async event ended well or is still being tried.'} />
        <${LoadMore} list=${list} what="dead letters" />`}
    <//>
  <//>`;
}
