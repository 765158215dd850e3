// Drives the public `centrifuge` client (npm) against a chatsdk node: connect with a token
// minted over REST, subscribe, receive message.new, drop the connection, miss messages,
// reconnect, recover exactly the missed ones. Prints one JSON line with what it saw.
// Usage: node recover.mjs <ws url> <rest base> <access token> <ws token> <app id> <channel id>
import { Centrifuge } from 'centrifuge';
import WebSocket from 'ws';

const [wsUrl, restBase, token, wsToken, appId, channelId] = process.argv.slice(2);
const channel = `chat:${appId}:${channelId}`;
const fail = (m) => { console.error(m); process.exit(1); };
setTimeout(() => fail('timed out'), 30000).unref();

async function send(text) {
  const r = await fetch(`${restBase}/api/channels/${channelId}/messages`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ text }),
  });
  if (r.status !== 201) fail(`send ${text}: ${r.status} ${await r.text()}`);
}

// Resolves when `pred` holds, checked on every event and on a short poll.
const waitFor = (pred) => new Promise((resolve) => {
  const t = setInterval(() => { if (pred()) { clearInterval(t); resolve(); } }, 5);
});

const client = new Centrifuge(wsUrl, { token: wsToken, websocket: WebSocket, minReconnectDelay: 100, maxReconnectDelay: 500 });
const sub = client.newSubscription(channel);
const got = [];
const subscribed = [];
sub.on('publication', (ctx) => {
  if (ctx.data && ctx.data.type === 'message.new') got.push({ text: ctx.data.payload.message.text, offset: ctx.offset });
});
sub.on('subscribed', (ctx) => subscribed.push(ctx));
sub.on('error', (ctx) => fail(`subscription error: ${JSON.stringify(ctx.error)}`));
client.on('error', (ctx) => console.error('client error', JSON.stringify(ctx.error)));

client.connect();
sub.subscribe();
await waitFor(() => subscribed.length === 1);
await send('live-1');
await waitFor(() => got.length === 1);

client.disconnect();
await waitFor(() => client.state === 'disconnected');
for (const t of ['missed-1', 'missed-2', 'missed-3']) await send(t);

client.connect();
await waitFor(() => subscribed.length === 2 && got.length >= 4);
const again = subscribed[1];
console.log(JSON.stringify({
  recovered: again.recovered,
  wasRecovering: again.wasRecovering,
  texts: got.map((g) => g.text),
  offsets: got.map((g) => Number(g.offset)),
}));
client.disconnect();
process.exit(0);
