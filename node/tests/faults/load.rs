//! The steady load a fault scenario runs under: writers sending messages with client ids
//! through every node (a send whose outcome is unknown is retried with the same client id, as
//! a careful client does), and one realtime subscriber per node following every channel. All
//! of it is recorded for [`super::history`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatsdk_client::realtime::policy::Backoff;
use chatsdk_client::{Endpoint, Event, Realtime, RealtimeConfig, RestClient};
use serde_json::{json, Value};

use super::history::{Final, Op, Outcome, Recorder, Seen};
use crate::support::WAIT;

/// Writers (each with its own user) and how long a send may take.
pub(crate) const WRITERS: usize = 4;
/// A writer's sends in flight at most: a send stuck on a cut-off node holds one slot, not the
/// writer (a closed loop would stall on the first hung node it picked).
const IN_FLIGHT: usize = 8;
/// A writer starts a send this often (while it has a free slot).
const EVERY: Duration = Duration::from_millis(25);
const SEND_TIMEOUT: Duration = Duration::from_secs(4);
/// Attempts of one client id before the writer gives up on it (its outcome stays unknown).
const ATTEMPTS: usize = 6;

/// The channels (ids) and the nodes' base URLs the load uses.
pub(crate) struct Target {
    pub(crate) bases: Vec<String>,
    pub(crate) app: String,
    pub(crate) key: String,
    pub(crate) channels: Vec<String>,
}

/// A small deterministic generator (xorshift64*), seeded per writer so that a run can be
/// repeated from its printed seed.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    }
}

/// Users `w0..` (writers) and `s0..` (subscribers), and `channels` group channels holding all
/// of them, made through node 1.
pub(crate) async fn setup(bases: Vec<String>, app: &str, key: &str, channels: usize) -> Target {
    let server = RestClient::new(bases[0].clone())
        .expect("client")
        .with_api_key(key);
    let mut users: Vec<String> = (0..WRITERS).map(|i| format!("w{i}")).collect();
    users.extend((0..bases.len()).map(|i| format!("s{i}")));
    for u in &users {
        server
            .call(
                reqwest::Method::POST,
                "/api/users",
                Some(&json!({ "user_id": u })),
            )
            .await
            .expect("user created");
    }
    let members: Vec<&str> = users.iter().map(String::as_str).collect();
    let mut ids = Vec::new();
    for c in 0..channels {
        let body = json!({
            "type": "group", "name": format!("fault room {c}"),
            "user_id": "w0", "member_ids": members,
        });
        let made = server
            .call(reqwest::Method::POST, "/api/channels", Some(&body))
            .await
            .expect("channel created");
        ids.push(made["id"].as_str().expect("channel id").to_string());
    }
    Target {
        bases,
        app: app.to_string(),
        key: key.to_string(),
        channels: ids,
    }
}

/// One send through `base`, classified.
pub(crate) async fn send_once(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    body: &Value,
) -> Outcome {
    let r = http
        .post(format!("{base}/api/messages"))
        .header("X-API-Key", key)
        .json(body)
        .timeout(SEND_TIMEOUT)
        .send()
        .await;
    let r = match r {
        Ok(r) => r,
        Err(e) => return Outcome::Unknown(format!("no answer: {e}")),
    };
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    match status {
        200 | 201 => match serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["seq"].as_u64())
        {
            Some(seq) => Outcome::Ok { seq },
            None => Outcome::Unknown(format!("{status} without a seq: {text}")),
        },
        // A timeout says nothing about the send; other 4xx (throttling too) refuse it.
        408 => Outcome::Unknown(format!("{status}: {text}")),
        400..=499 => Outcome::Fail(format!("{status}: {text}")),
        _ => Outcome::Unknown(format!("{status}: {text}")),
    }
}

/// Starts sends at a steady rate until `stop` (at most [`IN_FLIGHT`] at once), then waits for
/// those in flight. Each client id goes through a node picked at random and is retried
/// (through another) while its outcome is unknown.
pub(crate) async fn writer(
    w: usize,
    seed: u64,
    target: Arc<Target>,
    rec: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) {
    let http = reqwest::Client::new();
    let mut rng = Rng::new(seed ^ (w as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut sends = tokio::task::JoinSet::new();
    let mut n = 0u64;
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        while sends.try_join_next().is_some() {}
        if sends.len() >= IN_FLIGHT {
            continue;
        }
        n += 1;
        let cmid = format!("w{w}-{n}");
        let channel = rng.below(target.channels.len());
        let nodes: Vec<usize> = (0..ATTEMPTS)
            .map(|_| rng.below(target.bases.len()))
            .collect();
        let (http, target, rec, stop) = (http.clone(), target.clone(), rec.clone(), stop.clone());
        sends.spawn(async move {
            let body = json!({
                "channel_id": target.channels[channel], "user_id": format!("w{w}"),
                "text": format!("message {cmid}"), "client_msg_id": cmid,
            });
            for node in nodes {
                let at = Instant::now();
                let outcome = send_once(&http, &target.bases[node], &target.key, &body).await;
                let unknown = matches!(outcome, Outcome::Unknown(_));
                rec.op(Op {
                    cmid: cmid.clone(),
                    channel,
                    node,
                    outcome,
                    ms: at.elapsed().as_millis() as u64,
                    t_ms: 0,
                });
                if !unknown || stop.load(Ordering::Relaxed) {
                    break;
                }
                // The next attempt of an unknown send, after a pause (not a synchronisation).
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
    while sends.join_next().await.is_some() {}
}

/// Subscriber `s`: user `s{s}` connected to node `s`, following every channel, recording
/// every event until its handle is dropped (returned so the caller decides when).
pub(crate) async fn subscriber(
    s: usize,
    target: &Target,
    rec: Arc<Recorder>,
) -> (Realtime, tokio::task::JoinHandle<()>) {
    let server = RestClient::new(target.bases[0].clone())
        .expect("client")
        .with_api_key(&target.key);
    let tokens = server
        .create_token(&format!("s{s}"), None)
        .await
        .expect("subscriber token");
    let ws = format!(
        "{}/connection/websocket",
        target.bases[s].replacen("http://", "ws://", 1)
    );
    let mut config = RealtimeConfig::new(Endpoint::WebSocket(ws), tokens.ws_token);
    config.backoff = Backoff {
        min: Duration::from_millis(100),
        max: Duration::from_secs(1),
    };
    config.ping_grace = Duration::from_secs(2);
    config.request_timeout = Duration::from_secs(5);
    let (client, mut events) = Realtime::connect(config);
    let names: Vec<String> = target
        .channels
        .iter()
        .map(|id| format!("chat:{}:{id}", target.app))
        .collect();
    let index = names.clone();
    let task = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let channel_of = |name: &str| index.iter().position(|n| n == name);
            match event {
                Event::Subscribed {
                    channel,
                    recovered,
                    was_recovering,
                    offset,
                    ..
                } => {
                    if let Some(channel) = channel_of(&channel) {
                        rec.seen(
                            s,
                            Seen::Subscribed {
                                channel,
                                recovered,
                                was_recovering,
                                offset,
                            },
                        );
                    }
                }
                Event::Publication {
                    channel,
                    offset,
                    data,
                    ..
                } if offset > 0 => {
                    let Some(channel) = channel_of(&channel) else {
                        continue;
                    };
                    let message = (data["type"] == "message.new").then(|| {
                        let m = &data["payload"]["message"];
                        (
                            m["seq"].as_u64().unwrap_or(0),
                            m["clientMsgId"].as_str().map(str::to_string),
                        )
                    });
                    rec.seen(
                        s,
                        Seen::Publication {
                            channel,
                            offset,
                            message,
                        },
                    );
                }
                Event::Disconnected {
                    code,
                    reason,
                    will_reconnect,
                } => rec.seen(
                    s,
                    Seen::Disconnected {
                        code,
                        reason,
                        will_reconnect,
                    },
                ),
                _ => {}
            }
        }
    });
    for name in &names {
        let deadline = Instant::now() + WAIT;
        while let Err(e) = client.subscribe(name).await {
            assert!(
                Instant::now() < deadline,
                "subscriber {s} cannot subscribe to {name}: {e}"
            );
        }
    }
    (client, task)
}

/// Channel `id`'s whole history as node `base` reports it, or why it could not be read.
pub(crate) async fn history(target: &Target, base: &str, id: &str) -> Result<Final, String> {
    let server = RestClient::new(base.to_string())
        .map_err(|e| e.to_string())?
        .with_api_key(&target.key);
    let mut out = Vec::new();
    let mut since = 0;
    loop {
        // Raw JSON: a server key's answers are in the snake_case dialect.
        let path = format!("/api/channels/{id}/messages?since_seq={since}&limit=200");
        let page = server
            .call(reqwest::Method::GET, &path, None)
            .await
            .map_err(|e| e.to_string())?;
        let messages = page["messages"].as_array().cloned().unwrap_or_default();
        for m in &messages {
            let seq = m["seq"].as_u64().ok_or_else(|| format!("no seq in {m}"))?;
            let cmid = m["client_msg_id"]
                .as_str()
                .or(m["clientMsgId"].as_str())
                .map(str::to_string);
            out.push((seq, cmid));
            since = since.max(seq);
        }
        let more = page["has_more"].as_bool().or(page["hasMore"].as_bool());
        if more != Some(true) || messages.is_empty() {
            return Ok(out);
        }
    }
}
