//! `chat-mix`: the shapes of ChatSDK's own load tests, against the original thresholds.
//! REST senders ramp from 100 to 500 virtual users (each sends a message, then thinks for a
//! second), while 1,000 WebSocket clients in 100 channels of 10 each send a message every 5 s
//! and receive their channels' messages. Thresholds: HTTP p95 < 500 ms, errors < 1 %,
//! WebSocket connect p95 < 1 s, message latency p95 < 200 ms; the report says how far under
//! each we are (`*_headroom` = threshold / measured).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatsdk_client::rest::RestClient;
use tokio::sync::Mutex;

use crate::gen::{Cmd, Role};
use crate::hist::{self, Latency};
use crate::report::Run;
use crate::scenarios::{self, Ctx};
use crate::sut::{Sut, System};

pub async fn run(ctx: &Ctx, seconds: u64) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    for round in 0..ctx.rounds {
        let r = one(ctx, seconds, round).await?;
        r.emit();
        runs.push(r);
    }
    crate::report::table("chat-mix", &runs);
    Ok(runs)
}

async fn one(ctx: &Ctx, seconds: u64, round: usize) -> anyhow::Result<Run> {
    let (channels, members, vu_from, vu_to, seconds) = if ctx.smoke {
        (2, 5, 2, 6, 3)
    } else {
        (100, 10, 100, 500, seconds)
    };
    let sut = Sut::start(System::Ours { quic: false }, None, ctx.server_cpus())?;
    let rooms = sut
        .rooms(&format!("m{round}"), channels, members, 0)
        .await?;
    let http = sut.nodes[0].info.http;
    let subs: Vec<_> = rooms.iter().flat_map(|r| r.subscribers.clone()).collect();
    let mut sub_gens =
        scenarios::spawn_gens(ctx, &sut.target, Role::Subscriber, subs.clone(), 128).await?;
    let c = scenarios::connected(&mut sub_gens, Duration::from_secs(120)).await?;
    // The same users send over a second connection each, every 5 s.
    let mut pub_gens = scenarios::spawn_gens(
        ctx,
        &sut.target,
        Role::Publisher {
            rate: if ctx.smoke { 2.0 } else { 0.2 },
            payload: 100,
        },
        subs,
        128,
    )
    .await?;
    let c2 = scenarios::connected(&mut pub_gens, Duration::from_secs(120)).await?;
    for g in sub_gens.iter_mut() {
        g.send(&Cmd::Reset).await?;
    }
    // REST virtual users.
    let vus: Vec<(RestClient, String)> = rooms
        .iter()
        .flat_map(|r| {
            r.subscriber_tokens
                .iter()
                .map(move |t| (t.clone(), r.id.clone()))
        })
        .map(|(t, ch)| {
            Ok::<_, anyhow::Error>((RestClient::new(format!("http://{http}"))?.with_token(t), ch))
        })
        .collect::<Result<_, _>>()?;
    let http_hist = Arc::new(Mutex::new(hist::new()));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    for g in pub_gens.iter_mut() {
        g.send(&Cmd::Go {
            duration_ms: seconds * 1000,
        })
        .await?;
    }
    let mut vu_tasks = Vec::new();
    for j in 0..vu_to {
        // VU j joins when the ramp reaches it.
        let joins = if j < vu_from {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(
                seconds as f64 * (j - vu_from) as f64 / (vu_to - vu_from).max(1) as f64,
            )
        };
        let (client, channel) = vus[j % vus.len()].clone();
        let (h, ok, failed) = (http_hist.clone(), ok.clone(), failed.clone());
        vu_tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until((start + joins).into()).await;
            let mut n = 0u64;
            while Instant::now() < end {
                let t = Instant::now();
                let r = client
                    .send_message(&channel, "chat-mix message", Some(&format!("vu{j}-{n}")))
                    .await;
                hist::record(&mut *h.lock().await, t.elapsed().as_micros() as u64);
                if r.is_ok() {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }
    let scenarios::Published {
        sent,
        acked,
        errors,
        ..
    } = scenarios::published(&mut pub_gens, Duration::from_secs(seconds + 60)).await?;
    for t in vu_tasks {
        let _ = t.await;
    }
    let expected = acked * members as u64;
    let received = scenarios::received(&mut sub_gens, expected, Duration::from_secs(10)).await?;
    let delivered = received.delivered;
    let http_lat = Latency::of(&*http_hist.lock().await);
    let connect = Latency::of(&c.hist);
    let msg = Latency::of(&received.hist);
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let requests = ok + failed + sent;
    let error_rate = (failed + errors + c.failed + c2.failed) as f64 / requests.max(1) as f64;
    let mut run = Run::new("chat-mix", "chatsdk-ws", round);
    run.param("seconds", seconds)
        .param("ws_clients", channels * members)
        .param("rest_vus", format!("{vu_from}->{vu_to}"))
        .metric("http_p95_ms", http_lat.p95_ms)
        .metric("http_requests", (ok + failed) as f64)
        .metric("error_rate", error_rate)
        .metric("ws_connect_p95_ms", connect.p95_ms)
        .metric("message_latency_p95_ms", msg.p95_ms)
        .metric("http_p95_headroom", 500.0 / http_lat.p95_ms.max(0.001))
        .metric(
            "ws_connect_p95_headroom",
            1000.0 / connect.p95_ms.max(0.001),
        )
        .metric(
            "message_latency_p95_headroom",
            200.0 / msg.p95_ms.max(0.001),
        )
        .metric("ws_messages_acked", acked as f64)
        .metric("ws_deliveries", delivered as f64);
    if acked == 0 {
        run.invalid("no WebSocket message was acknowledged");
    }
    if received.duplicates > 0 {
        run.invalid(format!("{} duplicate deliveries", received.duplicates));
    }
    if received.unrecovered > 0 {
        run.invalid(format!(
            "{} reconnecting subscribers could not recover their gap",
            received.unrecovered
        ));
    }
    if delivered < expected {
        run.invalid(format!(
            "lost {} of {expected} deliveries",
            expected - delivered
        ));
    }
    let pass = http_lat.p95_ms < 500.0
        && error_rate < 0.01
        && connect.p95_ms < 1000.0
        && msg.p95_ms < 200.0;
    run.metric("thresholds_met", if pass { 1.0 } else { 0.0 });
    scenarios::finish(pub_gens).await;
    scenarios::finish(sub_gens).await;
    sut.stop();
    Ok(run)
}
