// The demo chat page (`/demo`, dev mode): log in as a seeded user, list their channels, read and
// send messages over REST, receive new ones in realtime, and show what a reconnect recovered.
import { Realtime } from './realtime.js';

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const c of children) node.append(c);
  return node;
};

let session = null; // {appId, user: {id, name}, token, wsToken, expiresIn, renewAt}
let rt = null;
let open = null; // {id, name, channel (realtime channel name)}
const shown = new Map(); // message id -> <li>

function showError(text) {
  const box = $('error');
  box.textContent = text;
  box.classList.toggle('hidden', !text);
}

async function api(method, path, body) {
  // Tokens are renewed before they expire (a request refused with 401 would log an error).
  if (Date.now() > session.renewAt) session = await newSession(session.user.id);
  const headers = { Authorization: `Bearer ${session.token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 401) {
    // The access token lives 15 minutes: sign in again as the same user and retry once.
    await login(session.user.id, { quiet: true });
    headers.Authorization = `Bearer ${session.token}`;
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  }
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const msg = data.error ? `${data.error.code}: ${data.error.message}` : `HTTP ${res.status}`;
    throw new Error(`${method} ${path}: ${msg}`);
  }
  return data;
}

async function newSession(userId) {
  const res = await fetch('/demo/session', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ userId }),
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.error ? data.error.message : `HTTP ${res.status}`);
  // Renewed at four fifths of the access token's life.
  return { ...data, renewAt: Date.now() + data.expiresIn * 800 };
}

async function login(userId, { quiet = false } = {}) {
  session = await newSession(userId);
  sessionStorage.setItem('chatsdk.demo.user', userId);
  if (quiet) return;
  $('me').textContent = `Signed in as ${session.user.name}`;
  $('me').classList.remove('hidden');
  $('logout').classList.remove('hidden');
  $('login').classList.add('hidden');
  $('chat').classList.remove('hidden');
  let first = session.wsToken;
  if (rt) rt.disconnect(); // a second sign-in replaces the first one's connection
  rt = new Realtime({
    // Every reconnect takes a fresh realtime token, so an expired one never stops us.
    getToken: async () => {
      if (first) {
        const token = first;
        first = null;
        return token;
      }
      session = await newSession(session.user.id);
      return session.wsToken;
    },
    onState: showState,
    onRefresh: () => {
      const badge = $('conn-state');
      badge.dataset.refreshes = String(Number(badge.dataset.refreshes || 0) + 1);
    },
  });
  rt.connect();
  await listChannels();
}

function logout() {
  if (rt) rt.disconnect();
  rt = null;
  session = null;
  open = null;
  shown.clear();
  sessionStorage.removeItem('chatsdk.demo.user');
  $('channels').replaceChildren();
  $('messages').replaceChildren();
  $('me').classList.add('hidden');
  $('logout').classList.add('hidden');
  $('chat').classList.add('hidden');
  $('login').classList.remove('hidden');
  $('recovery').classList.add('hidden');
  showError('');
}

function showState(state, info) {
  const badge = $('conn-state');
  let text = state;
  if (state === 'connecting' && info.delay) text = `reconnecting in ${(info.delay / 1000).toFixed(1)} s`;
  if (state === 'disconnected' && info.code) text = `disconnected (${info.code} ${info.reason || ''})`.trim();
  badge.textContent = text;
  badge.className = `badge ${state}`;
  badge.dataset.state = state;
  if (state === 'connected') badge.dataset.connects = String(Number(badge.dataset.connects || 0) + 1);
  if (state !== 'connected') $('messages').dataset.subscribed = 'no';
}

async function listChannels() {
  const { channels } = await api('GET', '/api/channels');
  const list = $('channels');
  list.replaceChildren();
  for (const ch of channels) {
    const button = el('button', { type: 'button', textContent: ch.name || ch.cid || ch.id });
    button.dataset.testid = `channel-${ch.id}`;
    button.dataset.channelId = ch.id;
    button.addEventListener('click', () => openChannel(ch).catch((e) => showError(e.message)));
    list.append(el('li', {}, button));
  }
  if (!channels.length) list.append(el('li', { className: 'note', textContent: 'No channels yet.' }));
  if (channels.length && !open) await openChannel(channels[0]);
}

async function openChannel(ch) {
  if (open && rt) rt.unsubscribe(open.channel);
  open = { id: ch.id, name: ch.name || ch.cid || ch.id, channel: `chat:${session.appId}:${ch.id}` };
  shown.clear();
  $('messages').replaceChildren();
  $('messages').dataset.subscribed = 'no';
  $('recovery').classList.add('hidden');
  $('channel-name').textContent = open.name;
  for (const b of $('channels').querySelectorAll('button')) b.classList.toggle('open', b.dataset.channelId === ch.id);
  const opened = open;
  // Subscribe first, then read the history: what arrives in between is shown once either way.
  rt.subscribe(opened.channel, {
    onPublication: (event, offset, { recovered }) => open === opened && onEvent(event, recovered ? 'recovered' : 'live'),
    onSubscribed: (ctx) => open === opened && onSubscribed(ctx),
    onError: (e) => showError(`realtime: ${e.message}`),
  });
  await loadHistory(opened);
  $('message-input').disabled = false;
  $('send').disabled = false;
}

async function loadHistory(opened) {
  const { messages } = await api('GET', `/api/channels/${encodeURIComponent(opened.id)}/messages?limit=50`);
  if (open !== opened) return;
  for (const m of messages) showMessage(m, 'rest');
}

function onSubscribed({ recovered, wasRecovering, publications }) {
  $('messages').dataset.subscribed = 'yes';
  if (!wasRecovering) return;
  const box = $('recovery');
  if (recovered) {
    const missed = publications.filter((p) => p.data && p.data.type === 'message.new');
    for (const p of missed) {
      const li = shown.get(p.data.payload.message.id);
      if (li) li.classList.add('recovered');
    }
    box.textContent = `Recovered ${missed.length} missed message${missed.length === 1 ? '' : 's'}`;
    box.dataset.recovered = String(missed.length);
  } else {
    box.textContent = 'Missed too much to recover: history reloaded';
    box.dataset.recovered = 'reloaded';
    loadHistory(open).catch((e) => showError(e.message));
  }
  box.classList.remove('hidden');
}

function onEvent(event, via) {
  if (!event || !event.payload) return;
  const p = event.payload;
  switch (event.type) {
    case 'message.new':
      if (p.message && !p.message.parentId) {
        const li = showMessage(p.message, via);
        li.dataset.deliveries = String(Number(li.dataset.deliveries || 0) + 1);
      }
      break;
    case 'message.updated':
      if (p.message && shown.has(p.message.id)) setText(shown.get(p.message.id), p.message);
      break;
    case 'message.deleted': {
      const li = shown.get(p.messageId);
      if (li) setText(li, { type: 'deleted' });
      break;
    }
    default:
      break;
  }
}

function setText(li, m) {
  const deleted = m.type === 'deleted' || m.deletedAt;
  li.classList.toggle('deleted', !!deleted);
  li.querySelector('.text').textContent = deleted ? 'message deleted' : m.text;
}

/** Shows a message once, in seq order; returns its element. */
function showMessage(m, via) {
  let li = shown.get(m.id);
  if (li) return li;
  const author = (m.user && m.user.name) || m.userId;
  const time = m.createdAt ? new Date(m.createdAt).toLocaleTimeString() : '';
  li = el(
    'li',
    {},
    el('span', { className: 'author', textContent: author }),
    el('span', { className: 'text' }),
    el('span', { className: 'time', textContent: time }),
  );
  setText(li, m);
  li.dataset.testid = 'message';
  li.dataset.id = m.id;
  li.dataset.seq = String(m.seq || 0);
  li.dataset.via = via;
  li.dataset.deliveries = '0';
  if (session && m.userId === session.user.id) li.classList.add('mine');
  shown.set(m.id, li);
  const list = $('messages');
  const after = [...list.children].find((other) => Number(other.dataset.seq) > (m.seq || 0));
  list.insertBefore(li, after || null);
  list.scrollTop = list.scrollHeight;
  return li;
}

async function send(ev) {
  ev.preventDefault();
  const input = $('message-input');
  const text = input.value.trim();
  if (!text || !open) return;
  input.value = '';
  try {
    const m = await api('POST', `/api/channels/${encodeURIComponent(open.id)}/messages`, { text });
    showMessage(m, 'sent');
    showError('');
  } catch (e) {
    input.value = text;
    showError(e.message);
  }
}

function init() {
  for (const b of document.querySelectorAll('[data-user]')) {
    b.addEventListener('click', () => login(b.dataset.user).catch((e) => showError(`Sign in failed: ${e.message}`)));
  }
  $('logout').addEventListener('click', logout);
  $('composer').addEventListener('submit', send);
  $('go-offline').addEventListener('click', () => rt && rt.disconnect());
  $('reconnect').addEventListener('click', () => {
    $('recovery').classList.add('hidden');
    if (rt) rt.reconnect();
  });
  const again = sessionStorage.getItem('chatsdk.demo.user');
  if (again) login(again).catch((e) => showError(`Sign in failed: ${e.message}`));
}

window.addEventListener('unhandledrejection', (ev) => {
  ev.preventDefault();
  showError(String(ev.reason && ev.reason.message ? ev.reason.message : ev.reason));
});

init();
