//! The wire protocols the generator speaks: ours (the realtime protocol over WebSocket or
//! QUIC) and each peer's (`ws` JSON rooms, Socket.IO v5 over Engine.IO v4, NATS over
//! WebSocket), written directly against the sockets so every system is driven the same way
//! and no client library's overhead lands on one side only. [`nats`] parses the NATS protocol
//! proper, for the JetStream peer of `durable` (over TCP), which needs the replies themselves.
//!
//! Every published payload carries a marker `bench:<intended send time, ns since the Unix
//! epoch>:` that subscribers find with [`marker::Scanner`]; counting markers counts deliveries
//! on every system, and the timestamp gives end-to-end latency from the intended send time.

pub mod link;
pub mod marker;
pub mod nats;

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{anyhow, bail};
use serde::{Deserialize, Serialize};

pub use link::Link;

/// A system under test, as a generator reaches it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Target {
    /// Our server over WebSocket at `http` (`host:port`).
    OursWs { http: SocketAddr },
    /// Our server over QUIC, trusting the given (base64 DER) self-signed certificate.
    OursQuic { addr: SocketAddr, cert: String },
    /// The `ws` peer.
    WsPeer { addr: SocketAddr },
    /// The socket.io peer.
    SocketIo { addr: SocketAddr },
    /// nats-server's WebSocket listener.
    Nats { addr: SocketAddr },
}

impl Target {
    /// The system's name in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Target::OursWs { .. } => "chatsdk-ws",
            Target::OursQuic { .. } => "chatsdk-quic",
            Target::WsPeer { .. } => "ws",
            Target::SocketIo { .. } => "socketio",
            Target::Nats { .. } => "nats",
        }
    }

    pub fn is_ours(&self) -> bool {
        matches!(self, Target::OursWs { .. } | Target::OursQuic { .. })
    }
}

/// Opens a connection from `src` and authenticates it (`token`: ours only).
pub async fn open(
    target: &Target,
    src: Ipv4Addr,
    token: Option<&str>,
    quic: Option<&chatsdk_client::wire::QuicConnector>,
) -> anyhow::Result<Link> {
    let mut link = match target {
        Target::OursWs { http } => {
            Link::websocket(src, *http, &format!("ws://{http}/connection/websocket")).await?
        }
        Target::OursQuic { addr, .. } => {
            let q = quic.ok_or_else(|| anyhow!("no quic connector"))?;
            Link::Quic(Box::new(q.connect(*addr, "localhost").await?))
        }
        Target::WsPeer { addr } => Link::websocket(src, *addr, &format!("ws://{addr}/")).await?,
        Target::SocketIo { addr } => {
            let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
            Link::websocket(src, *addr, &url).await?
        }
        Target::Nats { addr } => Link::websocket(src, *addr, &format!("ws://{addr}/")).await?,
    };
    match target {
        Target::OursWs { .. } | Target::OursQuic { .. } => {
            let token = token.ok_or_else(|| anyhow!("our server needs a token"))?;
            let cmd = serde_json::json!({"id": 1, "connect": {"token": token, "name": "bench"}});
            link.send(cmd.to_string().as_bytes()).await?;
            await_reply(&mut link, 1).await?;
        }
        Target::SocketIo { .. } => {
            let open = link
                .recv()
                .await?
                .ok_or_else(|| anyhow!("closed before open"))?;
            if !open.starts_with(b"0") {
                bail!("unexpected engine.io open packet");
            }
            link.send(b"40").await?;
            loop {
                let f = link
                    .recv()
                    .await?
                    .ok_or_else(|| anyhow!("closed in connect"))?;
                if f.starts_with(b"40") {
                    break;
                }
            }
        }
        Target::Nats { .. } => {
            let _info = link
                .recv()
                .await?
                .ok_or_else(|| anyhow!("closed before INFO"))?;
            link.send(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1}\r\nPING\r\n")
                .await?;
            await_contains(&mut link, b"PONG\r\n").await?;
        }
        Target::WsPeer { .. } => {}
    }
    Ok(link)
}

/// Subscribes to `room` (ours: a `chat:` channel name) and waits for the confirmation.
/// Ours answers with the stream position, `(epoch, offset)`, kept for recovery.
pub async fn subscribe(
    target: &Target,
    link: &mut Link,
    room: &str,
) -> anyhow::Result<Option<(String, u64)>> {
    match target {
        Target::OursWs { .. } | Target::OursQuic { .. } => {
            let cmd = serde_json::json!({"id": 2, "subscribe": {"channel": room}});
            link.send(cmd.to_string().as_bytes()).await?;
            let reply = await_reply(link, 2).await?;
            let epoch = str_field(&reply, "epoch").unwrap_or_default();
            Ok(Some((epoch, max_offset(&reply))))
        }
        Target::WsPeer { .. } => {
            let cmd = serde_json::json!({"op": "sub", "room": room});
            link.send(cmd.to_string().as_bytes()).await?;
            await_contains(link, b"subok").await.map(|_| None)
        }
        Target::SocketIo { .. } => {
            link.send(format!("42[\"sub\",\"{room}\"]").as_bytes())
                .await?;
            await_contains(link, b"subok").await.map(|_| None)
        }
        Target::Nats { .. } => {
            link.send(format!("SUB {room} 1\r\nPING\r\n").as_bytes())
                .await?;
            await_contains(link, b"PONG\r\n").await.map(|_| None)
        }
    }
}

/// The bytes that publish `text` to `room` (ours: a `message.send` rpc with command id
/// `id` to channel id `room_id`).
pub fn publish_frame(target: &Target, room: &str, room_id: &str, text: &str, id: u32) -> Vec<u8> {
    match target {
        Target::OursWs { .. } | Target::OursQuic { .. } => serde_json::json!({
            "id": id,
            "rpc": {"method": "message.send", "data": {"channelId": room_id, "text": text}}
        })
        .to_string()
        .into_bytes(),
        Target::WsPeer { .. } => serde_json::json!({"op": "pub", "room": room, "data": text})
            .to_string()
            .into_bytes(),
        Target::SocketIo { .. } => format!("42[\"pub\",\"{room}\",\"{text}\"]").into_bytes(),
        Target::Nats { .. } => format!("PUB {room} {}\r\n{text}\r\n", text.len()).into_bytes(),
    }
}

/// The answer a keepalive frame needs, if `frame` is one.
pub fn keepalive_answer(target: &Target, frame: &[u8]) -> Option<&'static [u8]> {
    match target {
        Target::OursWs { .. } | Target::OursQuic { .. } => frame
            .split(|b| *b == b'\n')
            .any(|l| l == b"{}")
            .then_some(b"{}"),
        Target::SocketIo { .. } => (frame == b"2").then_some(b"3"),
        Target::Nats { .. } => (frame.starts_with(b"PING\r\n")
            || frame.windows(7).any(|w| w == &b"\nPING\r\n"[..]))
        .then_some(b"PONG\r\n"),
        Target::WsPeer { .. } => None,
    }
}

/// The value of the first string field `name` in a JSON text (ours: the stream epoch).
pub fn str_field(json: &[u8], name: &str) -> Option<String> {
    let key = format!("\"{name}\":\"");
    let at = json.windows(key.len()).position(|w| w == key.as_bytes())? + key.len();
    let end = json[at..].iter().position(|b| *b == b'"')?;
    Some(String::from_utf8_lossy(&json[at..at + end]).into_owned())
}

/// The largest `"offset":N` in a JSON text: a subscribe reply's stream head, or the newest
/// publication of a frame (0 when there is none).
pub fn max_offset(json: &[u8]) -> u64 {
    const KEY: &[u8] = b"\"offset\":";
    let mut best = 0;
    let mut i = 0;
    while let Some(p) = json[i..].windows(KEY.len()).position(|w| w == KEY) {
        let mut j = i + p + KEY.len();
        let mut n: u64 = 0;
        while j < json.len() && json[j].is_ascii_digit() {
            n = n
                .saturating_mul(10)
                .saturating_add(u64::from(json[j] - b'0'));
            j += 1;
        }
        best = best.max(n);
        i = j;
    }
    best
}

/// Reads until the reply to command `id` (ours), answering pings on the way; the reply line.
async fn await_reply(link: &mut Link, id: u32) -> anyhow::Result<Vec<u8>> {
    let prefix = format!("{{\"id\":{id},");
    loop {
        let f = link
            .recv()
            .await?
            .ok_or_else(|| anyhow!("closed awaiting reply {id}"))?;
        for line in f.split(|b| *b == b'\n') {
            if line.starts_with(prefix.as_bytes()) {
                if line.windows(8).any(|w| w == b"\"error\":") {
                    bail!("server error: {}", String::from_utf8_lossy(line));
                }
                return Ok(line.to_vec());
            }
            if line == b"{}" {
                link.send(b"{}").await?;
            }
        }
    }
}

async fn await_contains(link: &mut Link, needle: &[u8]) -> anyhow::Result<()> {
    loop {
        let f = link
            .recv()
            .await?
            .ok_or_else(|| anyhow!("closed awaiting confirmation"))?;
        if f.windows(needle.len()).any(|w| w == needle) {
            return Ok(());
        }
        if f.as_ref() == b"2" {
            link.send(b"3").await?;
        }
    }
}
