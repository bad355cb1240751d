// One function: its state and actions, and tabs for its config, versions, aliases (with
// the traffic split), instances, invoke, logs, stats and triggers. The tab is in the URL
// (?tab=…), so a reload or a link keeps it.
import { html, useState, useEffect, useRef } from '../lib.js';
import { api, fn, can } from '../api.js';
import {
  usePoll, Page, Card, Table, Badge, ErrorBox, Loading, Empty, Tabs, Confirm, toast,
  fmtTime, fmtAgo, fmtBytes, fmtJson, href, go,
} from '../ui.js';
import { InvokePanel } from './invoke.js';
import { LogsPanel } from './logs.js';
import { StatsPanel } from './fnstats.js';

const TABS = [
  { key: 'config', label: 'Config' },
  { key: 'versions', label: 'Versions' },
  { key: 'aliases', label: 'Aliases' },
  { key: 'instances', label: 'Instances' },
  { key: 'invoke', label: 'Invoke' },
  { key: 'logs', label: 'Logs' },
  { key: 'stats', label: 'Stats' },
  { key: 'triggers', label: 'Triggers' },
];

// ---- traffic splits -------------------------------------------------------------------

// A percentage without trailing zeros: 90, 12.5.
const pct = (x) => +x.toFixed(1);

// An alias's (or a planned) split as [[version, percent], …]: the primary version first.
// `weight` is the additional version's share, 0..1 as the API keeps it.
function shares(version, additional, weight) {
  if (!additional || !weight) return [[version, 100]];
  return [[version, pct(100 - weight * 100)], [additional, pct(weight * 100)]];
}

// "v2 90 % · v1 10 %" (one version: "v2 100 %").
export function splitText(parts) {
  return parts.map(([v, p]) => `v${v} ${p} %`).join(' · ');
}

const aliasShares = (a) => shares(a.version, a.additional_version, a.weight);

function SplitBar({ parts }) {
  return html`<div class="split-bar" aria-hidden="true">${parts.map(([v, p], i) => html`
    <span class=${`split-seg split-seg-${i}`} style=${{ width: `${p}%` }}
      title=${`v${v} ${p} %`}>${p >= 15 ? `v${v}` : ''}</span>`)}</div>`;
}

// ---- small pieces ---------------------------------------------------------------------

function describeError(e) {
  return e && e.code ? `${e.code}: ${e.message}` : String((e && e.message) || e);
}

function short(sha) { return sha ? sha.slice(0, 12) : '—'; }

function Defs({ items }) {
  return html`<dl class="deflist">${items.filter(Boolean).map(([term, value]) => html`
    <dt>${term}</dt><dd>${value === undefined || value === null || value === '' ? '—' : value}</dd>`)}</dl>`;
}

function Names({ names }) {
  if (!names || names.length === 0) return html`<span class="muted">none</span>`;
  return html`<span class="names">${names.map((n) => html`<code>${n}</code> `)}</span>`;
}

// ---- Config ---------------------------------------------------------------------------

function ConfigTab({ f }) {
  const c = f.config;
  const entry = c.kind === 'web' ? ['App', html`<code>${c.app}</code>`]
    : c.kind === 'custom' ? ['Command', html`<code>${(c.command || []).join(' ')}</code>`]
      : ['Handler', html`<code>${c.handler}</code>`];
  const tags = Object.entries(c.tags || {}).map(([k, v]) => (v ? `${k}=${v}` : k));
  return html`<${Card} title="Configuration of latest">
    <${Defs} items=${[
      entry,
      ['Runtime', `${c.runtime} · ${c.kind}`],
      ['Memory', `${c.memory_mb} MiB`],
      ['CPU', c.cpu ? `${c.cpu} cores` : 'in proportion to memory'],
      ['Timeout', `${c.timeout_s} s`],
      ['Concurrency', `${c.concurrency} per instance`],
      ['Instances', `min ${c.min_instances} · max ${c.max_instances}`],
      ['Keep-alive', `${c.keep_alive_policy} · ${c.keep_alive_s} s`],
      ['Network', c.network],
      c.initializer ? ['Initializer', html`<code>${c.initializer}</code>`] : null,
      ['Environment variables', html`<${Names} names=${Object.keys(c.environment || {})} />`],
      ['Secrets', html`<${Names} names=${[...(c.secrets || []), ...(c.secret_files || []).map((s) => `${s} (file)`)]} />`],
      ['Layers', html`<${Names} names=${c.layers} />`],
      ['Tags', html`<${Names} names=${tags} />`],
      ['Async', `${c.async.max_retries} retries · max event age ${c.async.max_event_age_s} s`
        + `${c.async.max_concurrency ? ` · max concurrency ${c.async.max_concurrency}` : ''}`],
      ['Code', html`<code title=${f.code.sha256}>${short(f.code.sha256)}</code> · ${fmtBytes(f.code.size)}`],
      ['Last version', f.last_version ? `v${f.last_version}` : 'none published'],
      ['Created', fmtTime(f.created_at)],
      ['Last modified', html`${fmtTime(f.updated_at)} <span class="muted">(${fmtAgo(f.updated_at)})</span>`],
    ]} />
    <details><summary>Raw JSON</summary><pre>${fmtJson(f)}</pre></details>
  <//>`;
}

// ---- Versions -------------------------------------------------------------------------

function PublishForm({ name, onDone }) {
  const [description, setDescription] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const out = await api.post(`${fn(name)}/versions`, { description: description.trim() });
      toast(out.created ? `Published version ${out.version}`
        : `latest is unchanged: version ${out.version} already holds it`);
      setDescription('');
      onDone();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="filters" onSubmit=${submit} aria-label="Publish a version">
    <div class="field"><label for="publish-description">Description</label>
      <input id="publish-description" maxlength="256" placeholder="optional" value=${description}
        onInput=${(e) => setDescription(e.target.value)} /></div>
    <button class="primary" type="submit" disabled=${busy}>${busy ? 'Publishing…' : 'Publish version'}</button>
    <${ErrorBox} error=${error} />
  </form>`;
}

function VersionsTab({ name, versions, aliases, reload }) {
  const pointing = (v) => (aliases.data?.aliases || []).flatMap((a) => {
    const parts = aliasShares(a);
    const share = parts.find(([n]) => n === v);
    if (!share) return [];
    return [share[1] === 100 ? a.name : `${a.name} (${share[1]} %)`];
  });
  const rows = [...(versions.data?.versions || [])].sort((a, b) => b.version - a.version);
  return html`<${Card} title="Versions">
    ${can('write') ? html`<${PublishForm} name=${name} onDone=${reload} />` : null}
    <${ErrorBox} error=${versions.error} retry=${versions.reload} />
    ${versions.data ? html`<${Table} label="Versions" rows=${rows} rowKey=${(v) => v.version}
      empty="No version published yet: publish latest to make version 1."
      columns=${[
        { label: 'Version', render: (v) => html`<strong>v${v.version}</strong>` },
        { label: 'Description', render: (v) => v.description || html`<span class="muted">—</span>` },
        { label: 'Created', render: (v) => html`<span title=${fmtAgo(v.created_at)}>${fmtTime(v.created_at)}</span>` },
        { label: 'Code', render: (v) => html`<code title=${v.code.sha256}>${short(v.code.sha256)}</code>` },
        { label: 'Aliases', render: (v) => html`<${Names} names=${pointing(v.version)} />` },
      ]} />` : versions.error ? null : html`<${Loading} what="versions" />`}
  <//>`;
}

// ---- Aliases --------------------------------------------------------------------------

function SplitForm({ name, alias, versions, onCancel, onDone }) {
  const [version, setVersion] = useState(String(alias.version));
  const [additional, setAdditional] = useState(alias.additional_version ? String(alias.additional_version) : '');
  const [weight, setWeight] = useState(alias.weight ? Math.round(alias.weight * 100) : 0);
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const numbers = versions.map((v) => v.version).sort((a, b) => b - a);
  const same = additional !== '' && additional === version;
  // 100 % to the additional version is that version alone.
  const planned = !additional || weight <= 0 ? { version: +version }
    : weight >= 100 ? { version: +additional }
      : { version: +version, additional_version: +additional, weight: weight / 100 };
  const plannedText = splitText(shares(planned.version, planned.additional_version, planned.weight));
  const id = `split-${alias.name}`;
  const first = useRef(null);
  useEffect(() => { first.current?.focus(); }, []); // the keyboard goes on in the form
  const apply = async () => {
    setBusy(true);
    setError(null);
    const body = { ...planned, description: alias.description || '' };
    if (alias.async) body.async = alias.async; // a PUT replaces the alias whole
    try {
      await api.put(`${fn(name)}/aliases/${encodeURIComponent(alias.name)}`, body);
      setConfirming(false);
      toast(`${alias.name}: ${plannedText}`);
      onDone();
    } catch (err) {
      setConfirming(false);
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="split-form card" aria-label=${`Traffic split of ${alias.name}`}
      onSubmit=${(e) => { e.preventDefault(); if (!same) setConfirming(true); }}>
    <h3>Traffic split of <code>${alias.name}</code></h3>
    <div class="filters">
      <div class="field"><label for=${`${id}-version`}>Version</label>
        <select id=${`${id}-version`} ref=${first} value=${version} onChange=${(e) => setVersion(e.target.value)}>
          ${numbers.map((n) => html`<option value=${String(n)}>v${n}</option>`)}
        </select></div>
      <div class="field"><label for=${`${id}-additional`}>Additional version</label>
        <select id=${`${id}-additional`} value=${additional} onChange=${(e) => setAdditional(e.target.value)}>
          <option value="">none</option>
          ${numbers.map((n) => html`<option value=${String(n)}>v${n}</option>`)}
        </select></div>
      <div class="field"><label for=${`${id}-weight`}>Weight of additional version (%)</label>
        <div class="row">
          <input id=${`${id}-weight`} type="range" min="0" max="100" step="1" value=${weight}
            disabled=${!additional} onInput=${(e) => setWeight(+e.target.value)} />
          <output for=${`${id}-weight`} class="weight-out">${additional ? weight : 0} %</output>
        </div></div>
    </div>
    <p class="split-preview"><span class="muted">New split: </span>${alias.name}: ${plannedText}</p>
    <${SplitBar} parts=${shares(planned.version, planned.additional_version, planned.weight)} />
    ${same ? html`<p class="error" role="alert">The additional version must differ from the version.</p>` : null}
    <${ErrorBox} error=${error} />
    <div class="actions">
      <button type="submit" class="primary" disabled=${busy || same}>Save split</button>
      <button type="button" onClick=${onCancel}>Cancel</button>
    </div>
    <${Confirm} open=${confirming} title=${`Change the traffic of ${alias.name}?`} confirmLabel="Apply"
      onConfirm=${apply} onCancel=${() => setConfirming(false)}>
      <p><span class="muted">Now: </span>${alias.name}: ${splitText(aliasShares(alias))}</p>
      <p><span class="muted">New: </span><strong>${alias.name}: ${plannedText}</strong></p>
      <p class="muted small">Invocations of ${name}:${alias.name} and its triggers follow the new split at once.</p>
    <//>
  </form>`;
}

function CreateAlias({ name, versions, aliases, onDone }) {
  const numbers = versions.map((v) => v.version).sort((a, b) => b - a);
  const [alias, setAlias] = useState('');
  const [version, setVersion] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const chosen = version || String(numbers[0] || '');
  const submit = async (e) => {
    e.preventDefault();
    const wanted = alias.trim();
    if (aliases.some((a) => a.name === wanted)) {
      setError({ message: `alias ${wanted} exists: use its Edit split to move it` });
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await api.put(`${fn(name)}/aliases/${encodeURIComponent(wanted)}`, { version: +chosen });
      toast(`Alias ${wanted} → v${chosen}`);
      setAlias('');
      onDone();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  if (!numbers.length) return html`<${Empty}>Publish a version first: an alias points at a version.<//>`;
  return html`<form class="filters" onSubmit=${submit} aria-label="Create an alias">
    <div class="field"><label for="new-alias-name">New alias name</label>
      <input id="new-alias-name" required maxlength="64" placeholder="e.g. stable"
        value=${alias} onInput=${(e) => setAlias(e.target.value)} /></div>
    <div class="field"><label for="new-alias-version">New alias version</label>
      <select id="new-alias-version" value=${chosen} onChange=${(e) => setVersion(e.target.value)}>
        ${numbers.map((n) => html`<option value=${String(n)}>v${n}</option>`)}
      </select></div>
    <button type="submit" disabled=${busy || !alias.trim()}>Create alias</button>
    <${ErrorBox} error=${error} />
  </form>`;
}

function AliasesTab({ name, versions, aliases, reload }) {
  const [editing, setEditing] = useState(null);
  const [deleting, setDeleting] = useState(null);
  const list = aliases.data?.aliases || [];
  const known = versions.data?.versions || [];
  const writable = can('write');
  const current = list.find((a) => a.name === editing);
  const remove = async () => {
    const target = deleting;
    setDeleting(null);
    try {
      await api.del(`${fn(name)}/aliases/${encodeURIComponent(target)}`);
      toast(`Alias ${target} deleted`);
      if (editing === target) setEditing(null);
      reload();
    } catch (err) {
      toast(describeError(err), 'bad');
    }
  };
  return html`<${Card} title="Aliases">
    <${ErrorBox} error=${aliases.error} retry=${aliases.reload} />
    ${aliases.data ? html`<${Table} label="Aliases" rows=${list} rowKey=${(a) => a.name}
      empty="No alias yet: an alias names a version (or splits traffic between two) so that triggers and callers need not change on a release."
      columns=${[
        { label: 'Alias', render: (a) => html`<strong>${a.name}</strong>` },
        { label: 'Traffic', render: (a) => html`<span class="split-text">${splitText(aliasShares(a))}</span>` },
        { label: 'Split', render: (a) => html`<${SplitBar} parts=${aliasShares(a)} />` },
        { label: 'Description', render: (a) => a.description || html`<span class="muted">—</span>` },
        { label: 'Updated', render: (a) => fmtAgo(a.updated_at) },
        ...(writable ? [{ label: 'Actions', render: (a) => html`<div class="actions">
          <button aria-label=${`Edit split of ${a.name}`} onClick=${() => setEditing(a.name)}>Edit split</button>
          <button class="link" aria-label=${`Delete alias ${a.name}`} onClick=${() => setDeleting(a.name)}>Delete</button>
        </div>` }] : []),
      ]} />` : aliases.error ? null : html`<${Loading} what="aliases" />`}
    ${current && known.length ? html`<${SplitForm} key=${`${current.name}-${current.updated_at}`} name=${name}
      alias=${current} versions=${known} onCancel=${() => setEditing(null)}
      onDone=${() => { setEditing(null); reload(); }} />` : null}
    <${ObservedTraffic} name=${name} />
    ${writable && aliases.data && versions.data ? html`<h3>New alias</h3>
      <${CreateAlias} name=${name} versions=${known} aliases=${list} onDone=${reload} />` : null}
    <${Confirm} open=${!!deleting} danger title=${`Delete alias ${deleting || ''}?`} confirmLabel="Delete"
      onConfirm=${remove} onCancel=${() => setDeleting(null)}>
      <p>Callers of ${name}:${deleting} get AliasNotFound afterwards. A trigger that targets it keeps it from being deleted.</p>
    <//>
  <//>`;
}

// What the split does: the versions that served the function's latest invocations (every
// qualifier's), refreshed while the tab shows, so a moved weight is seen taking effect.
function ObservedTraffic({ name }) {
  const recent = usePoll(() => api.get(`${fn(name)}/invocations`, { limit: 200 }), 3000, [name]);
  const items = recent.data?.invocations || [];
  const counts = new Map();
  items.forEach((r) => counts.set(r.version, (counts.get(r.version) || 0) + 1));
  const rows = [...counts.entries()].sort((a, b) => b[1] - a[1])
    .map(([version, n]) => ({ version, n, share: pct((100 * n) / items.length) }));
  return html`<section class="observed" aria-label="Observed traffic">
    <h3>Observed traffic</h3>
    <p class="muted small">${`Which version served the last ${items.length || ''} invocations of ${name} (every qualifier), refreshed every 3 s.`}</p>
    <${ErrorBox} error=${recent.error} retry=${recent.reload} />
    ${recent.data ? html`<${Table} label="Observed traffic" rows=${rows} rowKey=${(r) => r.version}
      empty="No invocation yet."
      columns=${[
        { label: 'Version', render: (r) => (r.version === 'latest' ? 'latest' : `v${r.version}`) },
        { label: 'Invocations', cls: 'num', render: (r) => r.n },
        { label: 'Share', cls: 'num', render: (r) => `${r.share} %` },
      ]} />` : recent.error ? null : html`<${Loading} what="recent invocations" />`}
  </section>`;
}

// ---- Instances ------------------------------------------------------------------------

function WarmForm({ name, qualifiers, onDone }) {
  const [qualifier, setQualifier] = useState('latest');
  const [count, setCount] = useState(1);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    try {
      const out = await api.post(`${fn(name)}/warm`, { qualifier, instances: +count });
      toast(`Started ${out.started} instance${out.started === 1 ? '' : 's'} of ${name}:${qualifier}`);
      onDone();
    } catch (err) {
      toast(describeError(err), 'bad');
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="filters" onSubmit=${submit} aria-label="Warm instances">
    <div class="field"><label for="warm-qualifier">Qualifier</label>
      <select id="warm-qualifier" value=${qualifier} onChange=${(e) => setQualifier(e.target.value)}>
        ${qualifiers.map((q) => html`<option value=${q}>${q}</option>`)}</select></div>
    <div class="field"><label for="warm-count">Instances to start</label>
      <input id="warm-count" type="number" min="1" max="100" value=${count}
        onInput=${(e) => setCount(e.target.value)} /></div>
    <button type="submit" disabled=${busy || !(count >= 1 && count <= 100)}>${busy ? 'Warming…' : 'Warm'}</button>
  </form>`;
}

const versionLabel = (v) => (v === 'latest' ? 'latest' : `v${v}`);

function InstancesTab({ name, qualifiers }) {
  const st = usePoll(() => api.get(`${fn(name)}/instances`), 2000, [name]);
  const data = st.data;
  const several = (data?.nodes?.length || 0) > 1;  // a cluster: say which node
  return html`<div>
    <${ErrorBox} error=${st.error} retry=${st.reload} />
    ${!data ? (st.error ? null : html`<${Loading} what="instances" />`) : html`
    <${Card} title="Pools" actions=${html`<span class="muted small">refreshed every 2 s</span>`}>
      <${Table} label="Pools" rows=${data.pools} rowKey=${(p) => `${p.node || ''}/${p.version}`}
        empty="No pool: nothing has run since the server started (or everything was unloaded)."
        columns=${[
          ...(several ? [{ label: 'Node', render: (p) => html`<code>${p.node}</code>` }] : []),
          { label: 'Version', render: (p) => html`<strong>${versionLabel(p.version)}</strong>
            ${p.draining ? html` <${Badge} tone="muted">draining<//>` : null}` },
          { label: 'Reached by', render: (p) => html`<${Names} names=${p.qualifiers} />` },
          { label: 'Current', cls: 'num', render: (p) => `${p.current}${p.starting ? ` (${p.starting} starting)` : ''}` },
          { label: 'Desired', cls: 'num', render: (p) => p.desired },
          { label: 'Why', render: (p) => p.reason },
          { label: 'Shortfall', render: (p) => (p.shortfall ? html`<${Badge} tone="warn">${p.shortfall}<//>` : html`<span class="muted">—</span>`) },
          { label: 'Keep-alive', render: (p) => p.keep_alive || '—' },
        ]} />
    <//>
    <${Card} title="Instances">
      ${can('write') ? html`<${WarmForm} name=${name} qualifiers=${qualifiers} onDone=${st.reload} />` : null}
      <${Table} label="Instances" rows=${data.instances} rowKey=${(i) => i.id}
        empty="No instance is up: the next invocation starts one (a cold start)."
        columns=${[
          ...(several ? [{ label: 'Node', render: (i) => html`<code>${i.node}</code>` }] : []),
          { label: 'Instance', render: (i) => html`<code>${i.id}</code>` },
          { label: 'State', render: (i) => html`<${Badge}>${i.state}<//>` },
          { label: 'Version', render: (i) => versionLabel(i.version) },
          { label: 'In flight', cls: 'num', render: (i) => i.in_flight },
          { label: 'Memory', cls: 'num', render: (i) => (i.memory_mb === null ? '—' : fmtBytes(i.memory_mb * 1024 * 1024)) },
          { label: 'Started', render: (i) => html`<span title=${fmtTime(i.started_at)}>${fmtAgo(i.started_at)}</span>` },
          { label: 'Idle since', render: (i) => (i.state === 'busy' || i.in_flight ? html`<span class="muted">busy</span>`
            : html`<span title=${fmtTime(i.last_used_at)}>${fmtAgo(i.last_used_at)}</span>`) },
        ]} />
    <//>`}
  </div>`;
}

// ---- Triggers -------------------------------------------------------------------------

// A URL without its password.
const safeUrl = (url) => String(url || '').replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');

function sourceSummary(s) {
  switch (s.kind) {
    case 'http': return `${(s.methods || []).join(', ')} /http${s.path}${s.auth === 'api_key' ? ' (API key)' : ''}`;
    case 'timer': return `${s.schedule} (${s.timezone})`;
    case 'mqtt': return `${s.topic} at ${safeUrl(s.url)}`;
    case 'amqp': return `queue ${s.queue} at ${safeUrl(s.url)}`;
    case 'nats': return `${s.subject}${s.stream ? ` (stream ${s.stream})` : ''} at ${safeUrl(s.url)}`;
    case 'redis_stream': return `${(s.streams || []).join(', ')} (group ${s.group}) at ${safeUrl(s.url)}`;
    case 'storage': return `${s.path} ${s.pattern || ''}`.trim();
    default: {
      const { kind, ...rest } = s;
      return JSON.stringify(rest);
    }
  }
}

function TriggersTab({ name }) {
  const st = usePoll(() => api.get('/triggers', { function: name }), 0, [name]);
  const rows = (st.data?.triggers || []).filter((t) => t.function === name);
  return html`<${Card} title="Triggers" actions=${html`<a href=${href('/triggers')}>All triggers</a>`}>
    <${ErrorBox} error=${st.error} retry=${st.reload} />
    ${st.data ? html`<${Table} label="Triggers" rows=${rows} rowKey=${(t) => t.name}
      empty=${html`No trigger invokes ${name}. Bind one with <code>ember trigger create NAME -f ${name} --http /path</code> (or a timer, a broker, storage).`}
      columns=${[
        { label: 'Trigger', render: (t) => html`<a href=${href('/triggers', { name: t.name })}>${t.name}</a>` },
        { label: 'Kind', render: (t) => t.source.kind },
        { label: 'Source', render: (t) => html`<span class="mono">${sourceSummary(t.source)}</span>` },
        { label: 'Qualifier', render: (t) => t.qualifier || 'latest' },
        { label: 'State', render: (t) => html`<${Badge}>${t.state}<//>
          ${t.state === 'enabled' && t.status ? html` <${Badge} tone=${t.status.connected ? 'ok' : 'muted'}>${t.status.connected ? 'connected' : 'not connected'}<//>` : null}` },
        { label: 'Events', cls: 'num', render: (t) => t.status?.events ?? '—' },
        { label: 'Last error', render: (t) => (t.status?.last_error
          ? html`<span class="text-bad" title=${fmtTime(t.status.last_error_at)}>${t.status.last_error}</span>` : '—') },
      ]} />` : st.error ? null : html`<${Loading} what="triggers" />`}
  <//>`;
}

// ---- the page -------------------------------------------------------------------------

function HeaderActions({ f, name, reload }) {
  const [busy, setBusy] = useState(false);
  const [confirmDisable, setConfirmDisable] = useState(false);
  const act = async (action, done) => {
    setBusy(true);
    try {
      await api.post(`${fn(name)}/${action}`);
      toast(done);
      reload();
    } catch (err) {
      toast(describeError(err), 'bad');
    } finally {
      setBusy(false);
    }
  };
  if (!can('write')) return null;
  const enabled = f.state === 'enabled';
  const paused = f.async_state === 'paused';
  return html`
    ${enabled
      ? html`<button class="danger" disabled=${busy} onClick=${() => setConfirmDisable(true)}>Disable</button>`
      : html`<button class="primary" disabled=${busy} onClick=${() => act('enable', `${name} enabled`)}>Enable</button>`}
    ${paused
      ? html`<button disabled=${busy} title="Process the queued async events again"
          onClick=${() => act('resume', `${name}: async events resumed`)}>Resume</button>`
      : html`<button disabled=${busy} title="Stop processing async events; they stay queued"
          onClick=${() => act('pause', `${name}: async events paused`)}>Pause</button>`}
    <${Confirm} open=${confirmDisable} danger title=${`Disable ${name}?`} confirmLabel="Disable"
      onConfirm=${() => { setConfirmDisable(false); act('disable', `${name} disabled`); }}
      onCancel=${() => setConfirmDisable(false)}>
      <p>Every invocation of ${name} (any version or alias, its triggers included) is refused until it is enabled again.</p>
    <//>`;
}

export default function FunctionPage({ params, query }) {
  const name = params.name;
  const tab = TABS.some((t) => t.key === query?.tab) ? query.tab : 'config';
  const fnState = usePoll(() => api.get(fn(name)), 0, [name]);
  const versions = usePoll(() => api.get(`${fn(name)}/versions`), 0, [name]);
  const aliases = usePoll(() => api.get(`${fn(name)}/aliases`), 0, [name]);
  const f = fnState.data;

  if (!f) {
    return html`<${Page} title=${name}>
      ${fnState.error ? html`<${ErrorBox} error=${fnState.error}
          retry=${fnState.error.code === 'FunctionNotFound' ? undefined : fnState.reload} />
        <p><a href=${href('/functions')}>Back to functions</a></p>` : html`<${Loading} what=${name} />`}
    <//>`;
  }

  const reloadAll = () => { fnState.reload(); versions.reload(); aliases.reload(); };
  const qualifiers = ['latest',
    ...[...(versions.data?.versions || [])].sort((a, b) => b.version - a.version).map((v) => String(v.version)),
    ...(aliases.data?.aliases || []).map((a) => a.name)];
  const c = f.config;
  const panel = {
    config: () => html`<${ConfigTab} f=${f} />`,
    versions: () => html`<${VersionsTab} name=${name} versions=${versions} aliases=${aliases} reload=${reloadAll} />`,
    aliases: () => html`<${AliasesTab} name=${name} versions=${versions} aliases=${aliases} reload=${reloadAll} />`,
    instances: () => html`<${InstancesTab} name=${name} qualifiers=${qualifiers} />`,
    invoke: () => html`<${InvokePanel} name=${name} qualifiers=${qualifiers} />`,
    logs: () => html`<${LogsPanel} name=${name} />`,
    stats: () => html`<${StatsPanel} name=${name} />`,
    triggers: () => html`<${TriggersTab} name=${name} />`,
  }[tab];
  return html`<${Page} title=${name} subtitle=${c.description || null}
      actions=${html`<${HeaderActions} f=${f} name=${name} reload=${fnState.reload} />`}>
    <div class="fn-badges row">
      <${Badge}>${f.state}<//>
      ${f.async_state === 'paused' ? html`<${Badge} tone="warn">async paused<//>` : null}
      <${Badge} tone="info">${c.kind}<//>
      <span class="muted small">${c.runtime} · ${c.memory_mb} MiB · timeout ${c.timeout_s} s
        · ${f.last_version ? `last version v${f.last_version}` : 'no version published'}</span>
    </div>
    <${ErrorBox} error=${fnState.error} retry=${fnState.reload} />
    <${Tabs} tabs=${TABS} current=${tab}
      onSelect=${(key) => go(`/functions/${encodeURIComponent(name)}`, { tab: key })} />
    <div role="tabpanel" id=${`panel-${tab}`} aria-labelledby=${`tab-${tab}`}>
      ${panel()}
    </div>
  <//>`;
}
