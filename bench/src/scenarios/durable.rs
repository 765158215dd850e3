//! `durable`: acknowledged durable sends per second and their latency, ours against NATS
//! JetStream. Ours: REST sends (`POST /api/channels/:id/messages`, each durable on a majority
//! before the answer) on one node and on a three-node cluster, and `message.send` rpcs over
//! the realtime WebSocket on one node; JetStream: publishes to file-backed streams with
//! `sync_interval: always`, acknowledged by their PubAck (see [`crate::jetstream`]), on one
//! server and on a cluster of three with three replicas per stream (against our three nodes).
//!
//! Open loop: sends are scheduled at a fixed rate and latency runs from the intended send
//! time, so a slow server cannot hide its queueing (each step is measured after a second of
//! unmeasured sends at its rate, [`WARM_UP`]); the rate steps up until p99 passes 25 ms (50 ms
//! on three servers) or a step is invalid. Each system's summary is its highest rate
//! acknowledged within that bound and the server CPU per acknowledged send there, with
//! `ours/jetstream` ratios.

mod senders;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use tokio::sync::Semaphore;

use crate::adapters::marker;
use crate::hist::{self, Latency};
use crate::jetstream::JetStream;
use crate::procstat;
use crate::report::{self, Run};
use crate::scenarios::{self, Ctx};
use crate::sut::{Sut, System};
use senders::Senders;

/// Channels written to (spread over the shards; on JetStream one stream each), each by its
/// own user.
const CHANNELS: usize = 64;
/// Sends in flight at most; beyond it the schedule waits (and latency shows it).
const MAX_IN_FLIGHT: usize = 1024;
/// Realtime connections per channel publisher: our session answers one command at a time.
const WS_CONNS_PER_CHANNEL: usize = 4;
/// Bytes of message text (JetStream: of the message body).
const PAYLOAD: usize = 100;
/// The p99 bound of a one-server system's summary.
const P99_BOUND_MS: f64 = 25.0;
/// The p99 bound of a three-server system: a write there waits for a second replica.
const P99_BOUND_3_MS: f64 = 50.0;
/// Generator load beyond which a step measures the generator, not the server.
const MAX_GEN_LOAD: f64 = 0.9;
/// Unmeasured sends at a step's rate before it is measured. The REST senders' connection pools
/// grow to what the rate needs during the first few hundred milliseconds (each new connection
/// a TCP handshake and an accept while the schedule runs), which measured the harness's own
/// start-up: p50 of 90 ms and a generator 45 ms behind its schedule in the first 300 ms of a
/// 7,000/s step, and most of that step's p99.
const WARM_UP: Duration = Duration::from_secs(1);
/// A send not acknowledged within this has failed: it bounds every step's tail (REST has no
/// timeout of its own; the realtime and JetStream clients give up after 10 s themselves).
const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// The systems of the scenario, in the order they run each round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sys {
    /// Ours, one node, REST.
    Rest1,
    /// Ours, one node, realtime rpc over WebSocket.
    Ws1,
    JetStream,
    /// Ours, three nodes, REST.
    Rest3,
    /// Three nats-servers in one JetStream cluster, streams with three replicas.
    JetStream3,
}

impl Sys {
    const ALL: [Sys; 5] = [
        Sys::Rest1,
        Sys::Ws1,
        Sys::JetStream,
        Sys::Rest3,
        Sys::JetStream3,
    ];

    fn name(self) -> &'static str {
        match self {
            Sys::Rest1 => "chatsdk-1node",
            Sys::Ws1 => "chatsdk-1node-ws",
            Sys::JetStream => "jetstream",
            Sys::Rest3 => "chatsdk-3node",
            Sys::JetStream3 => "jetstream-3node",
        }
    }

    /// The p99 latency a step must keep to count (the targets' bounds: 25 ms on one server,
    /// 50 ms on three).
    fn p99_bound_ms(self) -> f64 {
        match self {
            Sys::Rest3 | Sys::JetStream3 => P99_BOUND_3_MS,
            Sys::Rest1 | Sys::Ws1 | Sys::JetStream => P99_BOUND_MS,
        }
    }
}

/// A started system: ours or nats-server.
enum Server {
    Ours(Sut),
    Js(Vec<JetStream>),
}

impl Server {
    fn pids(&self) -> Vec<u32> {
        match self {
            Server::Ours(s) => s.pids(),
            Server::Js(j) => j.iter().map(JetStream::pid).collect(),
        }
    }

    fn stop(self) {
        match self {
            Server::Ours(s) => s.stop(),
            Server::Js(j) => drop(j),
        }
    }
}

pub async fn run(
    ctx: &Ctx,
    rates: &[f64],
    seconds: f64,
    cluster: bool,
    only: &[String],
) -> anyhow::Result<Vec<Run>> {
    let rates: Vec<f64> = if ctx.smoke {
        vec![50.0]
    } else {
        rates.to_vec()
    };
    let seconds = if ctx.smoke { 1.0 } else { seconds };
    let mut systems = vec![Sys::Rest1, Sys::Ws1];
    if ctx.installed.is_some() {
        systems.push(Sys::JetStream);
    }
    if cluster {
        systems.push(Sys::Rest3);
        if ctx.installed.is_some() {
            systems.push(Sys::JetStream3);
        }
    }
    if !only.is_empty() {
        if let Some(unknown) = only
            .iter()
            .find(|n| !Sys::ALL.iter().any(|s| s.name() == *n))
        {
            anyhow::bail!(
                "--only: no system {unknown:?} (known: {})",
                Sys::ALL.map(Sys::name).join(", ")
            );
        }
        systems.retain(|s| only.iter().any(|n| n == s.name()));
        if systems.is_empty() {
            anyhow::bail!("--only: none of {only:?} runs here (--no-cluster, --no-peers?)");
        }
    }
    let mut runs = Vec::new();
    for round in 0..ctx.rounds {
        for &sys in &systems {
            let (server, senders) = prepare(ctx, sys, round).await?;
            let pids = server.pids();
            for &rate in &rates {
                let r = step(ctx, &pids, &senders, rate, seconds, sys.name(), round).await?;
                r.emit();
                let p99 = r.metrics.get("latency_p99_ms").copied().unwrap_or(0.0);
                eprintln!(
                    "durable {}: asked {rate}/s, acked {:.0}/s, p99 {p99:.1} ms{}",
                    sys.name(),
                    r.metrics.get("acked_per_s").copied().unwrap_or(0.0),
                    if r.valid { "" } else { " (invalid)" }
                );
                let stop = !r.valid || p99 > sys.p99_bound_ms();
                runs.push(r);
                if stop {
                    break;
                }
            }
            senders.close().await;
            server.stop();
        }
    }
    report::table("durable (every step)", &runs);
    let best = summaries(&runs, &systems, ctx.rounds);
    for b in &best {
        b.emit();
    }
    let of = |names: &[Sys]| -> Vec<Run> {
        names
            .iter()
            .flat_map(|s| best.iter().filter(move |b| b.system == s.name()))
            .cloned()
            .collect()
    };
    let rest = of(&[Sys::Rest1, Sys::JetStream, Sys::Rest3]);
    report::table(
        &format!("durable over REST: highest rate with p99 <= {P99_BOUND_MS} ms (three nodes: {P99_BOUND_3_MS} ms)"),
        &rest,
    );
    if cluster {
        // Ratios are to a table's first row: the three-server pair gets its own table.
        report::table(
            &format!("durable on three servers: highest rate with p99 <= {P99_BOUND_3_MS} ms"),
            &of(&[Sys::Rest3, Sys::JetStream3]),
        );
    }
    let ws = of(&[Sys::Ws1, Sys::JetStream]);
    report::table(
        &format!("durable over WebSocket: highest rate with p99 <= {P99_BOUND_MS} ms"),
        &ws,
    );
    runs.extend(best);
    Ok(runs)
}

/// Starts `sys` and its senders.
async fn prepare(ctx: &Ctx, sys: Sys, round: usize) -> anyhow::Result<(Server, Senders)> {
    if matches!(sys, Sys::JetStream | Sys::JetStream3) {
        let inst = ctx
            .installed
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("peers are not installed"))?;
        let (servers, replicas) = if sys == Sys::JetStream3 {
            (JetStream::start_cluster(inst, 3)?, 3)
        } else {
            (vec![JetStream::start(inst, ctx.server_cpus())?], 1)
        };
        let senders = Senders::jetstream(&servers, CHANNELS, replicas).await?;
        return Ok((Server::Js(servers), senders));
    }
    let sut = if sys == Sys::Rest3 {
        Sut::cluster3(None).await?
    } else {
        Sut::start(System::Ours { quic: false }, None, ctx.server_cpus())?
    };
    let rooms = sut.rooms(&format!("d{round}"), CHANNELS, 0, 1).await?;
    let senders = if sys == Sys::Ws1 {
        Senders::realtime(&sut, &rooms, WS_CONNS_PER_CHANNEL).await?
    } else {
        Senders::rest(&sut, &rooms)?
    };
    Ok((Server::Ours(sut), senders))
}

/// One open-loop step at `rate` sends/s for `seconds`.
async fn step(
    ctx: &Ctx,
    server: &[u32],
    senders: &Senders,
    rate: f64,
    seconds: f64,
    system: &str,
    round: usize,
) -> anyhow::Result<Run> {
    warm_up(senders, rate).await?;
    let total = (rate * seconds) as u64;
    let h = Arc::new(Mutex::new(hist::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let me = [std::process::id()];
    let dropped0 = senders.dropped();
    let s0 = procstat::sum(&scenarios::sample(server));
    let g0 = scenarios::sample(&me);
    let start = Instant::now();
    let (into_h, into_errors, into_first) = (h.clone(), errors.clone(), first_error.clone());
    // Client message ids unique to this step: a second step at the same rate on the same server
    // must not resend the first one's ids (the server would answer them as retries, from
    // memory, without storing anything).
    open_loop(senders, rate, total, 'b', move |intended, r| {
        let us = intended.elapsed().as_micros() as u64;
        match r {
            Ok(()) => hist::record(&mut lock(&into_h), us),
            Err(e) => {
                into_errors.fetch_add(1, Ordering::Relaxed);
                lock(&into_first).get_or_insert(e);
            }
        }
    })
    .await?;
    let elapsed = start.elapsed();
    let d = s0.delta(&procstat::sum(&scenarios::sample(server)));
    let gen_load = scenarios::gen_load(&g0, &scenarios::sample(&me), elapsed, ctx.gen_cores());
    let h: Histogram<u64> = lock(&h).clone();
    let lat = Latency::of(&h);
    let errors = errors.load(Ordering::Relaxed);
    let dropped = senders.dropped() - dropped0;
    let mut run = Run::new("durable", system, round);
    run.param("rate", rate)
        .param("seconds", seconds)
        .param("channels", senders.channels())
        .param("connections_per_channel", senders.per_channel())
        .param("payload_bytes", PAYLOAD)
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
        .metric("generator_load", gen_load)
        .metric("errors", errors as f64);
    if errors > 0 {
        run.invalid(format!(
            "{errors} sends failed: {}",
            lock(&first_error).clone().unwrap_or_default()
        ));
    }
    if dropped > 0 {
        run.invalid(format!("{dropped} realtime connections dropped"));
    }
    if gen_load > MAX_GEN_LOAD {
        run.invalid(format!("generator saturated ({:.0} %)", gen_load * 100.0));
    }
    Ok(run)
}

/// [`WARM_UP`]'s worth of sends at `rate`, on the step's schedule, unmeasured (their client
/// message ids are their own, so the measured sends are all new messages).
async fn warm_up(senders: &Senders, rate: f64) -> anyhow::Result<()> {
    let total = (rate * WARM_UP.as_secs_f64()) as u64;
    open_loop(senders, rate, total, 'w', |_, _| {}).await
}

/// `total` sends at `rate` from now on, open loop, at most [`MAX_IN_FLIGHT`] in flight (beyond
/// that the schedule waits); each send's intended time and outcome go to `done`. Client message
/// ids are `<tag><start time>-<k>`. Returns once every send has ended, each within
/// [`SEND_TIMEOUT`].
async fn open_loop(
    senders: &Senders,
    rate: f64,
    total: u64,
    tag: char,
    done: impl Fn(Instant, Result<(), String>) + Clone + Send + 'static,
) -> anyhow::Result<()> {
    let sem = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let start = Instant::now();
    let unix0 = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut tasks = Vec::new();
    for k in 0..total {
        let offset = period * k as u32;
        let intended = start + offset;
        tokio::time::sleep_until(intended.into()).await;
        let permit = sem.clone().acquire_owned().await?;
        let text = marker::payload(unix0 + offset.as_nanos() as u64, PAYLOAD);
        let send = senders.send(k, text, format!("{tag}{unix0:x}-{k}"));
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let r = tokio::time::timeout(SEND_TIMEOUT, send)
                .await
                .unwrap_or_else(|_| Err(format!("not acknowledged within {SEND_TIMEOUT:?}")));
            done(intended, r);
            drop(permit);
        }));
    }
    // Every send ends within SEND_TIMEOUT, so this wait is bounded.
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Per system and round: the highest acknowledged rate among valid steps with p99 within the
/// bound, and the server CPU per send and p99 at that step. When no step kept the bound, the
/// rate is 0 and the CPU is the lowest valid step's (`bound_met: false`).
fn summaries(runs: &[Run], systems: &[Sys], rounds: usize) -> Vec<Run> {
    let get = |r: &Run, k: &str| r.metrics.get(k).copied().unwrap_or(0.0);
    let mut out = Vec::new();
    for round in 0..rounds {
        for sys in systems {
            let steps: Vec<&Run> = runs
                .iter()
                .filter(|r| r.system == sys.name() && r.round == round && r.valid)
                .collect();
            let kept = steps
                .iter()
                .filter(|r| get(r, "latency_p99_ms") <= sys.p99_bound_ms())
                .max_by(|a, b| get(a, "acked_per_s").total_cmp(&get(b, "acked_per_s")));
            let mut s = Run::new("durable-summary", sys.name(), round);
            s.param("p99_bound_ms", sys.p99_bound_ms())
                .param("valid_steps", steps.len());
            match (kept, steps.first()) {
                (Some(r), _) => {
                    s.param("rate", r.params.get("rate").cloned().unwrap_or_default())
                        .param("bound_met", true)
                        .metric("acked_per_s_within_p99_bound", get(r, "acked_per_s"))
                        .metric("server_cpu_us_per_send", get(r, "server_cpu_us_per_send"))
                        .metric("latency_p99_ms", get(r, "latency_p99_ms"));
                }
                (None, Some(r)) => {
                    s.param("bound_met", false)
                        .metric("acked_per_s_within_p99_bound", 0.0)
                        .metric("server_cpu_us_per_send", get(r, "server_cpu_us_per_send"))
                        .metric("latency_p99_ms", get(r, "latency_p99_ms"));
                }
                (None, None) => {
                    s.invalid("no valid step");
                }
            }
            out.push(s);
        }
    }
    out
}
