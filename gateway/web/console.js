// The operator console (`/console`): the cluster (nodes and Raft groups, drain and remove), the
// node's headline metrics, apps and their keys, and an app's users, channels and moderation
// queue (read with a server key of the app). Every request goes to this origin.

const $ = (id) => document.getElementById(id);
const KEY = 'chatsdk.console.adminKey';

let adminKey = sessionStorage.getItem(KEY);
let clusterTimer = null;
let metricsTimer = null;
let current = null; // the app shown: {id, name}
let previousCounters = null; // {at, requests, sends} for rates

// ---------- helpers ----------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const c of children) node.append(c ?? '');
  return node;
}

/** A table cell holding text (never HTML). */
function td(text, className = '') {
  return el('td', { className, textContent: text === null || text === undefined ? '–' : String(text) });
}

function badge(text, kind = text) {
  return el('span', { className: `badge ${kind}`, textContent: text });
}

/** A field in either dialect's spelling. */
function pick(obj, ...names) {
  for (const n of names) if (obj && obj[n] !== undefined && obj[n] !== null) return obj[n];
  return null;
}

function when(iso) {
  if (!iso) return null;
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

function duration(s) {
  if (s === null || s === undefined) return null;
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

const errors = new Map(); // source -> message
function setError(source, message) {
  if (message) errors.set(source, message);
  else errors.delete(source);
  const box = $('error');
  box.textContent = [...errors.values()].join('\n');
  box.classList.toggle('hidden', errors.size === 0);
}

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** A JSON request to this server, with the admin key or an app's server key. */
async function request(method, path, { body } = {}) {
  const headers = { Authorization: `Bearer ${adminKey}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const msg = data.error ? `${data.error.code}: ${data.error.message}` : `HTTP ${res.status}`;
    throw new HttpError(res.status, `${method} ${path}: ${msg}`);
  }
  return data;
}

/** Runs `task`, showing its failure under `source` (and clearing it on success). */
async function guarded(source, task) {
  try {
    await task();
    setError(source, '');
  } catch (e) {
    if (e.status === 401 && source !== 'app' && adminKey) {
      forget('The admin key was refused (401). Enter it again.');
      return;
    }
    setError(source, e.message);
  }
}

// ---------- login ----------

async function start(key) {
  adminKey = key;
  const cluster = await request('GET', '/admin/cluster'); // checks the key
  sessionStorage.setItem(KEY, key);
  $('login').classList.add('hidden');
  $('console').classList.remove('hidden');
  $('logout').classList.remove('hidden');
  renderCluster(cluster);
  await guarded('apps', loadApps);
  clusterTimer = setInterval(() => guarded('cluster', refreshCluster), 3000);
  await guarded('metrics', refreshMetrics);
  metricsTimer = setInterval(() => guarded('metrics', refreshMetrics), 5000);
}

function forget(message = '') {
  clearInterval(clusterTimer);
  clearInterval(metricsTimer);
  clusterTimer = metricsTimer = null;
  adminKey = null;
  current = null;
  sessionStorage.removeItem(KEY);
  errors.clear();
  setError('login', message);
  $('console').classList.add('hidden');
  $('logout').classList.add('hidden');
  $('cluster-id').classList.add('hidden');
  $('app').classList.add('hidden');
  $('login').classList.remove('hidden');
}

// ---------- cluster ----------

async function refreshCluster() {
  renderCluster(await request('GET', '/admin/cluster'));
}

function renderCluster(c) {
  $('cluster-id').textContent = `cluster ${c.clusterId}`;
  $('cluster-id').classList.remove('hidden');
  $('cluster-summary').textContent =
    `${c.nodes.length} node${c.nodes.length === 1 ? '' : 's'}, ${c.shards} shards, replication ${c.replication}; answered by node ${c.answeredBy}`;
  $('cluster-updated').textContent = `Last update ${new Date().toLocaleTimeString()}.`;
  const rows = c.nodes.map((n) => {
    const conns = n.connections ? (n.connections.websocket || 0) + (n.connections.quic || 0) : null;
    const connText = n.connections ? `${conns} (ws ${n.connections.websocket}, quic ${n.connections.quic})` : null;
    const state = n.draining ? 'draining' : n.state;
    const actions = el('td');
    if (n.state === 'active') {
      const drain = el('button', { type: 'button', textContent: 'Drain', disabled: !!n.draining });
      drain.dataset.testid = `drain-${n.id}`;
      drain.addEventListener('click', () => nodeAction(n, 'drain'));
      const remove = el('button', { type: 'button', className: 'danger', textContent: 'Remove' });
      remove.dataset.testid = `remove-${n.id}`;
      remove.addEventListener('click', () => nodeAction(n, 'remove'));
      actions.append(drain, ' ', remove);
    }
    const tr = el(
      'tr',
      {},
      td(n.id, 'num'),
      el('td', {}, badge(state)),
      el('td', {}, n.reachable === null || n.reachable === undefined ? '–'
        : n.reachable ? badge('yes')
        : badge(n.unreachableForS == null ? 'no' : `no (${n.unreachableForS} s)`, 'no')),
      td(n.clusterAddr, 'mono'),
      td(n.httpAddr, 'mono'),
      td(n.version),
      td(duration(n.uptimeS), 'num'),
      td(connText, 'num'),
      td(n.sessions, 'num'),
      td(n.replicas, 'num'),
      td(n.leads, 'num'),
      actions,
    );
    tr.dataset.testid = 'node-row';
    tr.dataset.nodeId = String(n.id);
    tr.dataset.state = state;
    return tr;
  });
  $('nodes').replaceChildren(...rows);
  const groups = c.groups.map((g) =>
    el(
      'tr',
      {},
      td(g.id, 'num'),
      td(g.kind),
      td((g.replicas || []).join(', ')),
      td(g.leader),
      td(g.preferredLeader),
      td(g.term, 'num'),
      td(g.lastLogIndex, 'num'),
      td(g.appliedIndex, 'num'),
      el('td', {}, badge(g.settled ? 'yes' : 'no')),
    ),
  );
  $('groups').replaceChildren(...groups);
}

async function nodeAction(node, action) {
  const question =
    action === 'drain'
      ? `Drain node ${node.id} (${node.httpAddr})? Its readiness turns off and its realtime sessions are closed until it restarts.`
      : `Remove node ${node.id} (${node.httpAddr}) from the cluster? Its replicas move to the other nodes.`;
  if (!window.confirm(question)) return;
  await guarded('node', async () => {
    if (action === 'drain') await request('POST', `/admin/cluster/nodes/${node.id}/drain`);
    else await request('DELETE', `/admin/cluster/nodes/${node.id}`);
    await refreshCluster();
  });
}

// ---------- metrics ----------

/** Prometheus text → [{name, labels, value}]. */
function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const l of (m[3] || '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

function sum(samples, name, filter = () => true) {
  let total = null;
  for (const s of samples) if (s.name === name && filter(s.labels)) total = (total || 0) + s.value;
  return total;
}

function fmt(n, unit = '') {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  if (unit === 'bytes') return `${(n / 1048576).toFixed(1)} MiB`;
  if (unit === '/s') return `${n.toFixed(1)}/s`;
  return Number.isInteger(n) ? n.toLocaleString() : n.toFixed(2);
}

async function refreshMetrics() {
  const res = await fetch('/metrics');
  if (!res.ok) throw new Error(`GET /metrics: HTTP ${res.status}`);
  const s = parseMetrics(await res.text());
  const requests = sum(s, 'chatsdk_http_requests_total');
  const sends = sum(s, 'chatsdk_sends_total', (l) => l.outcome === 'ok');
  const now = Date.now();
  let reqRate = null;
  let sendRate = null;
  if (previousCounters && requests !== null) {
    const secs = (now - previousCounters.at) / 1000;
    reqRate = (requests - previousCounters.requests) / secs;
    sendRate = ((sends || 0) - (previousCounters.sends || 0)) / secs;
  }
  previousCounters = { at: now, requests, sends };
  const headline = [
    ['HTTP requests', fmt(requests), 'http-requests'],
    ['HTTP requests per second', fmt(reqRate, '/s'), 'http-rate'],
    ['HTTP 5xx answers', fmt(sum(s, 'chatsdk_http_requests_total', (l) => l.status === '5xx') ?? 0), 'http-5xx'],
    ['realtime connections', fmt(sum(s, 'chatsdk_realtime_connections')), 'connections'],
    ['realtime sessions', fmt(sum(s, 'chatsdk_realtime_sessions')), 'sessions'],
    ['subscriptions', fmt(sum(s, 'chatsdk_realtime_subscriptions')), 'subscriptions'],
    ['messages sent', fmt(sends ?? 0), 'messages-sent'],
    ['messages per second', fmt(sendRate, '/s'), 'send-rate'],
    ['deliveries', fmt(sum(s, 'chatsdk_deliveries_total')), 'deliveries'],
    ['active nodes (as this node knows)', fmt(sum(s, 'chatsdk_cluster_nodes')), 'cluster-nodes'],
    ['unreachable peers', fmt(sum(s, 'chatsdk_cluster_unreachable_peers')), 'unreachable'],
    ['Raft leader changes', fmt(sum(s, 'chatsdk_raft_leader_changes_total')), 'leader-changes'],
    ['resident memory', fmt(sum(s, 'process_resident_memory_bytes'), 'bytes'), 'memory'],
  ];
  $('metrics').replaceChildren(
    ...headline.map(([label, value, id]) => {
      const box = el('div', { className: 'metric' }, el('div', { className: 'value', textContent: value }), el('div', { className: 'label', textContent: label }));
      box.dataset.testid = `metric-${id}`;
      return box;
    }),
  );
}

// ---------- apps ----------

async function loadApps() {
  const { apps } = await request('GET', '/admin/apps?limit=100');
  const rows = apps.map((a) => {
    const tr = el(
      'tr',
      { className: 'clickable' },
      td(a.id, 'mono'),
      td(a.name),
      td(a.stats ? a.stats.userCount : null, 'num'),
      td(a.stats ? a.stats.channelCount : null, 'num'),
      td(when(a.createdAt)),
    );
    tr.dataset.testid = 'app-row';
    tr.dataset.appId = a.id;
    if (current && current.id === a.id) tr.classList.add('selected');
    tr.addEventListener('click', () => guarded('app', () => openApp(a)));
    return tr;
  });
  if (!rows.length) rows.push(el('tr', {}, el('td', { colSpan: 5, className: 'note', textContent: 'No apps yet.' })));
  $('apps').replaceChildren(...rows);
}

async function openApp(a) {
  current = { id: a.id, name: a.name };
  for (const tr of $('apps').children) tr.classList.toggle('selected', tr.dataset.appId === a.id);
  $('app').classList.remove('hidden');
  $('app-name').textContent = a.name;
  $('app-id').textContent = a.id;
  $('users').replaceChildren();
  $('channels').replaceChildren();
  $('reports').replaceChildren();
  await loadKeys();
  await loadUsers();
  await loadChannels();
  await loadAppData();
}

async function loadKeys() {
  const { api_keys: keys } = await request('GET', `/api/auth/api-keys?app_id=${encodeURIComponent(current.id)}`);
  $('keys').replaceChildren(
    ...keys.map((k) => el('tr', {}, td(k.id, 'mono'), td(k.name), td((k.scopes || []).join(', ') || 'all (older key)'), td(when(k.created_at)))),
  );
}

async function loadAppData() {
  await loadReports();
}

async function loadUsers() {
  const q = $('user-filter').value.trim();
  const app = encodeURIComponent(current.id);
  const path = `/admin/apps/${app}/users?limit=100${q ? `&q=${encodeURIComponent(q)}` : ''}`;
  const { users } = await request('GET', path);
  const rows = users.map((u) => {
    const tr = el('tr', {}, td(u.id, 'mono'), td(u.name), td(u.role), td(u.email), td(when(u.lastActiveAt)));
    tr.dataset.testid = 'user-row';
    tr.dataset.userId = u.id;
    return tr;
  });
  if (!rows.length) rows.push(el('tr', {}, el('td', { colSpan: 5, className: 'note', textContent: 'No users.' })));
  $('users').replaceChildren(...rows);
}

async function loadChannels() {
  const { channels, total } = await request('GET', `/admin/apps/${encodeURIComponent(current.id)}/channels?limit=100`);
  $('channels-title').textContent = `Channels (${channels.length} of ${total})`;
  const rows = channels.map((c) => {
    const tr = el(
      'tr',
      {},
      td(c.id, 'mono'),
      td(c.cid, 'mono'),
      td(c.type),
      td(c.name),
      td(c.memberCount, 'num'),
      td(c.createdBy, 'mono'),
      td(when(c.createdAt)),
    );
    tr.dataset.testid = 'channel-row';
    return tr;
  });
  if (!rows.length) rows.push(el('tr', {}, el('td', { colSpan: 7, className: 'note', textContent: 'No channels.' })));
  $('channels').replaceChildren(...rows);
}

async function loadReports() {
  const app = encodeURIComponent(current.id);
  const { reports } = await request('GET', `/admin/apps/${app}/reports?status=pending&limit=100`);
  $('mod-stats').textContent = `${reports.length} pending`;
  const rows = reports.map((r) => {
    const message = r.message || {};
    const author = message.author || {};
    const reporter = r.reporter || {};
    return el(
      'tr',
      {},
      td(when(pick(r, 'createdAt', 'created_at'))),
      td(r.reason),
      td(reporter.name || pick(r, 'reporterId', 'reporter_id')),
      td(author.name || author.id),
      td(message.text),
      td(pick(message, 'channelName', 'channel_name') || pick(r, 'channelId', 'channel_id')),
      td(r.status),
    );
  });
  if (!rows.length) rows.push(el('tr', {}, el('td', { colSpan: 7, className: 'note', textContent: 'Nothing waits for review.' })));
  $('reports').replaceChildren(...rows);
}

// ---------- wiring ----------

function init() {
  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const key = $('admin-key').value.trim();
    if (!key) return;
    $('admin-key').value = '';
    start(key).catch((e) => forget(e.status === 401 ? 'That admin key was refused (401).' : e.message));
  });
  $('logout').addEventListener('click', () => forget());
  let filterTimer = null;
  $('user-filter').addEventListener('input', () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => current && guarded('app', loadUsers), 250);
  });
  if (adminKey) start(adminKey).catch((e) => forget(e.message));
}

window.addEventListener('unhandledrejection', (ev) => {
  ev.preventDefault();
  setError('page', String(ev.reason && ev.reason.message ? ev.reason.message : ev.reason));
});

init();
