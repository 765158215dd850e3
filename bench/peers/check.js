#!/usr/bin/env node
// End-to-end smoke check of the three benchmark peers, speaking their wire
// protocols over raw WebSockets (the `ws` package as a plain client; no
// socket.io or nats client library), exactly as the Rust load generator must.
//
// Usage: node bench/peers/check.js         (runs install.sh first; -v prints every frame)
// Ends with a line "N passed, N failed"; exit code 1 if anything failed.
'use strict';

const { execFileSync, spawn } = require('child_process');
const path = require('path');

const VERBOSE = process.argv.includes('-v');
const HERE = __dirname;

// ---- install + parse KEY=VALUE lines, as the harness does ------------------
const kv = {};
for (const line of execFileSync('bash', [path.join(HERE, 'install.sh')], {
  stdio: ['ignore', 'pipe', 'inherit'],
}).toString().split('\n')) {
  const m = /^([A-Z_]+)=(.*)$/.exec(line);
  if (m) kv[m[1]] = m[2];
}
for (const k of ['NODE', 'NODE_MODULES', 'NATS_SERVER', 'NATS_CONF', 'WS_SERVER', 'SOCKETIO_SERVER']) {
  if (!kv[k]) throw new Error(`install.sh did not print ${k}=`);
}
const WebSocket = require(path.join(kv.NODE_MODULES, 'ws'));

// ---- tiny test framework -----------------------------------------------------
let passed = 0;
let failed = 0;
function check(name, cond, detail) {
  if (cond) {
    passed++;
    console.log(`ok   ${name}`);
  } else {
    failed++;
    console.log(`FAIL ${name}${detail !== undefined ? ` -- ${detail}` : ''}`);
  }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const show = (b) => JSON.stringify(b.toString());

// Spawns a server, resolves {proc, port, stdout()} once `re` matches a line on
// stdout (or stderr if fromStderr).
function startServer(cmd, args, env, re, fromStderr) {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let done = false;
    const timer = setTimeout(() => {
      if (!done) reject(new Error(`${cmd}: no port line within 10 s; stdout=${out} stderr=${err}`));
    }, 10000);
    const scan = () => {
      const m = re.exec(fromStderr ? err : out);
      if (m && !done) {
        done = true;
        clearTimeout(timer);
        resolve({ proc, port: Number(m[1]), stdout: () => out, stderr: () => err });
      }
    };
    proc.stdout.on('data', (d) => { out += d; scan(); });
    proc.stderr.on('data', (d) => { err += d; scan(); });
    proc.on('exit', (code) => {
      if (!done) reject(new Error(`${cmd} exited ${code}: ${err}`));
    });
  });
}

function stopServer(srv) {
  return new Promise((resolve) => {
    const t = setTimeout(() => { srv.proc.kill('SIGKILL'); resolve({ code: null, signal: 'SIGKILL' }); }, 5000);
    srv.proc.once('exit', (code, signal) => { clearTimeout(t); resolve({ code, signal }); });
    srv.proc.kill('SIGTERM');
  });
}

// A raw client that records every frame (payload + binary flag) in order.
class Client {
  constructor(url, opts) {
    this.frames = [];
    this.waiters = [];
    this.ws = new WebSocket(url, { perMessageDeflate: false, ...opts });
    this.ws.on('message', (data, isBinary) => {
      const f = { data: Buffer.from(data), binary: isBinary };
      if (VERBOSE) console.log(`     <- ${isBinary ? 'bin ' : 'text'} ${show(f.data)}`);
      this.frames.push(f);
      this.waiters = this.waiters.filter((w) => !w());
    });
    this.opened = new Promise((res, rej) => {
      this.ws.once('open', res);
      this.ws.once('error', rej);
      this.ws.once('unexpected-response', (req, resp) => rej(new Error(`HTTP ${resp.statusCode}`)));
    });
    this.closed = new Promise((res) => this.ws.once('close', (code) => res(code)));
  }
  send(s, binary = false) {
    if (VERBOSE) console.log(`     -> ${binary ? 'bin ' : 'text'} ${show(s)}`);
    this.ws.send(binary ? Buffer.from(s) : s, { binary });
  }
  // Waits until pred(frames) is truthy; returns its value (or undefined on timeout).
  until(pred, ms = 3000) {
    return new Promise((resolve) => {
      const t = setTimeout(() => { resolve(undefined); }, ms);
      const test = () => {
        const v = pred(this.frames);
        if (v) { clearTimeout(t); resolve(v); return true; }
        return false;
      };
      if (!test()) this.waiters.push(test);
    });
  }
  texts() { return this.frames.map((f) => f.data.toString()); }
  close() { this.ws.close(); return this.closed; }
}

// What a WebSocket upgrade to `url` yields: an HTTP status, "101 then closed
// (code N)", or a socket error.
async function probe(url) {
  const c = new WebSocket(url);
  const t0 = Date.now();
  return new Promise((resolve) => {
    c.on('unexpected-response', (req, resp) => { resolve(`HTTP ${resp.statusCode}`); req.destroy(); });
    c.on('open', () => {
      const t = setTimeout(() => { resolve('HTTP 101, stays open'); c.terminate(); }, 1500);
      c.on('close', (code) => { clearTimeout(t); resolve(`HTTP 101 then closed (code ${code})`); });
    });
    c.on('error', (e) => resolve(`no HTTP response, ${e.message} after ${Date.now() - t0} ms`));
  });
}

// ---- ws peer --------------------------------------------------------------------
async function checkWs() {
  console.log('== ws_server.js');
  const srv = await startServer(kv.NODE, [kv.WS_SERVER, '--host', '127.0.0.1', '--port', '0'],
    { NODE_PATH: kv.NODE_MODULES }, /^LISTENING (\d+)$/m);
  const url = `ws://127.0.0.1:${srv.port}`;
  const a = new Client(url);
  const b = new Client(url);
  const c = new Client(url);
  await Promise.all([a.opened, b.opened, c.opened]);

  a.send('{"op":"sub","room":"r1"}');
  b.send('{"op":"sub","room":"r1"}', true); // binary frame accepted too
  const sa = await a.until((f) => f[0]);
  const sb = await b.until((f) => f[0]);
  check('sub -> subok (text frame)', sa && !sa.binary && sa.data.toString() === '{"op":"subok","room":"r1"}', sa && show(sa.data));
  check('sub in a binary frame -> subok', sb && sb.data.toString() === '{"op":"subok","room":"r1"}');

  c.send('{"op":"ping"}');
  const pong = await c.until((f) => f[0]);
  check('ping -> pong', pong && pong.data.toString() === '{"op":"pong"}', pong && show(pong.data));

  c.send('{"op":"pub","room":"r1","data":{"seq":1,"t":[1,2.5,"x"]}}');
  const want = '{"room":"r1","data":{"seq":1,"t":[1,2.5,"x"]}}';
  const ga = await a.until((f) => f[1]);
  const gb = await b.until((f) => f[1]);
  check('pub fans out to subscribers', ga && gb && ga.data.toString() === want && gb.data.toString() === want,
    ga && show(ga.data));
  await sleep(100);
  check('publisher not subscribed gets no echo', c.frames.length === 1, c.texts().join(' | '));

  a.send('{"op":"pub","room":"r1","data":"self"}');
  const self = await a.until((f) => f[2]);
  check('subscribed publisher receives its own message', self && self.data.toString() === '{"room":"r1","data":"self"}');

  await b.close();
  c.send('{"op":"pub","room":"r1","data":2}');
  const after = await a.until((f) => f[3]);
  check('publish after a subscriber closed still works', after && after.data.toString() === '{"room":"r1","data":2}');

  c.send('not json');
  const e = await c.until((f) => f[1]);
  check('invalid JSON -> error frame', e && JSON.parse(e.data.toString()).op === 'error');

  await a.close();
  await c.close();
  const st = await stopServer(srv);
  check('SIGTERM -> exit 0', st.code === 0, JSON.stringify(st));
  check('stdout is exactly one LISTENING line', srv.stdout() === `LISTENING ${srv.port}\n`, show(srv.stdout()));
}

// ---- socket.io peer ---------------------------------------------------------------
async function checkSocketIo() {
  console.log('== socketio_server.js');
  const srv = await startServer(kv.NODE,
    [kv.SOCKETIO_SERVER, '--host', '127.0.0.1', '--port', '0', '--ping-interval', '1000', '--ping-timeout', '1000'],
    { NODE_PATH: kv.NODE_MODULES }, /^LISTENING (\d+)$/m);
  const base = `ws://127.0.0.1:${srv.port}`;
  const url = `${base}/socket.io/?EIO=4&transport=websocket`;

  console.log(`     upgrade on /foo: ${await probe(`${base}/foo`)}`);
  console.log(`     transport=polling: ${await probe(`${base}/socket.io/?EIO=4&transport=polling`)}`);
  console.log(`     EIO=3: ${await probe(`${base}/socket.io/?EIO=3&transport=websocket`)}`);

  const a = new Client(url);
  const b = new Client(url);
  await Promise.all([a.opened, b.opened]);
  const open = await a.until((f) => f[0]);
  const ot = open && open.data.toString();
  console.log(`     S->C open:    ${JSON.stringify(ot)}`);
  check('EIO open packet 0{...} as text frame', open && !open.binary && ot[0] === '0');
  const oj = JSON.parse(ot.slice(1));
  check('open has sid/pingInterval/pingTimeout/maxPayload/upgrades=[]',
    typeof oj.sid === 'string' && oj.pingInterval === 1000 && oj.pingTimeout === 1000 &&
    oj.maxPayload === 1000000 && Array.isArray(oj.upgrades) && oj.upgrades.length === 0, ot);

  a.send('40');
  b.send('40');
  const con = await a.until((f) => f[1]);
  await b.until((f) => f[1]);
  const ct = con && con.data.toString();
  console.log(`     S->C connect: ${JSON.stringify(ct)}`);
  check('40 -> 40{"sid":...}', ct && /^40\{"sid":"[^"]+"\}$/.test(ct), ct);
  check('SIO sid differs from EIO sid', ct && JSON.parse(ct.slice(2)).sid !== oj.sid);

  a.send('421["sub","room.1"]');
  const ack = await a.until((f) => f[3] && f);
  console.log(`     sub with ack: ${JSON.stringify(a.texts().slice(2))}`);
  check('421["sub",...] -> 431["room.1"] then 42["subok","room.1"]',
    ack && ack[2].data.toString() === '431["room.1"]' && ack[3].data.toString() === '42["subok","room.1"]');
  b.send('42["sub","room.1"]');
  const bs = await b.until((f) => f[2]);
  check('42["sub",...] -> 42["subok","room.1"]', bs && bs.data.toString() === '42["subok","room.1"]');

  b.send('42["pub","room.1",{"seq":7,"body":"hi"}]');
  const m1 = await a.until((f) => f[4]);
  const m2 = await b.until((f) => f[3]);
  const wantMsg = '42["msg","room.1",{"seq":7,"body":"hi"}]';
  console.log(`     S->C event:   ${m1 && JSON.stringify(m1.data.toString())}`);
  check('pub -> 42["msg","room.1",data] to every member (incl. publisher)',
    m1 && m2 && m1.data.toString() === wantMsg && m2.data.toString() === wantMsg);

  // Burst: one WebSocket frame per Engine.IO packet, no batching.
  const N = 200;
  for (let i = 0; i < N; i++) b.send(`42["pub","room.1",${i}]`);
  const burst = await a.until((f) => f.filter((x) => x.data.toString().startsWith('42["msg"')).length >= N + 1 && f);
  const msgs = burst ? burst.filter((x) => x.data.toString().startsWith('42["msg"')) : [];
  check(`burst of ${N}: one text frame per event, in order`,
    msgs.length === N + 1 && msgs.slice(1).every((x, i) => !x.binary && x.data.toString() === `42["msg","room.1",${i}]`));

  // Heartbeat: the server sends "2" every pingInterval; the client must answer
  // "3" within pingTimeout. a answers, b never does.
  a.ws.on('message', (d) => { if (d.toString() === '2') a.send('3'); });
  const ping = await a.until((f) => f.find((x) => x.data.toString() === '2'), 2500);
  check('server sends ping "2" (text frame)', ping && !ping.binary);
  const bClose = await Promise.race([b.closed, sleep(4000).then(() => 'timeout')]);
  console.log(`     client that never pongs: closed by server, ws close code ${bClose}`);
  check('client that never answers "2" is disconnected', bClose !== 'timeout');
  await sleep(1500);
  check('client answering "2" with "3" stays connected', a.ws.readyState === WebSocket.OPEN);

  // EIO4 servers treat a client-sent ping as a protocol error.
  const c = new Client(url);
  await c.opened;
  await c.until((f) => f[0]);
  c.send('40');
  await c.until((f) => f[1]);
  c.send('2');
  const cClose = await Promise.race([c.closed, sleep(1000).then(() => 'still open')]);
  console.log(`     client-sent "2" -> ${cClose === 'still open' ? 'ignored' : `connection closed (code ${cClose})`}; ` +
    `frames after it: ${JSON.stringify(c.texts().slice(2))}`);
  check('client-sent "2" kills the connection ("invalid heartbeat direction")', cClose !== 'still open');

  a.send('41');
  await a.close();
  const st = await stopServer(srv);
  check('SIGTERM -> exit 0', st.code === 0, JSON.stringify(st));
  check('stdout is exactly one LISTENING line', srv.stdout() === `LISTENING ${srv.port}\n`, show(srv.stdout()));
}

// ---- NATS over WebSocket --------------------------------------------------------
// Splits a byte stream into NATS protocol messages; returns [msgs, rest].
function natsSplit(buf) {
  const out = [];
  let pos = 0;
  for (;;) {
    const eol = buf.indexOf('\r\n', pos);
    if (eol < 0) break;
    const line = buf.slice(pos, eol).toString();
    if (line.startsWith('MSG ')) {
      const parts = line.split(' ');
      const n = Number(parts[parts.length - 1]);
      if (buf.length < eol + 2 + n + 2) break;
      out.push({ line, payload: buf.slice(eol + 2, eol + 2 + n).toString() });
      pos = eol + 2 + n + 2;
    } else {
      out.push({ line });
      pos = eol + 2;
    }
  }
  return [out, buf.slice(pos)];
}

async function checkNats() {
  console.log('== nats-server (websocket)');
  const srv = await startServer(kv.NATS_SERVER, ['-c', kv.NATS_CONF], { CHATSDK_NATS_WS_PORT: '-1' },
    /Listening for websocket clients on ws:\/\/[^:]+:(\d+)/, true);
  const url = `ws://127.0.0.1:${srv.port}`;
  const a = new Client(url);
  const b = new Client(url);
  await Promise.all([a.opened, b.opened]);

  const info = await a.until((f) => f[0]);
  const it = info && info.data.toString();
  console.log(`     first frame: ${info.binary ? 'BINARY' : 'TEXT'} ${JSON.stringify(it.slice(0, 60) + '...')}`);
  console.log(`     INFO tail bytes: ${JSON.stringify(it.slice(-4))}`);
  check('INFO {...} \\r\\n arrives first, alone in one frame', it && it.startsWith('INFO {') && it.endsWith('\r\n') &&
    it.indexOf('\r\n') === it.length - 2);
  const infoJson = JSON.parse(it.slice(5).trim());
  console.log(`     INFO: version=${infoJson.version} proto=${infoJson.proto} max_payload=${infoJson.max_payload} headers=${infoJson.headers}`);

  a.send('CONNECT {"verbose":false,"pedantic":false,"protocol":1}\r\nSUB room.1 1\r\nPING\r\n');
  const pong = await a.until((f) => f.length >= 2 &&
    natsSplit(Buffer.concat(f.slice(1).map((x) => x.data)))[0].some((m) => m.line === 'PONG'));
  a.frames.slice(1).forEach((x) =>
    console.log(`     after CONNECT+SUB+PING (sent as one text frame) got: ${x.binary ? 'BINARY' : 'TEXT'} ${show(x.data)}`));
  check('PONG\\r\\n (plus a second INFO) after CONNECT', pong &&
    natsSplit(Buffer.concat(a.frames.slice(1).map((x) => x.data)))[0][0].line === 'PONG');
  const aBase = a.frames.length;

  await b.until((f) => f[0]);
  const bBase = b.frames.length;
  // b sends its commands as a binary frame and split across two frames,
  // to prove the server treats the inbound side as a byte stream.
  b.send('CONNECT {"verbose":false,"pedantic":false,"protocol":1}\r\nPUB room.1 5\r\nhel', true);
  b.send('lo\r\nPING\r\n', true);
  const bp = await b.until((f) => natsSplit(Buffer.concat(f.slice(bBase).map((x) => x.data)))[0].some((m) => m.line === 'PONG'));
  check('publisher gets PONG (commands split over 2 binary frames)', bp);
  const msg = await a.until((f) => f[aBase]);
  console.log(`     subscriber got: ${msg.binary ? 'BINARY' : 'TEXT'} ${show(msg.data)}`);
  check('MSG room.1 1 5\\r\\nhello\\r\\n', msg && msg.data.toString() === 'MSG room.1 1 5\r\nhello\r\n');
  check('server frames are binary', a.frames.every((f) => f.binary) && b.frames.every((f) => f.binary));

  // Burst: does the server coalesce several MSGs in one frame? Are messages
  // ever split across frames?
  const N = 5000;
  let cmds = '';
  for (let i = 0; i < N; i++) { const p = `m${i}`; cmds += `PUB room.1 ${p.length}\r\n${p}\r\n`; }
  const start = a.frames.length;
  b.send(cmds + 'PING\r\n');
  const done = await a.until((f) => {
    const [ms] = natsSplit(Buffer.concat(f.slice(start).map((x) => x.data)));
    return ms.length >= N;
  }, 10000);
  const fr = a.frames.slice(start);
  const [ms, rest] = natsSplit(Buffer.concat(fr.map((x) => x.data)));
  let splitFrames = 0;
  for (const f of fr) { if (natsSplit(f.data)[1].length !== 0) splitFrames++; }
  const perFrame = fr.map((f) => natsSplit(f.data)[0].length);
  console.log(`     burst of ${N} PUBs in one frame -> subscriber got ${fr.length} frames, ` +
    `msgs/frame min ${Math.min(...perFrame)} max ${Math.max(...perFrame)}, frames ending mid-message: ${splitFrames}`);
  check(`burst of ${N}: all delivered in order`, done && rest.length === 0 &&
    ms.every((m, i) => m.line === `MSG room.1 1 ${`m${i}`.length}` && m.payload === `m${i}`));

  // Large payload (below the 1 MiB max_payload).
  const big = 'x'.repeat(300000);
  const s2 = a.frames.length;
  b.send(`PUB room.1 ${big.length}\r\n${big}\r\n`);
  const bigDone = await a.until((f) => natsSplit(Buffer.concat(f.slice(s2).map((x) => x.data)))[0].length >= 1, 5000);
  console.log(`     300000-byte payload -> ${a.frames.length - s2} frame(s), sizes ${a.frames.slice(s2).map((f) => f.data.length)}`);
  check('large payload delivered', bigDone);

  // With a browser User-Agent nats-server caps frames at 4096 bytes.
  const c = new Client(url, { headers: { 'User-Agent': 'Mozilla/5.0' } });
  await c.opened;
  await c.until((f) => f[0]);
  c.send('CONNECT {"verbose":false,"pedantic":false,"protocol":1}\r\nSUB room.1 1\r\nPING\r\n');
  await c.until((f) => f[1]);
  const s3 = c.frames.length;
  b.send(`PUB room.1 10000\r\n${'y'.repeat(10000)}\r\n`);
  await c.until((f) => natsSplit(Buffer.concat(f.slice(s3).map((x) => x.data)))[0].length >= 1, 5000);
  console.log(`     UA "Mozilla/..." 10000-byte payload -> frame sizes ${c.frames.slice(s3).map((f) => f.data.length)}`);
  await c.close();

  // A non-subscribed publisher does not get its own message; the server echoes
  // to a publisher's own subscriptions by default (CONNECT "echo" defaults to true).
  const s4 = b.frames.length;
  b.send('SUB room.1 9\r\nPUB room.1 4\r\necho\r\nPING\r\n');
  const echoed = await b.until((f) => f.slice(s4).map((x) => x.data.toString()).join('').includes('PONG'));
  const echoText = b.frames.slice(s4).map((x) => x.data.toString()).join('');
  console.log(`     publisher subscribed to its own subject gets: ${JSON.stringify(echoText)}`);
  check('echo to own subscription by default', echoed && echoText.includes('MSG room.1 9 4\r\necho\r\n'));

  await a.close();
  await b.close();
  const st = await stopServer(srv);
  console.log(`     nats-server on SIGTERM: ${JSON.stringify(st)}`);
  check('nats-server exits on SIGTERM', st.code !== null || st.signal === 'SIGTERM');
}

(async () => {
  for (const f of [checkWs, checkSocketIo, checkNats]) {
    try {
      await f();
    } catch (e) {
      check(`${f.name} ran to completion`, false, e.stack);
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
})();
