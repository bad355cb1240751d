// A function's log lines: filters (level, time, text, request), and a live tail that
// follows GET /functions/{name}/logs with its next_cursor once a second.
import { html, useState, useEffect, useRef, useCallback } from '../lib.js';
import { api, fn } from '../api.js';
import { ErrorBox, Loading, fmtTime } from '../ui.js';

export const LEVELS = ['DEBUG', 'INFO', 'WARNING', 'ERROR'];
const SINCE = [['300', 'Last 5 min'], ['900', 'Last 15 min'], ['3600', 'Last 1 h'],
  ['86400', 'Last 24 h'], ['', 'All time']];
const PAGE = 500;        // lines a filtered load shows (the newest ones)
const KEEP = 2000;       // lines the live tail keeps before it drops the oldest
const TAIL_MS = 1000;
// A line of the cluster: ids are numbered per node.
const lineKey = (l) => `${l.node || ''}/${l.id}`;

// A log time in UTC with milliseconds (lines of one request land within a few ms).
export function fmtLogTime(ts) {
  const ms = String(Math.floor((ts % 1) * 1000)).padStart(3, '0');
  return `${fmtTime(Math.floor(ts))}.${ms}`;
}

// Log records as lines in the dark log box. onRequest(id), when given, makes each line's
// request id a button that filters by it.
export function LogLines({ lines, label, onRequest, boxRef, onScroll }) {
  return html`<div class="logs" role="log" aria-label=${label} tabindex="0" ref=${boxRef}
      onScroll=${onScroll}>
    ${lines.map((l) => html`<div key=${lineKey(l)} class=${`line lvl-${l.level}`}>
      <span class="ts">${fmtLogTime(l.ts)}</span>
      <span class="lvl">${l.level}</span>
      ${l.request_id ? (onRequest
        ? html`<button type="button" class="rid" title=${`show only request ${l.request_id}`}
            aria-label=${`Filter by request ${l.request_id}`}
            onClick=${() => onRequest(l.request_id)}>${l.request_id.slice(0, 8)}</button>`
        : html`<span class="rid" title=${l.request_id}>${l.request_id.slice(0, 8)}</span>`)
        : html`<span class="rid">—</span>`}
      <span class="ver" title="version">${/^\d+$/.test(l.version) ? `v${l.version}` : l.version}</span>
      <span class="msg">${l.line}</span>
    </div>`)}
  </div>`;
}

// Waits `ms` unless the input changes again first: filters reload when typing pauses.
function useDebounced(value, ms) {
  const [out, setOut] = useState(value);
  useEffect(() => {
    const t = setTimeout(() => setOut(value), ms);
    return () => clearTimeout(t);
  }, [value, ms]);
  return out;
}

// The page's ?request_id= (the Invoke tab links here with one) when no requestId is given.
function hashRequestId() {
  const q = window.location.hash.split('?')[1] || '';
  return new URLSearchParams(q).get('request_id') || '';
}

export function LogsPanel({ name, requestId }) {
  const [level, setLevel] = useState('');
  const [since, setSince] = useState('');
  const [grepText, setGrep] = useState('');
  const [ridText, setRid] = useState(requestId ?? hashRequestId());
  const [tail, setTail] = useState(false);
  const [lines, setLines] = useState([]);
  const [error, setError] = useState(null);
  const [loading, setLoading] = useState(true);
  const [dropped, setDropped] = useState(0);
  const [stuck, setStuck] = useState(true);
  const grep = useDebounced(grepText.trim(), 300);
  const rid = useDebounced(ridText.trim(), 300);
  const box = useRef(null);
  const cursor = useRef(null);
  const sinceAt = useRef(null);
  const generation = useRef(0);
  const stick = useRef(true);
  const loadingNow = useRef(false);

  useEffect(() => { if (requestId !== undefined) setRid(requestId || ''); }, [requestId]);

  const params = (extra) => ({
    level: level || undefined, grep: grep || undefined, request_id: rid || undefined,
    since: sinceAt.current ?? undefined, ...extra,
  });

  // A fresh load (the newest PAGE lines) whenever a filter changes.
  const load = useCallback(async () => {
    generation.current += 1;
    const mine = generation.current;
    sinceAt.current = since ? Date.now() / 1000 - Number(since) : null;
    setLoading(true);
    loadingNow.current = true;
    try {
      const out = await api.get(`${fn(name)}/logs`, params({ limit: PAGE }));
      if (mine !== generation.current) return;
      cursor.current = out.next_cursor;
      stick.current = true;
      setStuck(true);
      setLines(out.logs);
      setDropped(0);
      setError(null);
    } catch (err) {
      if (mine === generation.current) setError(err);
    } finally {
      if (mine === generation.current) { setLoading(false); loadingNow.current = false; }
    }
  }, [name, level, since, grep, rid]);

  useEffect(() => { load(); }, [load]);

  // The live tail: lines after the cursor, appended; the oldest go beyond KEEP.
  useEffect(() => {
    if (!tail) return undefined;
    let busy = false;
    let alive = true;
    const tick = async () => {
      if (busy || document.hidden || loadingNow.current) return;
      busy = true;
      const mine = generation.current;
      try {
        const out = await api.get(`${fn(name)}/logs`, params(
          cursor.current ? { cursor: cursor.current, limit: 1000 } : { limit: PAGE }));
        if (!alive || mine !== generation.current) return;
        cursor.current = out.next_cursor ?? cursor.current;
        setError(null);
        if (out.logs.length) {
          setLines((xs) => {
            // Ids are numbered per node: a line is known by its node and id together.
            const seen = new Set(xs.map(lineKey));
            const fresh = out.logs.filter((l) => !seen.has(lineKey(l)));
            const all = xs.concat(fresh);
            if (all.length <= KEEP) return all;
            setDropped((d) => d + all.length - KEEP);
            return all.slice(all.length - KEEP);
          });
        }
      } catch (err) {
        if (alive && mine === generation.current) setError(err);
      } finally {
        busy = false;
      }
    };
    tick();
    const timer = setInterval(tick, TAIL_MS);
    return () => { alive = false; clearInterval(timer); };
  }, [tail, load]);

  // Follow the newest line unless the reader scrolled up.
  useEffect(() => {
    const el = box.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  }, [lines]);
  const onScroll = () => {
    const el = box.current;
    if (!el) return;
    const atBottom = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
    stick.current = atBottom;
    if (atBottom !== stuck) setStuck(atBottom);
  };
  const toBottom = () => {
    const el = box.current;
    stick.current = true;
    setStuck(true);
    if (el) el.scrollTop = el.scrollHeight;
  };

  const id = (what) => `logs-${what}`;
  return html`<div class="logs-panel">
    <form class="filters" role="search" aria-label="Log filters" onSubmit=${(e) => { e.preventDefault(); load(); }}>
      <div class="field"><label for=${id('level')}>Level</label>
        <select id=${id('level')} value=${level} onChange=${(e) => setLevel(e.target.value)}>
          <option value="">All levels</option>
          ${LEVELS.map((l) => html`<option value=${l}>${l} and above</option>`)}
        </select></div>
      <div class="field"><label for=${id('since')}>Since</label>
        <select id=${id('since')} value=${since} onChange=${(e) => setSince(e.target.value)}>
          ${SINCE.map(([v, label]) => html`<option value=${v}>${label}</option>`)}
        </select></div>
      <div class="field"><label for=${id('grep')}>Search logs</label>
        <input id=${id('grep')} type="search" placeholder="text in the line" value=${grepText}
          onInput=${(e) => setGrep(e.target.value)} /></div>
      <div class="field"><label for=${id('rid')}>Request id</label>
        <input id=${id('rid')} class="mono" type="search" placeholder="any request" value=${ridText}
          size="36" onInput=${(e) => setRid(e.target.value)} /></div>
      <div class="field check"><input id=${id('tail')} type="checkbox" checked=${tail}
          onChange=${(e) => setTail(e.target.checked)} />
        <label for=${id('tail')}>Live tail</label></div>
      <button type="submit">Refresh</button>
    </form>
    <${ErrorBox} error=${error} retry=${load} />
    ${loading && !lines.length ? html`<${Loading} what="log lines" />` : html`
      <p class="muted small logs-meta" aria-live="polite">
        ${lines.length ? `${lines.length} line${lines.length === 1 ? '' : 's'}` : 'No log lines match these filters.'}
        ${!tail && lines.length >= PAGE ? ` (the newest ${PAGE})` : ''}
        ${dropped ? ` · ${dropped} older dropped (the tail keeps ${KEEP})` : ''}
        ${tail ? html` · <span class="tailing">following new lines</span>` : ''}
        ${!stuck && lines.length ? html` <button type="button" class="link" onClick=${toBottom}>Jump to newest</button>` : ''}
      </p>
      ${lines.length ? html`<${LogLines} lines=${lines} label="Log lines" boxRef=${box} onScroll=${onScroll}
        onRequest=${(r) => setRid(r)} />` : null}`}
  </div>`;
}

export default LogsPanel;
