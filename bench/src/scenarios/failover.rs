//! `failover`: a three-node cluster under a steady send load; the leader of the channel's
//! shard is SIGKILLed a third of the way in. Reports the time until sends are acknowledged
//! again and checks that every acknowledged message reached every subscriber exactly once and
//! in order (subscribers on the surviving nodes, through the Rust client, which recovers).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatsdk_client::realtime::{Event, Realtime, RealtimeConfig};
use chatsdk_client::rest::RestClient;
use chatsdk_client::wire::Endpoint;
use tokio::sync::Mutex;

use crate::hist::{self, Latency};
use crate::report::Run;
use crate::scenarios::Ctx;
use crate::sut::Sut;

const SUBSCRIBERS: usize = 6;

/// What each subscriber saw: (offset, message text) of every `message.new`.
type Seen = Arc<Mutex<Vec<Vec<(u64, String)>>>>;
/// Shards of a default cluster (the node's default config).
const SHARDS: u32 = 16;

pub async fn run(ctx: &Ctx, rate: f64, seconds: f64) -> anyhow::Result<Vec<Run>> {
    let (rate, seconds) = if ctx.smoke {
        (20.0, 6.0)
    } else {
        (rate, seconds)
    };
    let mut runs = Vec::new();
    for round in 0..ctx.rounds {
        let r = one(rate, seconds, round).await?;
        r.emit();
        runs.push(r);
    }
    crate::report::table("failover", &runs);
    Ok(runs)
}

async fn one(rate: f64, seconds: f64, round: usize) -> anyhow::Result<Run> {
    let mut sut = Sut::cluster3(None).await?;
    let room = sut
        .rooms(&format!("fo{round}"), 1, SUBSCRIBERS, 1)
        .await?
        .remove(0);
    let app = sut.nodes[0].info.app_id.clone();
    let group = chatsdk_cluster::shard_for(&app, &room.id, SHARDS);
    // Which node leads the channel's shard.
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        let found = sut
            .nodes
            .iter()
            .position(|n| n.leads.lock().map(|l| l.contains(&group)).unwrap_or(false));
        if let Some(i) = found {
            break i;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no node reports leading group {group}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    // Subscribers on the surviving nodes.
    let seen: Seen = Arc::new(Mutex::new(vec![Vec::new(); SUBSCRIBERS]));
    let mut clients = Vec::new();
    for (i, sub) in room.subscribers.iter().enumerate() {
        let node = &sut.nodes[survivors[i % survivors.len()]];
        let endpoint = Endpoint::WebSocket(format!("ws://{}/connection/websocket", node.info.http));
        let (rt, mut events) = Realtime::connect(RealtimeConfig::new(
            endpoint,
            sub.token.clone().unwrap_or_default(),
        ));
        rt.subscribe(&room.channel).await?;
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                if let Event::Publication { offset, data, .. } = e {
                    if data["type"] == "message.new" {
                        let text = data["payload"]["message"]["text"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string();
                        seen.lock().await[i].push((offset, text));
                    }
                }
            }
        });
        clients.push(rt);
    }
    let token = room.publisher_tokens.first().cloned().unwrap_or_default();
    let senders: Vec<RestClient> = survivors
        .iter()
        .map(|i| {
            RestClient::new(format!("http://{}", sut.nodes[*i].info.http))
                .map(|c| c.with_token(token.clone()))
        })
        .collect::<Result<_, _>>()?;
    let total = (rate * seconds) as u64;
    let period = Duration::from_secs_f64(1.0 / rate);
    let kill_at = Duration::from_secs_f64(seconds / 3.0);
    let start = Instant::now();
    let acks: Arc<Mutex<BTreeMap<u64, (Instant, Duration)>>> =
        Arc::new(Mutex::new(BTreeMap::new()));
    let mut tasks = Vec::new();
    let mut killed_at = None;
    for k in 0..total {
        let intended = start + period * k as u32;
        tokio::time::sleep_until(intended.into()).await;
        if killed_at.is_none() && start.elapsed() >= kill_at {
            sut.nodes[leader].kill9();
            killed_at = Some(Instant::now());
            eprintln!(
                "failover: SIGKILLed node {} (leader of shard {group})",
                leader + 1
            );
        }
        let senders = senders.clone();
        let channel = room.id.clone();
        let acks = acks.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("fo-{k}");
            // Retry with the same clientMsgId (so a retried send is stored once) until acked.
            for attempt in 0..300u32 {
                let s = &senders[(k as usize + attempt as usize) % senders.len()];
                if s.send_message(&channel, &id, Some(&id)).await.is_ok() {
                    acks.lock()
                        .await
                        .insert(k, (Instant::now(), intended.elapsed()));
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let acks = acks.lock().await.clone();
    // Wait (bounded) until every subscriber saw every acknowledged message.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = seen.lock().await.iter().all(|v| v.len() >= acks.len());
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = seen.lock().await.clone();
    let mut run = Run::new("failover", "chatsdk-3node", round);
    run.param("rate", rate)
        .param("seconds", seconds)
        .param("subscribers", SUBSCRIBERS);
    let mut h = hist::new();
    for (_, lat) in acks.values() {
        hist::record(&mut h, lat.as_micros() as u64);
    }
    let lat = Latency::of(&h);
    let kill = killed_at.unwrap_or(start);
    // Recovery: from the kill to the first acknowledgement of a send scheduled after it.
    let first_after = acks
        .iter()
        .filter(|(k, _)| start + period * **k as u32 >= kill)
        .map(|(_, (t, _))| *t)
        .min();
    let recovery = first_after
        .map(|t| t.duration_since(kill))
        .unwrap_or_default();
    run.metric("acked", acks.len() as f64)
        .metric("sent", total as f64)
        .metric("recovery_ms", recovery.as_secs_f64() * 1000.0)
        .metric("ack_latency_p50_ms", lat.p50_ms)
        .metric("ack_latency_p99_ms", lat.p99_ms)
        .metric("ack_latency_max_ms", lat.max_ms);
    if acks.len() as u64 != total {
        run.invalid(format!(
            "{} of {total} sends never acknowledged",
            total - acks.len() as u64
        ));
    }
    let want: HashMap<String, ()> = acks.keys().map(|k| (format!("fo-{k}"), ())).collect();
    for (i, got) in seen.iter().enumerate() {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for (_, t) in got {
            *counts.entry(t.as_str()).or_default() += 1;
        }
        let missing = want
            .keys()
            .filter(|t| !counts.contains_key(t.as_str()))
            .count();
        let dups = counts.values().filter(|c| **c > 1).count();
        let ordered = got.windows(2).all(|w| w[0].0 < w[1].0);
        if missing > 0 || dups > 0 || !ordered {
            run.invalid(format!(
                "subscriber {i}: {missing} missing, {dups} duplicated, in order: {ordered}"
            ));
        }
    }
    for c in clients {
        c.close().await;
    }
    sut.stop();
    Ok(run)
}
