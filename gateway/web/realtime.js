// A small client of the Centrifugo client protocol (v2, JSON) over WebSocket, written for the
// pages this server serves: connect with a token, answer pings, subscribe with recovery
// (per-channel epoch and offset), dispatch publications, reconnect with backoff.
//
//   const rt = new Realtime({ getToken: async () => wsToken, onState: (s, info) => ...,
//                             onRefresh: () => ... /* the connection's token was renewed */ });
//   rt.subscribe('chat:<app>:<channel>', {
//     onPublication: (data, offset, { recovered }) => ..., // data = {type, payload}
//     onSubscribed: ({ recovered, wasRecovering, publications }) => ...,
//     onError: (error) => ...,
//   });
//   rt.connect();
//
// States: 'disconnected', 'connecting', 'connected'. A close with a code of 3500-3999 or
// 4500-4999 (the server says: do not come back) stops; any other close reconnects.

const REPLY_TIMEOUT_MS = 10000;

function socketUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/connection/websocket`;
}

/** Whether a close code asks the client not to reconnect. */
export function isTerminal(code) {
  return (code >= 3500 && code < 4000) || (code >= 4500 && code < 5000);
}

export class Realtime {
  constructor({
    url = socketUrl(),
    getToken,
    onState = () => {},
    onRefresh = () => {},
    minDelay = 200,
    maxDelay = 10000,
  } = {}) {
    this.url = url;
    this.getToken = getToken;
    this.onState = onState;
    this.onRefresh = onRefresh;
    this.minDelay = minDelay;
    this.maxDelay = maxDelay;
    this.state = 'disconnected';
    this.subs = new Map(); // channel -> {handlers, epoch, offset, active}
    this.pending = new Map(); // command id -> {resolve, reject, timer}
    this.nextId = 1;
    this.ws = null;
    this.attempt = 0;
    this.wanted = false; // whether the page wants a connection
    this.retryTimer = null;
    this.refreshTimer = null;
    this.idleTimer = null;
    this.pingEvery = 0;
  }

  setState(state, info = {}) {
    this.state = state;
    this.onState(state, info);
  }

  /** Opens the connection (and keeps it open until `disconnect`). */
  connect() {
    this.wanted = true;
    if (this.ws || this.retryTimer) return;
    this.open();
  }

  /** Closes the connection for good; subscriptions keep their position for a later `connect`. */
  disconnect() {
    this.wanted = false;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.drop(1000, 'client disconnect');
    this.setState('disconnected', { reason: 'disconnected by the page' });
  }

  /** Drops the socket now and connects again at once, recovering every subscription. */
  reconnect() {
    this.drop(1000, 'client reconnect');
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.attempt = 0;
    this.wanted = true;
    this.open();
  }

  subscribe(channel, handlers) {
    const sub = { handlers, epoch: null, offset: 0, active: false, held: [] };
    this.subs.set(channel, sub);
    if (this.state === 'connected') this.sendSubscribe(channel, sub);
  }

  unsubscribe(channel) {
    const sub = this.subs.get(channel);
    this.subs.delete(channel);
    if (sub && sub.active && this.state === 'connected') {
      this.call({ unsubscribe: { channel } }).catch(() => {});
    }
  }

  async open() {
    this.setState('connecting', { attempt: this.attempt });
    let token;
    try {
      token = await this.getToken();
    } catch (e) {
      this.scheduleRetry(`no token: ${e.message}`);
      return;
    }
    if (!this.wanted || this.ws) return;
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => this.handshake(ws, token);
    ws.onmessage = (ev) => this.onFrame(ws, ev.data);
    ws.onclose = (ev) => this.onClose(ws, ev.code, ev.reason);
    ws.onerror = () => {}; // the close event that follows says what happened
  }

  async handshake(ws, token) {
    try {
      const res = await this.call({ connect: { token, name: 'chatsdk-web', version: '1' } });
      if (ws !== this.ws) return;
      this.attempt = 0;
      this.pingEvery = res.ping || 0;
      this.watchIdle();
      this.scheduleRefresh(res);
      this.setState('connected', { client: res.client, node: res.node });
      for (const [channel, sub] of this.subs) this.sendSubscribe(channel, sub);
    } catch (e) {
      if (ws === this.ws) {
        this.drop(3000, 'connect failed');
        this.scheduleRetry(`connect failed: ${e.message}`);
      }
    }
  }

  async sendSubscribe(channel, sub) {
    const params = { channel };
    if (sub.epoch !== null) Object.assign(params, { recover: true, epoch: sub.epoch, offset: sub.offset });
    // Publications that arrive before the reply (the server may send both in one frame) wait
    // until the recovered ones are handed out, so that none of those is taken as seen.
    sub.active = false;
    sub.held = [];
    try {
      const res = await this.call({ subscribe: params });
      if (this.subs.get(channel) !== sub) {
        // Unsubscribed while the reply was on its way: the server holds the subscription.
        if (!this.subs.has(channel)) this.call({ unsubscribe: { channel } }).catch(() => {});
        return;
      }
      sub.active = true;
      const publications = [];
      for (const p of res.publications || []) {
        if (this.deliver(sub, p, true)) publications.push(p);
      }
      // Recovered: we hold everything up to the stream's top. Not recovered: start from the
      // top (the page refetches what it missed through REST).
      sub.offset = res.recovered ? Math.max(sub.offset, res.offset || 0) : res.offset || 0;
      sub.epoch = res.epoch || '';
      const held = sub.held;
      sub.held = [];
      for (const p of held) this.deliver(sub, p);
      sub.handlers.onSubscribed?.({
        recovered: !!res.recovered,
        wasRecovering: !!res.was_recovering,
        publications,
      });
    } catch (e) {
      if (e.closed) return; // the connection went: its next one subscribes again
      if ((e.temporary || e.timeout) && this.state === 'connected') {
        setTimeout(() => this.subs.get(channel) === sub && this.sendSubscribe(channel, sub), this.minDelay);
      } else {
        sub.handlers.onError?.(e);
      }
    }
  }

  /** Hands a publication to its subscription once; returns whether it was new. */
  deliver(sub, pub, recovered = false) {
    const offset = pub.offset || 0;
    if (offset && offset <= sub.offset) return false;
    if (offset) sub.offset = offset;
    try {
      sub.handlers.onPublication?.(pub.data, offset, { recovered });
    } catch (e) {
      sub.handlers.onError?.(e);
    }
    return true;
  }

  call(command) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return Promise.reject(Object.assign(new Error('not connected'), { closed: true }));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(Object.assign(new Error('no reply in time'), { timeout: true }));
      }, REPLY_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
      ws.send(JSON.stringify({ id, ...command }));
    });
  }

  onFrame(ws, text) {
    if (ws !== this.ws) return;
    this.watchIdle();
    for (const line of String(text).split('\n')) {
      if (!line.trim()) continue;
      let msg;
      try {
        msg = JSON.parse(line);
      } catch {
        continue;
      }
      if (msg.id) {
        const p = this.pending.get(msg.id);
        if (!p) continue;
        this.pending.delete(msg.id);
        clearTimeout(p.timer);
        if (msg.error) {
          const e = new Error(msg.error.message || `error ${msg.error.code}`);
          e.code = msg.error.code;
          e.temporary = !!msg.error.temporary;
          p.reject(e);
        } else {
          const result = Object.keys(msg).find((k) => k !== 'id');
          p.resolve(result ? msg[result] : {});
        }
      } else if (msg.push) {
        this.onPush(msg.push);
      } else if (Object.keys(msg).length === 0) {
        ws.send('{}'); // the server's ping: answer with a pong
      }
    }
  }

  onPush(push) {
    const sub = this.subs.get(push.channel);
    if (push.pub && sub) {
      if (sub.active) this.deliver(sub, push.pub);
      else sub.held.push(push.pub);
    } else if (push.unsubscribe && sub) {
      sub.active = false;
      if ((push.unsubscribe.code || 0) >= 2500) {
        setTimeout(() => this.subs.get(push.channel) === sub && this.sendSubscribe(push.channel, sub), this.minDelay);
      } else {
        sub.handlers.onError?.(new Error(`unsubscribed by the server: ${push.unsubscribe.reason || push.unsubscribe.code}`));
      }
    } else if (push.disconnect) {
      this.drop(push.disconnect.code || 3000, push.disconnect.reason || '');
      this.afterClose(push.disconnect.code || 3000, push.disconnect.reason || '');
    }
  }

  onClose(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.cleanup();
    this.afterClose(code, reason);
  }

  afterClose(code, reason) {
    for (const sub of this.subs.values()) sub.active = false;
    if (!this.wanted) return;
    if (isTerminal(code)) {
      this.wanted = false;
      this.setState('disconnected', { code, reason });
    } else {
      this.scheduleRetry(reason || `closed (${code})`, code);
    }
  }

  scheduleRetry(reason, code) {
    if (!this.wanted || this.retryTimer) return;
    const base = Math.min(this.maxDelay, this.minDelay * 2 ** this.attempt);
    const delay = Math.round(base / 2 + (Math.random() * base) / 2);
    this.attempt += 1;
    this.setState('connecting', { attempt: this.attempt, delay, reason, code });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.wanted && !this.ws) this.open();
    }, delay);
  }

  // Refreshes the connection token before it expires (`expires`, `ttl` of the connect result).
  scheduleRefresh(res) {
    clearTimeout(this.refreshTimer);
    if (!res.expires || !res.ttl) return;
    const ws = this.ws;
    this.refreshTimer = setTimeout(async () => {
      try {
        const next = await this.call({ refresh: { token: await this.getToken() } });
        if (ws === this.ws) {
          this.scheduleRefresh(next);
          this.onRefresh();
        }
      } catch {
        if (ws === this.ws) this.reconnect();
      }
    }, Math.max(1000, res.ttl * 800));
  }

  // A server that pings every N seconds and then says nothing for much longer is gone.
  watchIdle() {
    clearTimeout(this.idleTimer);
    if (!this.pingEvery) return;
    const ws = this.ws;
    this.idleTimer = setTimeout(() => {
      if (ws === this.ws) {
        this.drop(3012, 'no ping from the server');
        this.afterClose(3012, 'no ping from the server');
      }
    }, (this.pingEvery + 10) * 1000);
  }

  drop(code, reason) {
    const ws = this.ws;
    this.ws = null;
    this.cleanup();
    if (ws) {
      ws.onclose = ws.onmessage = ws.onopen = null;
      try {
        ws.close(code === 1000 || (code >= 3000 && code < 5000) ? code : 1000, reason);
      } catch {
        ws.close();
      }
    }
  }

  cleanup() {
    clearTimeout(this.refreshTimer);
    clearTimeout(this.idleTimer);
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(Object.assign(new Error('connection closed'), { closed: true }));
    }
    this.pending.clear();
  }
}
