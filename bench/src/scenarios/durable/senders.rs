//! Who sends in `durable`, one kind per system, behind one call that resolves when the send is
//! acknowledged: our REST API, our realtime `message.send` rpc over WebSocket (several
//! connections per channel, since our session answers one command at a time), and JetStream
//! publishes over core NATS (one connection per channel, requests pipelined on it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use chatsdk_client::rest::RestClient;
use chatsdk_client::{Endpoint, Event, Realtime, RealtimeConfig};
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::mpsc;

use crate::jetstream::{self, JetStream};
use crate::setup::Room;
use crate::sut::Sut;

/// Time allowed for every realtime connection to open.
const CONNECT_WITHIN: Duration = Duration::from_secs(60);

/// One system's senders: each entry is one channel (the channel's publisher).
pub(super) enum Senders {
    Rest(Vec<(RestClient, String)>),
    Realtime {
        /// A channel's connections (all its publisher's) and its id.
        channels: Vec<(Vec<Realtime>, String)>,
        /// Disconnections seen on any connection (each reconnects by itself).
        dropped: Arc<AtomicU64>,
    },
    /// A channel's connection and its stream's subject.
    JetStream(Vec<(jetstream::Client, String)>),
}

impl Senders {
    /// Each channel's publisher over REST, through the cluster's nodes in turn.
    pub(super) fn rest(sut: &Sut, rooms: &[Room]) -> anyhow::Result<Senders> {
        let mut v = Vec::new();
        for (i, r) in rooms.iter().enumerate() {
            let node = &sut.nodes[i % sut.nodes.len()];
            let token = r.publisher_tokens.first().cloned().unwrap_or_default();
            let client = RestClient::new(format!("http://{}", node.info.http))?.with_token(token);
            v.push((client, r.id.clone()));
        }
        Ok(Senders::Rest(v))
    }

    /// Each channel's publisher over `per_channel` realtime WebSocket connections; returns once
    /// all are connected and authenticated.
    pub(super) async fn realtime(
        sut: &Sut,
        rooms: &[Room],
        per_channel: usize,
    ) -> anyhow::Result<Senders> {
        let total = rooms.len() * per_channel;
        let (ready, mut readies) = mpsc::channel::<Result<(), String>>(total.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let mut channels = Vec::new();
        for (i, r) in rooms.iter().enumerate() {
            let node = &sut.nodes[i % sut.nodes.len()];
            let token = r
                .publishers
                .first()
                .and_then(|p| p.token.clone())
                .ok_or_else(|| anyhow!("channel {} has no publisher token", r.id))?;
            let url = format!("ws://{}/connection/websocket", node.info.http);
            let mut conns = Vec::new();
            for _ in 0..per_channel {
                let config = RealtimeConfig::new(Endpoint::WebSocket(url.clone()), token.clone());
                let (client, events) = Realtime::connect(config);
                tokio::spawn(watch(events, ready.clone(), dropped.clone()));
                conns.push(client);
            }
            channels.push((conns, r.id.clone()));
        }
        drop(ready);
        let deadline = Instant::now() + CONNECT_WITHIN;
        for n in 0..total {
            match tokio::time::timeout_at(deadline.into(), readies.recv()).await {
                Ok(Some(Ok(()))) => {}
                Ok(Some(Err(why))) => anyhow::bail!("a realtime connection was refused: {why}"),
                Ok(None) => anyhow::bail!("realtime clients ended before connecting"),
                Err(_) => anyhow::bail!("{n} of {total} realtime connections open after 60 s"),
            }
        }
        Ok(Senders::Realtime { channels, dropped })
    }

    /// One stream per channel (`chat-<i>`, subject `chat.<i>`, file storage) and one
    /// connection per channel publisher.
    /// Each channel's publisher to JetStream: a connection to the servers in turn, one stream
    /// per channel with `replicas` copies.
    pub(super) async fn jetstream(
        servers: &[JetStream],
        channels: usize,
        replicas: usize,
    ) -> anyhow::Result<Senders> {
        let mut v = Vec::new();
        for i in 0..channels {
            let server = servers
                .get(i % servers.len().max(1))
                .ok_or_else(|| anyhow::anyhow!("no nats-server to publish to"))?;
            let client = jetstream::Client::connect(server.addr, &format!("bench-{i}"))
                .await
                .context("connecting to nats-server")?;
            client
                .create_stream(&format!("chat-{i}"), &format!("chat.{i}"), replicas)
                .await?;
            v.push((client, format!("chat.{i}")));
        }
        Ok(Senders::JetStream(v))
    }

    pub(super) fn channels(&self) -> usize {
        match self {
            Senders::Rest(v) => v.len(),
            Senders::Realtime { channels, .. } => channels.len(),
            Senders::JetStream(v) => v.len(),
        }
    }

    /// Realtime connections: how many per channel (1 for the others).
    pub(super) fn per_channel(&self) -> usize {
        match self {
            Senders::Realtime { channels, .. } => channels.first().map_or(1, |c| c.0.len()),
            _ => 1,
        }
    }

    /// Realtime disconnections so far (0 for the others).
    pub(super) fn dropped(&self) -> u64 {
        match self {
            Senders::Realtime { dropped, .. } => dropped.load(Ordering::Relaxed),
            _ => 0,
        }
    }

    /// The `k`-th send of a step, to channel `k mod channels` (and over its connections in
    /// turn), carrying `text`; resolves when acknowledged.
    pub(super) fn send(
        &self,
        k: u64,
        text: String,
        client_msg_id: String,
    ) -> BoxFuture<'static, Result<(), String>> {
        let n = self.channels().max(1) as u64;
        let i = (k % n) as usize;
        match self {
            Senders::Rest(v) => {
                let (client, channel) = v[i].clone();
                async move {
                    client
                        .send_message(&channel, &text, Some(&client_msg_id))
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                }
                .boxed()
            }
            Senders::Realtime { channels, .. } => {
                let (conns, channel) = &channels[i];
                let client = conns[((k / n) as usize) % conns.len().max(1)].clone();
                let channel = channel.clone();
                async move {
                    client
                        .send_message(&channel, &text, Some(&client_msg_id))
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                }
                .boxed()
            }
            Senders::JetStream(v) => {
                let (client, subject) = v[i].clone();
                async move {
                    client
                        .publish(&subject, text.as_bytes())
                        .await
                        .map_err(|e| e.to_string())
                }
                .boxed()
            }
        }
    }

    /// Closes the connections (realtime clients end their tasks).
    pub(super) async fn close(self) {
        if let Senders::Realtime { channels, .. } = self {
            for (conns, _) in channels {
                for c in conns {
                    c.close().await;
                }
            }
        }
    }
}

/// Drains one realtime client's events: reports its first connect (or its refusal) on
/// `ready`, counts later disconnections.
async fn watch(
    mut events: mpsc::Receiver<Event>,
    ready: mpsc::Sender<Result<(), String>>,
    dropped: Arc<AtomicU64>,
) {
    let mut ready = Some(ready);
    while let Some(event) = events.recv().await {
        match event {
            Event::Connected { .. } => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Ok(())).await;
                }
            }
            Event::Disconnected {
                reason,
                will_reconnect,
                ..
            } => match ready.take() {
                Some(r) if !will_reconnect => {
                    let _ = r.send(Err(reason)).await;
                }
                other => {
                    ready = other;
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
            },
            _ => {}
        }
    }
}
