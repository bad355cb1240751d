// The console's shell: login, navigation, the hash router, and the error boundary that
// keeps a page's failure a message instead of a blank screen.
import { html, render, useState, useEffect, useErrorBoundary } from './lib.js';
import { login, logout, restore, session, onUnauthorized } from './api.js';
import { ErrorBox, Loading, Toasts } from './ui.js';
import Overview from './pages/overview.js';
import Functions from './pages/functions.js';
import FunctionPage from './pages/function.js';
import Tasks from './pages/tasks.js';
import DeadLetters from './pages/deadletters.js';
import Triggers from './pages/triggers.js';
import { Workflows, WorkflowPage, ExecutionPage } from './pages/workflows.js';

// [pattern, component, nav section]; :name parts become params.
const ROUTES = [
  ['/', Overview, 'overview'],
  ['/functions', Functions, 'functions'],
  ['/functions/:name', FunctionPage, 'functions'],
  ['/tasks', Tasks, 'tasks'],
  ['/dead-letters', DeadLetters, 'dead-letters'],
  ['/triggers', Triggers, 'triggers'],
  ['/workflows', Workflows, 'workflows'],
  ['/workflows/:name', WorkflowPage, 'workflows'],
  ['/executions/:id', ExecutionPage, 'workflows'],
];

const NAV = [
  ['overview', '#/', 'Overview'],
  ['functions', '#/functions', 'Functions'],
  ['tasks', '#/tasks', 'Tasks'],
  ['dead-letters', '#/dead-letters', 'Dead letters'],
  ['triggers', '#/triggers', 'Triggers'],
  ['workflows', '#/workflows', 'Workflows'],
];

export function parseHash(hash) {
  const raw = (hash || '').replace(/^#/, '') || '/';
  const [path, q = ''] = raw.split('?');
  const query = Object.fromEntries(new URLSearchParams(q));
  for (const [pattern, component, section] of ROUTES) {
    const want = pattern.split('/');
    const got = path.split('/');
    if (want.length !== got.length) continue;
    const params = {};
    let ok = true;
    want.forEach((part, i) => {
      if (part.startsWith(':')) params[part.slice(1)] = decodeURIComponent(got[i]);
      else if (part !== got[i]) ok = false;
    });
    if (ok) return { component, section, params, query, path };
  }
  return { component: NotFound, section: null, params: {}, query, path };
}

function NotFound({ path }) {
  return html`<section class="page"><h1>Not found</h1>
    <p>The console has no page at <code>${path}</code>. <a href="#/">Go to the overview</a>.</p></section>`;
}

function useHash() {
  const [hash, setHash] = useState(window.location.hash);
  useEffect(() => {
    const on = () => setHash(window.location.hash);
    window.addEventListener('hashchange', on);
    // Effects run after the first paint: catch a change made before the listener was on.
    on();
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return hash;
}

// Keeps a page's exception on screen (with a way back) instead of unmounting the console.
function Boundary({ children, resetKey }) {
  const [error, reset] = useErrorBoundary((e) => console.error('page failed:', e));
  useEffect(() => { if (error) reset(); }, [resetKey]);
  if (error) {
    return html`<section class="page"><h1>This page failed</h1>
      <${ErrorBox} error=${error} retry=${reset} /></section>`;
  }
  return children;
}

function Login({ onDone, reason }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(key.trim());
      setKey('');
      onDone();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="login">
    <form class="card login-card" onSubmit=${submit} aria-label="Log in">
      <h1><span class="logo" aria-hidden="true">◆</span> Ember console</h1>
      ${reason ? html`<p class="muted">${reason}</p>` : null}
      <label for="api-key">API key</label>
      <input id="api-key" name="key" type="password" autocomplete="current-password"
        placeholder="ek_…" required value=${key} onInput=${(e) => setKey(e.target.value)} autofocus />
      <p class="muted small">The key stays on the server: the console keeps an HttpOnly session.
        A new server prints its admin key once and writes it to <code>.ember/admin.key</code>.</p>
      <${ErrorBox} error=${error} />
      <button class="primary" type="submit" disabled=${busy || !key.trim()}>${busy ? 'Logging in…' : 'Log in'}</button>
    </form>
  </main>`;
}

function Shell({ onLogout }) {
  const hash = useHash();
  const route = parseHash(hash);
  const [menu, setMenu] = useState(false);
  useEffect(() => { setMenu(false); window.scrollTo(0, 0); }, [route.path]);
  const Component = route.component;
  return html`<div class="shell">
    <a class="skip" href="#main" onClick=${(e) => { e.preventDefault(); document.getElementById('main')?.focus(); }}>Skip to content</a>
    <header class="topbar">
      <button class="menu-toggle" aria-label="Menu" aria-expanded=${menu} onClick=${() => setMenu(!menu)}>☰</button>
      <a class="brand" href="#/"><span class="logo" aria-hidden="true">◆</span> Ember</a>
      <span class="spacer"></span>
      <span class="who" title="the key this session logged in with">${session.key} · ${session.role}</span>
      <button class="link" onClick=${onLogout}>Log out</button>
    </header>
    <nav class=${menu ? 'sidebar open' : 'sidebar'} aria-label="Sections">
      ${NAV.map(([id, link, label]) => html`<a href=${link} class=${route.section === id ? 'active' : ''}
        aria-current=${route.section === id ? 'page' : undefined}>${label}</a>`)}
    </nav>
    <main id="main" tabindex="-1">
      <${Boundary} resetKey=${route.path}>
        <${Component} key=${route.path} params=${route.params} query=${route.query} path=${route.path} />
      <//>
    </main>
    <${Toasts} />
  </div>`;
}

function App() {
  const [state, setState] = useState('checking'); // checking | in | out
  const [reason, setReason] = useState(null);
  useEffect(() => {
    restore().then(() => setState('in')).catch(() => setState('out'));
    return onUnauthorized(() => {
      setReason('Your session ended (logged out, expired, or its key was revoked). Log in again.');
      setState('out');
    });
  }, []);
  if (state === 'checking') return html`<${Loading} what="the console" />`;
  if (state === 'out') return html`<${Login} reason=${reason} onDone=${() => { setReason(null); setState('in'); }} />`;
  return html`<${Shell} onLogout=${async () => {
    try { await logout(); } finally { setReason('Logged out.'); setState('out'); }
  }} />`;
}

render(html`<${App} />`, document.getElementById('app'));
