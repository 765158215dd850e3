#!/usr/bin/env node
// Peer server for the ChatSDK benchmark: a plain `ws` (npm) WebSocket pub/sub
// server with named rooms.
//
// Usage:   NODE_PATH=<NODE_MODULES> node ws_server.js [--host 127.0.0.1] [--port 0]
//          (env fallbacks: PEER_HOST / PEER_PORT; defaults 127.0.0.1 and 0 = any free port)
// Startup: once bound, prints exactly one line `LISTENING <port>\n` to stdout.
//          Nothing else is ever written to stdout; errors go to stderr.
// Stops:   on SIGTERM / SIGINT (exit code 0).
//
// Wire protocol (one JSON object per WebSocket text frame; the server also
// accepts binary frames holding the same UTF-8 JSON, but always replies in text
// frames):
//   C->S {"op":"sub","room":"r1"}              S->C {"op":"subok","room":"r1"}
//   C->S {"op":"unsub","room":"r1"}            S->C {"op":"unsubok","room":"r1"}
//   C->S {"op":"pub","room":"r1","data":<JSON>}
//        S->every socket subscribed to r1 (the publisher only if it is
//        subscribed itself): {"room":"r1","data":<JSON>}
//   C->S {"op":"ping"}                         S->C {"op":"pong"}
//   anything else                              S->C {"op":"error","reason":"..."}
// `pub` is not acknowledged. The broadcast frame is encoded once and the same
// bytes are sent to every subscriber. `data` is re-serialised with
// JSON.stringify, so insignificant whitespace in the published JSON is dropped.
'use strict';

const { WebSocketServer } = require('ws');

function parseArgs(argv) {
  const out = {
    host: process.env.PEER_HOST || '127.0.0.1',
    port: process.env.PEER_PORT !== undefined ? Number(process.env.PEER_PORT) : 0,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf('=');
    const key = eq >= 0 ? a.slice(0, eq) : a;
    const val = () => (eq >= 0 ? a.slice(eq + 1) : argv[++i]);
    if (key === '--host') out.host = val();
    else if (key === '--port') out.port = Number(val());
    else {
      process.stderr.write(`ws_server: unknown argument ${a}\n`);
      process.exit(2);
    }
  }
  if (!Number.isInteger(out.port) || out.port < 0 || out.port > 65535) {
    process.stderr.write('ws_server: bad --port\n');
    process.exit(2);
  }
  return out;
}

const { host, port } = parseArgs(process.argv.slice(2));

/** room name -> Set<WebSocket> */
const rooms = new Map();

const PONG = Buffer.from('{"op":"pong"}');
const TEXT = { binary: false };

function sendJson(ws, obj) {
  ws.send(JSON.stringify(obj));
}

function subscribe(ws, room) {
  let set = rooms.get(room);
  if (set === undefined) {
    set = new Set();
    rooms.set(room, set);
  }
  set.add(ws);
  ws.rooms.add(room);
}

function unsubscribe(ws, room) {
  const set = rooms.get(room);
  if (set !== undefined) {
    set.delete(ws);
    if (set.size === 0) rooms.delete(room);
  }
  ws.rooms.delete(room);
}

function publish(room, data) {
  const set = rooms.get(room);
  if (set === undefined) return;
  // Encode once; a Buffer sent with {binary:false} goes out as a text frame
  // without being re-encoded per recipient.
  const frame = Buffer.from(JSON.stringify({ room, data }));
  for (const peer of set) {
    if (peer.readyState === 1 /* OPEN */) peer.send(frame, TEXT);
  }
}

const wss = new WebSocketServer({
  host,
  port,
  perMessageDeflate: false,
  clientTracking: false,
});

wss.on('connection', (ws) => {
  ws.rooms = new Set();

  ws.on('message', (raw) => {
    let msg;
    try {
      msg = JSON.parse(raw.toString());
    } catch (_) {
      sendJson(ws, { op: 'error', reason: 'invalid JSON' });
      return;
    }
    if (msg === null || typeof msg !== 'object') {
      sendJson(ws, { op: 'error', reason: 'expected a JSON object' });
      return;
    }
    switch (msg.op) {
      case 'pub':
        if (typeof msg.room !== 'string') break;
        publish(msg.room, msg.data === undefined ? null : msg.data);
        return;
      case 'sub':
        if (typeof msg.room !== 'string') break;
        subscribe(ws, msg.room);
        sendJson(ws, { op: 'subok', room: msg.room });
        return;
      case 'unsub':
        if (typeof msg.room !== 'string') break;
        unsubscribe(ws, msg.room);
        sendJson(ws, { op: 'unsubok', room: msg.room });
        return;
      case 'ping':
        ws.send(PONG, TEXT);
        return;
      default:
        sendJson(ws, { op: 'error', reason: 'unknown op' });
        return;
    }
    sendJson(ws, { op: 'error', reason: 'room must be a string' });
  });

  ws.on('close', () => {
    for (const room of ws.rooms) unsubscribe(ws, room);
  });
  ws.on('error', () => {
    // A 'close' event always follows; nothing to do here, but an unhandled
    // 'error' event would crash the process.
  });
});

wss.on('listening', () => {
  process.stdout.write(`LISTENING ${wss.address().port}\n`);
});

wss.on('error', (err) => {
  process.stderr.write(`ws_server: ${err.stack || err}\n`);
  process.exit(1);
});

function shutdown() {
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
