#!/usr/bin/env node
// Peer server for the ChatSDK benchmark: a stock socket.io 4 server (default
// in-memory adapter) on a plain node http server, WebSocket transport only.
//
// Usage:   NODE_PATH=<NODE_MODULES> node socketio_server.js [--host 127.0.0.1] [--port 0]
//                 [--ping-interval 25000] [--ping-timeout 20000]
//          (env fallbacks: PEER_HOST / PEER_PORT; defaults 127.0.0.1 and 0 = any free port;
//          the ping options are Engine.IO's pingInterval/pingTimeout in ms, defaults
//          are socket.io's own)
// Startup: once bound, prints exactly one line `LISTENING <port>\n` to stdout.
//          Nothing else is ever written to stdout; errors go to stderr.
// Stops:   on SIGTERM / SIGINT (exit code 0).
//
// Events: `sub` (room[, ack])  -> socket.join(room); ack(room) if an ack callback
//                                 was given; then emit("subok", room) to the socket.
//         `unsub` (room[, ack]) -> socket.leave(room); ack(room); emit("unsubok", room).
//         `pub` (room, data)    -> io.to(room).emit("msg", room, data)
//                                 (reaches the publisher too if it joined the room;
//                                 the packet is encoded once by the adapter).
//
// ---------------------------------------------------------------------------
// Raw wire exchange (Engine.IO v4 + Socket.IO v5 over one WebSocket), as seen
// by a client that does not use the socket.io client library. Every Engine.IO
// packet is exactly one WebSocket TEXT frame (no batching over websocket; the
// \x1e record separator is only used by HTTP long-polling). The first character
// of each frame is the Engine.IO packet type: 0 open, 1 close, 2 ping, 3 pong,
// 4 message. A `4` frame carries one Socket.IO packet whose first character is
// the Socket.IO type: 0 CONNECT, 1 DISCONNECT, 2 EVENT, 3 ACK, 4 CONNECT_ERROR.
// So "40" = EIO message + SIO CONNECT, "42" = EIO message + SIO EVENT, etc.
//
//   1. Client opens   ws://HOST:PORT/socket.io/?EIO=4&transport=websocket
//      (plain HTTP Upgrade; no cookies, no polling handshake first; any other
//      path -> HTTP 400/404, transport=polling -> 400 since polling is disabled)
//   2. S->C  0{"sid":"<20 chars>","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}
//   3. C->S  40                         (connect to the main namespace "/")
//   4. S->C  40{"sid":"<20 chars>"}     (Socket.IO session id; differs from the EIO sid)
//   5. C->S  42["sub","room.1"]         (subscribe, no ack)
//      S->C  42["subok","room.1"]
//      or with an ack id N (any decimal integer, chosen by the client):
//      C->S  42N["sub","room.1"]   e.g. 421["sub","room.1"]
//      S->C  43N["room.1"]         e.g. 431["room.1"]   (the ack comes first)
//      S->C  42["subok","room.1"]
//   6. C->S  42["pub","room.1",{"any":"json"}]
//      S->every member of room.1   42["msg","room.1",{"any":"json"}]
//   7. S->C  2   every pingInterval (25 s); the client MUST answer
//      C->S  3   within pingTimeout (20 s), or the server closes the connection.
//      (Engine.IO v4: the server pings, the client pongs; a client-sent "2" is
//      not answered.)
//   8. Close: C->S "41" (SIO disconnect) and/or "1" (EIO close), or just close
//      the WebSocket.
//   Limits: a frame larger than maxPayload (maxHttpBufferSize, 1e6 bytes by
//   default) makes the server drop the connection. Frames are JSON text; this
//   server never sends binary attachments (type 5/6) for JSON data.
// ---------------------------------------------------------------------------
'use strict';

const http = require('http');
const { Server } = require('socket.io');

function parseArgs(argv) {
  const out = {
    host: process.env.PEER_HOST || '127.0.0.1',
    port: process.env.PEER_PORT !== undefined ? Number(process.env.PEER_PORT) : 0,
    pingInterval: 25000,
    pingTimeout: 20000,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf('=');
    const key = eq >= 0 ? a.slice(0, eq) : a;
    const val = () => (eq >= 0 ? a.slice(eq + 1) : argv[++i]);
    if (key === '--host') out.host = val();
    else if (key === '--port') out.port = Number(val());
    else if (key === '--ping-interval') out.pingInterval = Number(val());
    else if (key === '--ping-timeout') out.pingTimeout = Number(val());
    else {
      process.stderr.write(`socketio_server: unknown argument ${a}\n`);
      process.exit(2);
    }
  }
  if (!Number.isInteger(out.port) || out.port < 0 || out.port > 65535) {
    process.stderr.write('socketio_server: bad --port\n');
    process.exit(2);
  }
  for (const k of ['pingInterval', 'pingTimeout']) {
    if (!Number.isInteger(out[k]) || out[k] <= 0) {
      process.stderr.write(`socketio_server: bad ${k}\n`);
      process.exit(2);
    }
  }
  return out;
}

const { host, port, pingInterval, pingTimeout } = parseArgs(process.argv.slice(2));

const httpServer = http.createServer((req, res) => {
  res.writeHead(404);
  res.end();
});

const io = new Server(httpServer, {
  transports: ['websocket'],
  perMessageDeflate: false,
  httpCompression: false,
  serveClient: false,
  pingInterval,
  pingTimeout,
});

io.on('connection', (socket) => {
  socket.on('sub', (room, ack) => {
    if (typeof room !== 'string') return;
    socket.join(room);
    if (typeof ack === 'function') ack(room);
    socket.emit('subok', room);
  });
  socket.on('unsub', (room, ack) => {
    if (typeof room !== 'string') return;
    socket.leave(room);
    if (typeof ack === 'function') ack(room);
    socket.emit('unsubok', room);
  });
  socket.on('pub', (room, data) => {
    if (typeof room !== 'string') return;
    io.to(room).emit('msg', room, data === undefined ? null : data);
  });
});

httpServer.on('error', (err) => {
  process.stderr.write(`socketio_server: ${err.stack || err}\n`);
  process.exit(1);
});

httpServer.listen(port, host, () => {
  process.stdout.write(`LISTENING ${httpServer.address().port}\n`);
});

function shutdown() {
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
