// The HTTP API as the console calls it: the session cookie authenticates, changes carry
// the session's CSRF token, and every failure becomes an ApiError with the API's code and
// message (shown in the page, never a blank screen).

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

export const session = { key: null, role: null, functions: [], csrf: null };
const listeners = new Set();

// Called with no argument when a request finds the session gone (401).
export function onUnauthorized(fn) { listeners.add(fn); return () => listeners.delete(fn); }

function query(params) {
  if (!params) return '';
  const parts = [];
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

async function toError(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  const err = body && body.error;
  if (err) return new ApiError(response.status, err.code, err.message, err.details);
  return new ApiError(response.status, `HTTP${response.status}`,
    `the server answered ${response.status} ${response.statusText || ''}`.trim());
}

// fetch() with the console's headers; resolves to the Response, whatever its status.
export async function send(method, path, { body, params, headers = {}, raw = false } = {}) {
  const init = { method, headers: { ...headers }, credentials: 'same-origin' };
  if (method !== 'GET' && method !== 'HEAD' && session.csrf) {
    init.headers['X-Ember-CSRF'] = session.csrf;
  }
  if (body !== undefined) {
    if (raw) {
      init.body = body;
    } else {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
  }
  let response;
  try {
    response = await fetch(path + query(params), init);
  } catch (e) {
    throw new ApiError(0, 'NetworkError', 'the server cannot be reached: is ember server running?');
  }
  if (response.status === 401 && !path.startsWith('/console/session')) {
    session.csrf = null;
    listeners.forEach((fn) => fn());
  }
  return response;
}

// A JSON call that throws ApiError unless the answer is 2xx.
export async function call(method, path, options = {}) {
  const response = await send(method, path, options);
  if (!response.ok) throw await toError(response);
  if (response.status === 204) return null;
  const type = response.headers.get('content-type') || '';
  return type.includes('json') ? response.json() : response.text();
}

export const api = {
  get: (path, params) => call('GET', path, { params }),
  post: (path, body, params) => call('POST', path, { body, params }),
  put: (path, body, params) => call('PUT', path, { body, params }),
  patch: (path, body, params) => call('PATCH', path, { body, params }),
  del: (path, params) => call('DELETE', path, { params }),
};

export function fn(name) { return `/functions/${encodeURIComponent(name)}`; }

export async function login(key) {
  const out = await call('POST', '/console/session', { body: { key } });
  Object.assign(session, out);
  return out;
}

export async function restore() {
  const out = await call('GET', '/console/session');
  Object.assign(session, out);
  return out;
}

export async function logout() {
  try { await call('DELETE', '/console/session'); } finally {
    Object.assign(session, { key: null, role: null, functions: [], csrf: null });
  }
}

// What the logged-in key may do (the server decides; this only hides what would fail).
export function can(kind) {
  const allowed = {
    admin: ['read', 'write', 'invoke', 'manage'], developer: ['read', 'write', 'invoke'],
    invoker: ['invoke'], viewer: ['read'],
  }[session.role] || [];
  return allowed.includes(kind);
}
