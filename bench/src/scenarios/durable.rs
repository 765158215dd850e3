//! `durable`: acknowledged REST sends (`POST /api/channels/:id/messages`, each durable on a
//! majority before the answer) per second and their latency, on one node and on a three-node
//! cluster. Open loop: sends are scheduled at a fixed rate and latency runs from the intended
//! send time, so a slow server cannot hide its queueing; the rate steps up until p99 passes
//! 25 ms or errors appear.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chatsdk_client::rest::RestClient;
use hdrhistogram::Histogram;
use tokio::sync::{Mutex, Semaphore};

use crate::hist::{self, Latency};
use crate::procstat;
use crate::report::Run;
use crate::scenarios::{self, Ctx};
use crate::sut::Sut;

/// Channels written to (spread over the shards), each by its own user.
const CHANNELS: usize = 64;
/// Requests in flight at most; beyond it the schedule waits (and latency shows it).
const MAX_IN_FLIGHT: usize = 1024;

pub async fn run(
    ctx: &Ctx,
    rates: &[f64],
    seconds: f64,
    cluster: bool,
) -> anyhow::Result<Vec<Run>> {
    let rates: Vec<f64> = if ctx.smoke {
        vec![50.0]
    } else {
        rates.to_vec()
    };
    let seconds = if ctx.smoke { 1.0 } else { seconds };
    let mut runs = Vec::new();
    for round in 0..ctx.rounds {
        for three in [false, true] {
            if three && !cluster {
                continue;
            }
            let sut = if three {
                Sut::cluster3(None).await?
            } else {
                Sut::start(
                    crate::sut::System::Ours { quic: false },
                    None,
                    ctx.server_cpus(),
                )?
            };
            let system = if three {
                "chatsdk-3node"
            } else {
                "chatsdk-1node"
            };
            let rooms = sut.rooms(&format!("d{round}"), CHANNELS, 0, 1).await?;
            // Senders: each channel's publisher, through every node in turn.
            let mut senders = Vec::new();
            for (i, r) in rooms.iter().enumerate() {
                let node = &sut.nodes[i % sut.nodes.len()];
                let token = r.publisher_tokens.first().cloned().unwrap_or_default();
                let client =
                    RestClient::new(format!("http://{}", node.info.http))?.with_token(token);
                senders.push((client, r.id.clone()));
            }
            for &rate in &rates {
                let r = step(&sut, &senders, rate, seconds, system, round).await?;
                r.emit();
                let stop =
                    !r.valid || r.metrics.get("latency_p99_ms").copied().unwrap_or(0.0) > 25.0;
                eprintln!(
                    "durable {system}: asked {rate}/s, acked {:.0}/s, p99 {:.1} ms",
                    r.metrics.get("acked_per_s").copied().unwrap_or(0.0),
                    r.metrics.get("latency_p99_ms").copied().unwrap_or(0.0)
                );
                runs.push(r);
                if stop {
                    break;
                }
            }
            sut.stop();
        }
    }
    crate::report::table("durable (every step)", &runs);
    Ok(runs)
}

async fn step(
    sut: &Sut,
    senders: &[(RestClient, String)],
    rate: f64,
    seconds: f64,
    system: &str,
    round: usize,
) -> anyhow::Result<Run> {
    let total = (rate * seconds) as u64;
    let h = Arc::new(Mutex::new(hist::new()));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let sem = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let server = sut.pids();
    let s0 = procstat::sum(&scenarios::sample(&server));
    let start = Instant::now();
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut tasks = Vec::new();
    for k in 0..total {
        let intended = start + period * k as u32;
        tokio::time::sleep_until(intended.into()).await;
        let permit = sem.clone().acquire_owned().await?;
        let (client, channel) = senders[k as usize % senders.len()].clone();
        let (h, errors, first_error) = (h.clone(), errors.clone(), first_error.clone());
        tasks.push(tokio::spawn(async move {
            let r = client
                .send_message(
                    &channel,
                    "durable bench message",
                    Some(&format!("b{rate}-{k}")),
                )
                .await;
            let us = intended.elapsed().as_micros() as u64;
            match r {
                Ok(_) => hist::record(&mut *h.lock().await, us),
                Err(e) => {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    first_error
                        .lock()
                        .await
                        .get_or_insert_with(|| e.to_string());
                }
            }
            drop(permit);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    let d = s0.delta(&procstat::sum(&scenarios::sample(&server)));
    let h: Histogram<u64> = h.lock().await.clone();
    let lat = Latency::of(&h);
    let errors = errors.load(std::sync::atomic::Ordering::Relaxed);
    let mut run = Run::new("durable", system, round);
    run.param("rate", rate)
        .param("seconds", seconds)
        .param("channels", senders.len())
        .metric("acked_per_s", lat.count as f64 / elapsed.as_secs_f64())
        .metric("latency_p50_ms", lat.p50_ms)
        .metric("latency_p99_ms", lat.p99_ms)
        .metric("latency_max_ms", lat.max_ms)
        .metric(
            "server_cpu_us_per_send",
            if lat.count > 0 {
                d.cpu_us as f64 / lat.count as f64
            } else {
                0.0
            },
        )
        .metric("errors", errors as f64);
    if errors > 0 {
        run.invalid(format!(
            "{errors} sends failed: {}",
            first_error.lock().await.clone().unwrap_or_default()
        ));
    }
    Ok(run)
}
