//! Commit benchmark of the cluster substrate: how many 1 KiB proposals per second a cluster
//! commits, how long a commit takes, and what an idle cluster costs.
//!
//! What it measures, for a 1-node and/or a 3-node cluster whose nodes all live in this process
//! (each with its own temp sled directory and QUIC endpoint on 127.0.0.1, production timing):
//! - closed-loop throughput: `--concurrency` workers propose back to back for `--seconds`; the
//!   committed proposals per second over the window are the cluster's maximum at that
//!   concurrency. Its latencies are printed too, but a closed loop under-reports them
//!   (coordinated omission: a slow commit delays the next proposals instead of queueing them).
//! - open-loop latency: proposals issued on a fixed schedule at `--rate` per second (default
//!   `--rate-fraction` of the closed-loop maximum). Each latency runs from the proposal's
//!   *intended* start, so a stalled generator or cluster shows up in the tail. Outstanding
//!   proposals are capped; hitting the cap is counted and marks the run invalid ("generator
//!   saturated") instead of silently slowing the schedule down.
//! - idle CPU: this process's utime+stime while the formed cluster carries no traffic, as a
//!   percentage of one core for all nodes together.
//!
//! Method: the first node bootstraps, the others join with its token, and nothing is measured
//! until every node is active, every shard is settled with its replicas and led by its preferred
//! leader. Proposals go round-robin over all shards and all nodes, so on 3 nodes two thirds of
//! them are forwarded to the leader over QUIC, like real traffic. The state machine is the
//! test key-value machine (`testkit::KvApplier`): every `key=value` command has a unique 16-byte
//! key, so storage cost is part of what is measured. The load
//! generator shares the process (and its cores) with the nodes.
//!
//! Run: `cargo run --release -p chatsdk-cluster --example commit_bench -- --nodes both`.
//! Output: a table on stdout, preceded by one JSON line per measurement.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chatsdk_cluster::testkit::KvApplier;
use chatsdk_cluster::{ClusterConfig, ClusterNode, NodeState, StartMode};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use openraft::ServerState;
use tokio::sync::Semaphore;

/// Size of every proposed command.
const COMMAND_BYTES: usize = 1024;
/// Length of the unique key at the front of each command.
const KEY_BYTES: usize = 16;
/// Cap on proposals in flight in the open-loop run. Reaching it means the cluster has fallen so
/// far behind the schedule that the generator would have to block: the run is then invalid.
const MAX_OUTSTANDING: usize = 4096;
/// Cap on proposals per run, so no loop depends on time alone.
const MAX_OPS_PER_RUN: u64 = 50_000_000;
/// Hard bound on one proposal (the node's own propose timeout is 10 s).
const OP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long in-flight proposals may take to finish after a run's window.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a cluster may take to form and settle.
const FORM_DEADLINE: Duration = Duration::from_secs(120);
/// Polling interval of the formation check.
const POLL: Duration = Duration::from_millis(25);
/// Largest latency the histograms track (longer ones saturate at this value).
const HIST_MAX_US: u64 = 60_000_000;
/// Replicas per shard, as in production (capped by the number of nodes).
const REPLICATION: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Nodes {
    #[value(name = "1")]
    One,
    #[value(name = "3")]
    Three,
    Both,
}

/// Commit throughput and latency of in-process clusters over loopback QUIC.
#[derive(Parser, Debug)]
struct Args {
    /// Cluster sizes to measure.
    #[arg(long, value_enum, default_value = "both")]
    nodes: Nodes,
    /// Length of each measured window (closed loop, then open loop), seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Workers of the closed-loop run.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Data shards (Raft groups besides meta).
    #[arg(long, default_value_t = 16)]
    shards: u32,
    /// Length of the idle-CPU window, seconds (0 skips it).
    #[arg(long, default_value_t = 10)]
    idle_seconds: u64,
    /// Open-loop rate, proposals per second; default: `--rate-fraction` of the closed-loop max.
    #[arg(long)]
    rate: Option<f64>,
    /// Fraction of the closed-loop maximum the open loop runs at when `--rate` is not given.
    #[arg(long, default_value_t = 0.8)]
    rate_fraction: f64,
    /// Unmeasured closed-loop warm-up before the measured runs, seconds.
    #[arg(long, default_value_t = 3)]
    warmup_seconds: u64,
    /// Where the nodes' temp data directories go (default: the system temp dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// In-process nodes and their data directories.
struct Cluster {
    nodes: Vec<ClusterNode>,
    shards: u32,
    _dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    async fn start(n: usize, shards: u32, parent: &Path) -> Result<Cluster> {
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        let mut join: Option<(std::net::SocketAddr, String)> = None;
        for i in 0..n {
            let dir = tempfile::tempdir_in(parent).context("temp data dir")?;
            let mut config = ClusterConfig::new(dir.path(), "127.0.0.1:0".parse()?);
            config.shards = shards;
            config.replication = REPLICATION;
            let mode = match &join {
                None => StartMode::Bootstrap,
                Some((addr, token)) => StartMode::Join {
                    addr: *addr,
                    token: token.clone(),
                },
            };
            let node = ClusterNode::start(config, mode, Arc::new(KvApplier), None)
                .await
                .with_context(|| format!("start node {}", i + 1))?;
            if join.is_none() {
                let (token, _) = node
                    .mint_join_token(std::time::Duration::from_secs(3600), false)
                    .await?;
                join = Some((node.addr(), token));
            }
            nodes.push(node);
            dirs.push(dir);
        }
        let cluster = Cluster {
            nodes,
            shards,
            _dirs: dirs,
        };
        let deadline = Instant::now() + FORM_DEADLINE;
        while !cluster.is_ready() {
            if Instant::now() >= deadline {
                bail!("{n}-node cluster not settled after {FORM_DEADLINE:?}");
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(cluster)
    }

    /// Every node active, every shard settled on its replicas and led by its preferred leader.
    fn is_ready(&self) -> bool {
        let want = self.nodes.len().min(REPLICATION);
        let placed = self.nodes.iter().all(|node| {
            let state = node.meta_state();
            self.nodes.iter().all(|other| {
                state
                    .nodes
                    .get(&other.id())
                    .is_some_and(|r| r.state == NodeState::Active)
            }) && state.shard_map.len() == self.shards as usize
                && state
                    .shard_map
                    .values()
                    .all(|r| r.settled && r.placement.replicas.len() == want)
        });
        placed && (1..=self.shards).all(|shard| self.is_led(shard, want))
    }

    fn is_led(&self, shard: u32, want: usize) -> bool {
        let preferred = self.nodes[0]
            .meta_state()
            .shard_map
            .get(&shard)
            .and_then(|r| r.placement.leader);
        let Some(leader) = preferred else {
            return false;
        };
        let mut replicas = 0;
        for node in &self.nodes {
            let Some(metrics) = node.group_metrics(shard) else {
                continue;
            };
            let m = metrics.borrow();
            let role_ok = node.id() != leader || m.state == ServerState::Leader;
            if m.current_leader != Some(leader) || !role_ok {
                return false;
            }
            replicas += 1;
        }
        replicas == want
    }

    /// Replicas of all groups (meta included) across the nodes.
    fn replicas(&self) -> usize {
        self.nodes.iter().map(|n| n.local_groups().len()).sum()
    }

    async fn shutdown(self) {
        for node in &self.nodes {
            node.shutdown().await;
        }
    }
}

/// Issues proposal number `i`: shards cycle fastest, nodes once per round of shards, so every
/// (node, shard) pair gets the same share whatever the two counts are.
async fn propose(nodes: &[ClusterNode], shards: u32, run: u8, i: u64) -> Result<()> {
    let shard = 1 + (i % u64::from(shards)) as u32;
    let node = &nodes[((i / u64::from(shards)) % nodes.len() as u64) as usize];
    // `key=value` for the test state machine, 1 KiB in all; the key makes every command unique.
    let key = format!("{run:02x}{i:014x}");
    let value = "z".repeat(COMMAND_BYTES - KEY_BYTES - 1);
    let command = KvApplier::put(&key, &value);
    match tokio::time::timeout(OP_TIMEOUT, node.propose(shard, command)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => bail!("proposal {i} to shard {shard} not done after {OP_TIMEOUT:?}"),
    }
}

fn histogram() -> Histogram<u64> {
    // Bounds are constants; creation fails only for nonsensical bounds.
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("valid histogram bounds")
}

/// One measured run.
struct Outcome {
    nodes: usize,
    mode: &'static str,
    /// Bound on proposals in flight: the workers of a closed loop, the cap of an open one.
    in_flight: usize,
    target_rate: Option<f64>,
    /// Proposals committed (open loop: all of them, closed loop: inside the window).
    ok: u64,
    /// Proposals committed inside the window.
    ok_in_window: u64,
    errors: u64,
    saturated: u64,
    window: Duration,
    hist: Histogram<u64>,
    usage: Usage,
    notes: Vec<String>,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.ok_in_window as f64 / self.window.as_secs_f64()
    }

    fn valid(&self) -> bool {
        self.notes.is_empty()
    }

    fn json(&self, shards: u32) -> String {
        let q = |p: f64| self.hist.value_at_quantile(p);
        format!(
            "{{\"bench\":\"commit\",\"mode\":\"{}\",\"nodes\":{},\"shards\":{},\"command_bytes\":{},\
             \"max_in_flight\":{},\"target_rate\":{},\"seconds\":{:.3},\"ok\":{},\"errors\":{},\
             \"saturated\":{},\"ops_per_sec\":{:.1},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\
             \"max_us\":{},\"cpu_pct_of_one_core\":{:.1},\"disk_write_bytes_per_op\":{},\"valid\":{}}}",
            self.mode,
            self.nodes,
            shards,
            COMMAND_BYTES,
            self.in_flight,
            self.target_rate
                .map_or("null".to_string(), |r| format!("{r:.1}")),
            self.window.as_secs_f64(),
            self.ok,
            self.errors,
            self.saturated,
            self.rate(),
            q(0.5),
            q(0.99),
            q(0.999),
            self.hist.max(),
            self.usage.cpu_pct,
            self.usage
                .write_bytes
                .map_or("null".to_string(), |b| (b / self.ok.max(1)).to_string()),
            self.valid(),
        )
    }
}

/// Closed loop: `concurrency` workers propose back to back until `window` ends.
async fn closed_loop(
    cluster: &Cluster,
    run: u8,
    concurrency: usize,
    window: Duration,
) -> Result<Outcome> {
    let seq = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + window;
    let before = Sample::take()?;
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let nodes = cluster.nodes.clone();
        let shards = cluster.shards;
        let seq = seq.clone();
        workers.push(tokio::spawn(async move {
            let (mut hist, mut ok, mut errors) = (histogram(), 0u64, 0u64);
            let mut first_error = None;
            loop {
                let i = seq.fetch_add(1, Ordering::Relaxed);
                if Instant::now() >= end || i >= MAX_OPS_PER_RUN {
                    break;
                }
                let t0 = Instant::now();
                let result = propose(&nodes, shards, run, i).await;
                let done = Instant::now();
                match result {
                    // Only commits inside the window count towards throughput.
                    Ok(()) if done <= end => {
                        ok += 1;
                        hist.saturating_record((done - t0).as_micros() as u64);
                    }
                    Ok(()) => {}
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            (hist, ok, errors, first_error)
        }));
    }
    let mut outcome = Outcome {
        nodes: cluster.nodes.len(),
        mode: "closed",
        in_flight: concurrency,
        target_rate: None,
        ok: 0,
        ok_in_window: 0,
        errors: 0,
        saturated: 0,
        window,
        hist: histogram(),
        usage: Usage::default(),
        notes: Vec::new(),
    };
    let joined = tokio::time::timeout(window + DRAIN_TIMEOUT, futures::future::join_all(workers))
        .await
        .context("closed-loop workers did not finish")?;
    outcome.usage = Sample::take()?.since(&before);
    for worker in joined {
        let (hist, ok, errors, first_error) = worker.context("closed-loop worker panicked")?;
        outcome.hist.add(&hist).context("merge histograms")?;
        outcome.ok += ok;
        outcome.ok_in_window += ok;
        outcome.errors += errors;
        if let Some(e) = first_error {
            outcome.notes.push(format!("error: {e}"));
        }
    }
    outcome.notes.dedup();
    Ok(outcome)
}

/// Open loop: proposal `k` is due at `start + k / rate`; its latency counts from then.
async fn open_loop(cluster: &Cluster, run: u8, rate: f64, window: Duration) -> Result<Outcome> {
    let total = ((rate * window.as_secs_f64()) as u64).min(MAX_OPS_PER_RUN);
    let permits = Arc::new(Semaphore::new(MAX_OUTSTANDING));
    let hist = Arc::new(Mutex::new(histogram()));
    let ok = Arc::new(AtomicU64::new(0));
    let ok_in_window = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let mut saturated = 0u64;
    let mut max_lag = Duration::ZERO;
    let mut peak_in_flight = 0usize;
    let before = Sample::take()?;
    let start = Instant::now();
    let end = start + window;
    let due_at = |k: u64| start + Duration::from_secs_f64(k as f64 / rate);
    let mut k = 0u64;
    // Bounded by `total`; each pass issues every proposal already due, so time always advances it.
    while k < total {
        let now = Instant::now();
        while k < total && due_at(k) <= now {
            let intended = due_at(k);
            max_lag = max_lag.max(now - intended);
            match permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    let nodes = cluster.nodes.clone();
                    let shards = cluster.shards;
                    let (hist, ok, errors) = (hist.clone(), ok.clone(), errors.clone());
                    let ok_in_window = ok_in_window.clone();
                    let first_error = first_error.clone();
                    tokio::spawn(async move {
                        let result = propose(&nodes, shards, run, k).await;
                        let latency = intended.elapsed().as_micros() as u64;
                        match result {
                            Ok(()) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                if Instant::now() <= end {
                                    ok_in_window.fetch_add(1, Ordering::Relaxed);
                                }
                                if let Ok(mut h) = hist.lock() {
                                    h.saturating_record(latency);
                                }
                            }
                            Err(e) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                                if let Ok(mut slot) = first_error.lock() {
                                    slot.get_or_insert_with(|| e.to_string());
                                }
                            }
                        }
                        drop(permit);
                    });
                }
                Err(_) => saturated += 1,
            }
            k += 1;
        }
        peak_in_flight = peak_in_flight.max(MAX_OUTSTANDING - permits.available_permits());
        if k < total {
            tokio::time::sleep_until(due_at(k).into()).await;
        }
    }
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, permits.acquire_many(MAX_OUTSTANDING as u32))
        .await
        .is_ok();
    let mut notes = Vec::new();
    if saturated > 0 {
        notes.push(format!(
            "generator saturated: {saturated} proposals skipped at {MAX_OUTSTANDING} in flight"
        ));
    }
    if !drained {
        notes.push(format!("proposals still in flight after {DRAIN_TIMEOUT:?}"));
    }
    if let Some(e) = first_error.lock().ok().and_then(|mut e| e.take()) {
        notes.push(format!("error: {e}"));
    }
    eprintln!("  peak in flight {peak_in_flight}, generator at most {max_lag:?} behind schedule");
    let hist = hist
        .lock()
        .map_err(|_| anyhow::anyhow!("histogram lock poisoned"))?
        .clone();
    Ok(Outcome {
        nodes: cluster.nodes.len(),
        mode: "open",
        in_flight: MAX_OUTSTANDING,
        target_rate: Some(rate),
        ok: ok.load(Ordering::Relaxed),
        ok_in_window: ok_in_window.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        saturated,
        window,
        hist,
        usage: Sample::take()?.since(&before),
        notes,
    })
}

/// CPU and disk use of this process between two samples.
#[derive(Default)]
struct Usage {
    /// utime+stime as a percentage of one core.
    cpu_pct: f64,
    /// Bytes this process caused to be written to storage, if /proc/self/io is readable.
    write_bytes: Option<u64>,
}

/// A reading of this process's counters.
struct Sample {
    at: Instant,
    ticks: u64,
    write_bytes: Option<u64>,
}

impl Sample {
    fn take() -> Result<Sample> {
        let stat = std::fs::read_to_string("/proc/self/stat").context("read /proc/self/stat")?;
        // Fields after the command name (which may hold spaces) start at field 3 (state);
        // utime and stime are fields 14 and 15.
        let rest = stat
            .rsplit_once(')')
            .context("malformed /proc/self/stat")?
            .1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| -> Result<u64> {
            let raw = fields.get(n - 3).context("short /proc/self/stat")?;
            Ok(raw.parse()?)
        };
        let write_bytes = std::fs::read_to_string("/proc/self/io")
            .ok()
            .and_then(|io| {
                io.lines()
                    .find_map(|l| l.strip_prefix("write_bytes: "))
                    .and_then(|v| v.trim().parse().ok())
            });
        Ok(Sample {
            at: Instant::now(),
            ticks: field(14)? + field(15)?,
            write_bytes,
        })
    }

    fn since(&self, before: &Sample) -> Usage {
        let cpu_secs = (self.ticks - before.ticks) as f64 / clock_ticks_per_sec();
        Usage {
            cpu_pct: 100.0 * cpu_secs / (self.at - before.at).as_secs_f64(),
            write_bytes: self
                .write_bytes
                .zip(before.write_bytes)
                .map(|(a, b)| a.saturating_sub(b)),
        }
    }
}

/// `getconf CLK_TCK`, read once (100 on Linux if getconf is missing).
fn clock_ticks_per_sec() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| {
                eprintln!("getconf CLK_TCK failed; assuming 100 ticks per second");
                100.0
            })
    })
}

fn row(o: &Outcome) -> String {
    let ms = |us: u64| us as f64 / 1000.0;
    let load = match o.target_rate {
        Some(r) => format!("open @ {r:.0}/s"),
        None => format!("closed, C={}", o.in_flight),
    };
    format!(
        "{:>5}  {:<18} {:>9.0} {:>8.2} {:>8.2} {:>9.2} {:>8.2} {:>6.0} {:>7}  {}",
        o.nodes,
        load,
        o.rate(),
        ms(o.hist.value_at_quantile(0.5)),
        ms(o.hist.value_at_quantile(0.99)),
        ms(o.hist.value_at_quantile(0.999)),
        ms(o.hist.max()),
        o.usage.cpu_pct,
        o.errors,
        if o.valid() {
            "ok".to_string()
        } else {
            format!("INVALID: {}", o.notes.join("; "))
        },
    )
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,openraft=error".to_string()),
        )
        .with_writer(std::io::stderr)
        .init();
    if args.seconds == 0 || args.concurrency == 0 || args.shards == 0 {
        bail!("--seconds, --concurrency and --shards must be positive");
    }
    if !(args.rate_fraction > 0.0 && args.rate.is_none_or(|r| r > 0.0)) {
        bail!("--rate and --rate-fraction must be positive");
    }
    let parent = args.data_dir.clone().unwrap_or_else(std::env::temp_dir);
    let sizes: &[usize] = match args.nodes {
        Nodes::One => &[1],
        Nodes::Three => &[3],
        Nodes::Both => &[1, 3],
    };
    let window = Duration::from_secs(args.seconds);
    let mut outcomes = Vec::new();
    let mut idle = Vec::new();
    for &n in sizes {
        eprintln!("forming a {n}-node cluster with {} shards", args.shards);
        let cluster = Cluster::start(n, args.shards, &parent).await?;
        if args.idle_seconds > 0 {
            eprintln!("  idle CPU over {} s", args.idle_seconds);
            let before = Sample::take()?;
            tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
            let cpu = Sample::take()?.since(&before).cpu_pct;
            let (groups, replicas) = (1 + args.shards, cluster.replicas());
            println!(
                "{{\"bench\":\"commit\",\"mode\":\"idle\",\"nodes\":{n},\"groups\":{groups},\
                 \"replicas\":{replicas},\"seconds\":{},\"cpu_pct_of_one_core\":{cpu:.2}}}",
                args.idle_seconds
            );
            idle.push((n, groups, replicas, cpu));
        }
        if args.warmup_seconds > 0 {
            eprintln!("  warm-up: closed loop for {} s", args.warmup_seconds);
            let secs = Duration::from_secs(args.warmup_seconds);
            closed_loop(&cluster, 0, args.concurrency, secs).await?;
        }
        eprintln!("  closed loop, C={}, {} s", args.concurrency, args.seconds);
        let closed = closed_loop(&cluster, 1, args.concurrency, window).await?;
        println!("{}", closed.json(args.shards));
        let rate = args.rate.unwrap_or(closed.rate() * args.rate_fraction);
        if rate < 1.0 {
            bail!(
                "closed loop committed {:.1}/s: nothing to run open loop at",
                closed.rate()
            );
        }
        eprintln!("  open loop at {rate:.0}/s, {} s", args.seconds);
        let open = open_loop(&cluster, 2, rate, window).await?;
        println!("{}", open.json(args.shards));
        outcomes.push(closed);
        outcomes.push(open);
        cluster.shutdown().await;
    }
    println!();
    println!(
        "{} KiB commands, {} shards, replication {}, {} ms heartbeat (defaults)",
        COMMAND_BYTES / 1024,
        args.shards,
        REPLICATION,
        ClusterConfig::new("", "127.0.0.1:0".parse()?)
            .heartbeat
            .as_millis()
    );
    println!(
        "{:>5}  {:<18} {:>9} {:>8} {:>8} {:>9} {:>8} {:>6} {:>7}  status",
        "nodes", "load", "commits/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "cpu%", "errors"
    );
    for o in &outcomes {
        println!("{}", row(o));
    }
    for (n, groups, replicas, cpu) in idle {
        println!(
            "idle {n}-node cluster: {cpu:.2}% of one core ({groups} groups, {replicas} replicas)"
        );
    }
    Ok(())
}
