//! A generator process: opens its share of the connections, then publishes or counts on the
//! coordinator's commands (JSON lines on stdin) and reports (JSON lines on stdout).
//!
//! Generators are separate processes because one process here may hold at most ~19,900
//! sockets, and so their CPU can be told apart from the server's. Each runs a single-threaded
//! runtime: the coordinator pins them to the core the server does not use.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{watch, Semaphore};

use crate::adapters::{self, marker, Link, Target};
use crate::hist;

/// One connection to open.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConnSpec {
    /// Our realtime token (peers: none).
    pub token: Option<String>,
    /// What to subscribe to: our `chat:<app>:<id>` channel, or the peer's room.
    pub room: String,
    /// Our channel id (for sends); the room name for peers.
    pub room_id: String,
}

/// What this generator's connections do.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Role {
    /// Connect, subscribe, count deliveries and their latency.
    Subscriber,
    /// Connect and, on `go`, publish `rate` payloads/s each (open loop) of `payload` bytes.
    Publisher { rate: f64, payload: usize },
    /// Connect + subscribe on an open-loop schedule of `rate`/s; latency from the intended
    /// start to the subscribe reply.
    Storm { rate: f64 },
}

/// The whole job of one generator process.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GenSpec {
    pub target: Target,
    pub role: Role,
    /// Source addresses, used round-robin.
    pub sources: Vec<Ipv4Addr>,
    pub conns: Vec<ConnSpec>,
    /// Connections opened at once while connecting (not for storms).
    pub concurrency: usize,
}

/// Coordinator → generator.
#[derive(Debug, Serialize, Deserialize)]
pub enum Cmd {
    /// Publish for `duration_ms` starting now.
    Go { duration_ms: u64 },
    /// Zero the delivery counters and histogram.
    Reset,
    /// Report deliveries so far.
    Report,
}

/// Generator → coordinator.
#[derive(Debug, Serialize, Deserialize)]
pub enum Out {
    Connected {
        ok: u64,
        failed: u64,
        elapsed_ms: u64,
        /// Connect (+auth +subscribe) latency, encoded histogram (µs).
        hist: String,
        first_error: Option<String>,
    },
    Published {
        sent: u64,
        acked: u64,
        errors: u64,
        /// Most the schedule fell behind (ms): a saturated generator shows here.
        behind_max_ms: u64,
    },
    Received {
        deliveries: u64,
        hist: String,
        /// Deliveries of the connection that got the fewest.
        min_per_conn: u64,
        closed: u64,
        /// Deliveries a connection had already received (same marker twice).
        duplicates: u64,
        /// Subscribers that reconnected and recovered (ours only), and recoveries refused.
        resumed: u64,
        unrecovered: u64,
    },
}

fn emit(o: &Out) {
    if let Ok(s) = serde_json::to_string(o) {
        println!("{s}");
    }
}

/// Shared counters of the subscriber connections.
struct Counters {
    /// Subscribers that reconnected and asked to recover.
    resumed: AtomicU64,
    /// Recoveries the server could not make (the gap is lost).
    unrecovered: AtomicU64,
    deliveries: AtomicU64,
    duplicates: AtomicU64,
    closed: AtomicU64,
    hist: Mutex<Histogram<u64>>,
    per_conn: Vec<AtomicU64>,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Runs a generator: reads its spec from the first stdin line.
pub async fn run() -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let first = lines.next_line().await?.unwrap_or_default();
    let spec: GenSpec = serde_json::from_str(&first)?;
    let quic = match &spec.target {
        Target::OursQuic { cert, .. } => {
            use base64::Engine;
            let der = base64::engine::general_purpose::STANDARD.decode(cert)?;
            let trust = chatsdk_client::wire::QuicTrust::Pinned(der.into());
            let mut v = Vec::new();
            for src in &spec.sources {
                v.push(chatsdk_client::wire::QuicConnector::new(
                    (*src, 0).into(),
                    &trust,
                    &Default::default(),
                )?);
            }
            v
        }
        _ => Vec::new(),
    };
    let quic = Arc::new(quic);
    let counters = Arc::new(Counters {
        resumed: AtomicU64::new(0),
        unrecovered: AtomicU64::new(0),
        deliveries: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        closed: AtomicU64::new(0),
        hist: Mutex::new(hist::new()),
        per_conn: (0..spec.conns.len()).map(|_| AtomicU64::new(0)).collect(),
    });
    let (go_tx, go_rx) = watch::channel::<Option<(Instant, u64, u64)>>(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let published = Arc::new(Mutex::new((0u64, 0u64, 0u64, 0u64)));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(spec.conns.len().max(1));

    let n_conns = spec.conns.len();
    // Connect phase.
    let started = Instant::now();
    let connect_hist = Arc::new(Mutex::new(hist::new()));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let failed = Arc::new(AtomicU64::new(0));
    let sem = Arc::new(Semaphore::new(spec.concurrency.max(1)));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(spec.conns.len().max(1));
    for (i, c) in spec.conns.iter().cloned().enumerate() {
        let intended = match spec.role {
            Role::Storm { rate } => started + Duration::from_secs_f64(i as f64 / rate.max(0.001)),
            _ => started,
        };
        let storm = matches!(spec.role, Role::Storm { .. });
        let permit = if storm {
            None
        } else {
            Some(sem.clone().acquire_owned().await?)
        };
        let (target, role, quic) = (spec.target.clone(), spec.role.clone(), quic.clone());
        let src = spec.sources[i % spec.sources.len().max(1)];
        let (counters, connect_hist, first_error, failed) = (
            counters.clone(),
            connect_hist.clone(),
            first_error.clone(),
            failed.clone(),
        );
        let (ready_tx, go_rx, stop_rx, published, done_tx) = (
            ready_tx.clone(),
            go_rx.clone(),
            stop_rx.clone(),
            published.clone(),
            done_tx.clone(),
        );
        tokio::spawn(async move {
            tokio::time::sleep_until(intended.into()).await;
            let q = if quic.is_empty() {
                None
            } else {
                Some(&quic[i % quic.len()])
            };
            let opened = async {
                let mut link = adapters::open(&target, src, c.token.as_deref(), q).await?;
                let mut position = None;
                if !matches!(role, Role::Publisher { .. }) {
                    position = adapters::subscribe(&target, &mut link, &c.room).await?;
                }
                Ok::<_, anyhow::Error>((link, position))
            };
            let link = tokio::time::timeout(Duration::from_secs(30), opened).await;
            let link = match link {
                Ok(Ok(l)) => {
                    if let Ok(mut h) = connect_hist.lock() {
                        hist::record(&mut h, intended.elapsed().as_micros() as u64);
                    }
                    Some(l)
                }
                Ok(Err(e)) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut f) = first_error.lock() {
                        f.get_or_insert_with(|| format!("{e:#}"));
                    }
                    None
                }
                Err(_) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut f) = first_error.lock() {
                        f.get_or_insert_with(|| "connect timed out".into());
                    }
                    None
                }
            };
            drop(permit);
            let _ = ready_tx.send(()).await;
            let Some((link, position)) = link else { return };
            match role {
                Role::Publisher { rate, payload } => {
                    let mut stop = stop_rx.clone();
                    let me = Publisher {
                        index: i,
                        of: n_conns,
                        rate,
                        payload,
                    };
                    let link = publish(&target, link, &c, me, go_rx, stop_rx, published).await;
                    let _ = done_tx.send(()).await;
                    if let Some(mut link) = link {
                        let _ = stop.changed().await;
                        link.close().await;
                    }
                }
                _ => {
                    let resume = Resume {
                        src,
                        conn: c.clone(),
                        quic: quic.clone(),
                        position,
                    };
                    subscribe_loop(&target, link, i, resume, counters, stop_rx).await
                }
            }
        });
    }
    drop(ready_tx);
    drop(done_tx);
    let mut ready = 0;
    while ready < spec.conns.len() && ready_rx.recv().await.is_some() {
        ready += 1;
    }
    let failed_n = failed.load(Ordering::Relaxed);
    emit(&Out::Connected {
        ok: spec.conns.len() as u64 - failed_n,
        failed: failed_n,
        elapsed_ms: started.elapsed().as_millis() as u64,
        hist: connect_hist
            .lock()
            .map(|h| hist::encode(&h))
            .unwrap_or_default(),
        first_error: first_error.lock().ok().and_then(|f| f.clone()),
    });
    let publishers = (spec.conns.len() as u64 - failed_n) as usize;

    while let Some(line) = lines.next_line().await? {
        match serde_json::from_str::<Cmd>(&line) {
            Ok(Cmd::Go { duration_ms }) => {
                let _ = go_tx.send(Some((Instant::now(), now_ns(), duration_ms)));
                if matches!(spec.role, Role::Publisher { .. }) {
                    let mut done = 0;
                    while done < publishers && done_rx.recv().await.is_some() {
                        done += 1;
                    }
                    let (sent, acked, errors, behind) =
                        published.lock().map(|p| *p).unwrap_or_default();
                    emit(&Out::Published {
                        sent,
                        acked,
                        errors,
                        behind_max_ms: behind,
                    });
                }
            }
            Ok(Cmd::Reset) => {
                counters.deliveries.store(0, Ordering::Relaxed);
                counters.duplicates.store(0, Ordering::Relaxed);
                for c in &counters.per_conn {
                    c.store(0, Ordering::Relaxed);
                }
                if let Ok(mut h) = counters.hist.lock() {
                    h.reset();
                }
            }
            Ok(Cmd::Report) => emit(&Out::Received {
                deliveries: counters.deliveries.load(Ordering::Relaxed),
                hist: counters
                    .hist
                    .lock()
                    .map(|h| hist::encode(&h))
                    .unwrap_or_default(),
                min_per_conn: counters
                    .per_conn
                    .iter()
                    .map(|c| c.load(Ordering::Relaxed))
                    .min()
                    .unwrap_or(0),
                closed: counters.closed.load(Ordering::Relaxed),
                duplicates: counters.duplicates.load(Ordering::Relaxed),
                resumed: counters.resumed.load(Ordering::Relaxed),
                unrecovered: counters.unrecovered.load(Ordering::Relaxed),
            }),
            Err(e) => tracing::warn!(error = %e, "unknown generator command"),
        }
    }
    let _ = stop_tx.send(true);
    Ok(())
}

/// What a subscriber of our server needs to come back after the server closed it (slow
/// consumer 3008, gap 3010, shutdown): like a real client, it reconnects and recovers from
/// its last `(epoch, offset)`, so a close costs latency, not deliveries, unless the server
/// cannot recover the gap.
struct Resume {
    src: Ipv4Addr,
    conn: ConnSpec,
    quic: Arc<Vec<chatsdk_client::wire::QuicConnector>>,
    /// Our stream position (peers: none, they are not resumed).
    position: Option<(String, u64)>,
}

/// Reconnections one subscriber makes at most.
const MAX_RESUMES: u32 = 5;

impl Resume {
    /// Reconnects and asks to recover from the last position; the reply (with the missed
    /// publications) arrives as an ordinary frame.
    async fn reconnect(&self, target: &Target, index: usize) -> Option<Link> {
        let (epoch, offset) = self.position.clone()?;
        let q = (!self.quic.is_empty()).then(|| &self.quic[index % self.quic.len()]);
        let mut link = adapters::open(target, self.src, self.conn.token.as_deref(), q)
            .await
            .ok()?;
        let cmd = serde_json::json!({"id": 3, "subscribe": {
            "channel": self.conn.room, "recover": true, "epoch": epoch, "offset": offset}});
        link.send(cmd.to_string().as_bytes()).await.ok()?;
        Some(link)
    }
}

async fn subscribe_loop(
    target: &Target,
    mut link: Link,
    index: usize,
    mut resume: Resume,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let mut scanner = marker::Scanner::default();
    // Markers seen on this connection: a publish reaches each subscriber once.
    let mut seen = std::collections::HashSet::new();
    let mut resumes = 0;
    loop {
        let data = tokio::select! {
            d = link.recv() => d,
            _ = stop.changed() => { link.close().await; return; }
        };
        let data = match data {
            Ok(Some(d)) => d,
            _ => {
                counters.closed.fetch_add(1, Ordering::Relaxed);
                if resumes < MAX_RESUMES && resume.position.is_some() && !*stop.borrow() {
                    resumes += 1;
                    let pause = Duration::from_millis(50 + rand::random::<u64>() % 200);
                    tokio::time::sleep(pause).await;
                    if let Some(l) = resume.reconnect(target, index).await {
                        counters.resumed.fetch_add(1, Ordering::Relaxed);
                        link = l;
                        continue;
                    }
                }
                return;
            }
        };
        if let Some((epoch, offset)) = resume.position.as_mut() {
            // The recovery reply: a refused or impossible recovery loses the gap for real.
            if data.windows(8).any(|w| w == b"{\"id\":3,") {
                if data.windows(18).any(|w| w == b"\"recovered\":false")
                    || data.windows(8).any(|w| w == b"\"error\":")
                {
                    counters.unrecovered.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(e) = adapters::str_field(&data, "epoch") {
                    *epoch = e;
                }
            }
            *offset = (*offset).max(adapters::max_offset(&data));
        }
        if let Some(answer) = adapters::keepalive_answer(target, &data) {
            if link.send(answer).await.is_err() {
                counters.closed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let now = now_ns();
        let mut n = 0;
        let mut dups = 0;
        let mut lat = Vec::new();
        scanner.scan(&data, |sent| {
            if seen.insert(sent) {
                n += 1;
                lat.push(now.saturating_sub(sent) / 1000);
            } else {
                dups += 1;
            }
        });
        if dups > 0 {
            counters.duplicates.fetch_add(dups, Ordering::Relaxed);
        }
        if n > 0 {
            counters.deliveries.fetch_add(n, Ordering::Relaxed);
            counters.per_conn[index].fetch_add(n, Ordering::Relaxed);
            if let Ok(mut h) = counters.hist.lock() {
                for us in lat {
                    hist::record(&mut h, us);
                }
            }
        }
    }
}

/// One publishing connection's schedule.
#[derive(Clone, Copy)]
struct Publisher {
    /// This connection among the generator's `of` publishers.
    index: usize,
    of: usize,
    rate: f64,
    payload: usize,
}

async fn publish(
    target: &Target,
    mut link: Link,
    c: &ConnSpec,
    me: Publisher,
    mut go: watch::Receiver<Option<(Instant, u64, u64)>>,
    mut stop: watch::Receiver<bool>,
    out: Arc<Mutex<(u64, u64, u64, u64)>>,
) -> Option<Link> {
    // Wait for `go`, answering keepalives meanwhile.
    let (start, start_ns, duration_ms) = loop {
        if let Some(g) = *go.borrow_and_update() {
            break g;
        }
        tokio::select! {
            _ = go.changed() => continue,
            d = link.recv() => match d {
                Ok(Some(d)) => if let Some(a) = adapters::keepalive_answer(target, &d) {
                    let _ = link.send(a).await;
                },
                _ => return None,
            },
            _ = stop.changed() => return None,
        }
    };
    let (rate, payload) = (me.rate, me.payload);
    let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let total = ((duration_ms as f64 / 1000.0) * rate).floor() as u64;
    // Publishers are staggered over one period, so the publishes of all of them are evenly
    // spread instead of arriving in bursts.
    let (start, start_ns) = {
        let shift = period.mul_f64(me.index as f64 / me.of.max(1) as f64);
        (start + shift, start_ns + shift.as_nanos() as u64)
    };
    let (mut sent, mut acked, mut errors, mut behind) = (0u64, 0u64, 0u64, 0u64);
    let ours = target.is_ours();
    let ack_deadline = start + Duration::from_millis(duration_ms) + Duration::from_secs(10);
    while sent < total || (ours && acked + errors < sent && Instant::now() < ack_deadline) {
        let next = start + period * sent as u32;
        let sleep = async {
            if sent < total {
                tokio::time::sleep_until(next.into()).await;
            } else {
                tokio::time::sleep_until(ack_deadline.into()).await;
            }
        };
        tokio::select! {
            _ = sleep => {
                if sent >= total { break; }
                behind = behind.max(next.elapsed().as_millis() as u64);
                // Microsecond precision, and the publisher's index in the last three digits:
                // every publish's marker is unique, so a repeat is a duplicate delivery.
                let intended_ns = (start_ns + (period * sent as u32).as_nanos() as u64) / 1000 * 1000
                    + (me.index % 1000) as u64;
                let text = marker::payload(intended_ns, payload);
                let frame = adapters::publish_frame(target, &c.room, &c.room_id, &text, 10 + sent as u32);
                if link.send(&frame).await.is_err() { errors += total - sent; break; }
                sent += 1;
            }
            d = link.recv() => match d {
                Ok(Some(d)) => {
                    if let Some(a) = adapters::keepalive_answer(target, &d) {
                        let _ = link.send(a).await;
                    }
                    if ours {
                        for line in d.split(|b| *b == b'\n') {
                            if line.starts_with(b"{\"id\":") {
                                if line.windows(8).any(|w| w == b"\"error\":") { errors += 1; } else { acked += 1; }
                            }
                        }
                    }
                }
                _ => { errors += sent.saturating_sub(acked + errors); break; }
            },
        }
    }
    if !ours {
        acked = sent;
    }
    if let Ok(mut o) = out.lock() {
        o.0 += sent;
        o.1 += acked;
        o.2 += errors;
        o.3 = o.3.max(behind);
    }
    Some(link)
}
