//! The scenarios, and what they share: the run context (pinning, sources, systems, rounds),
//! spreading connections over generator processes, and interleaving systems round by round.

pub mod chat_mix;
pub mod durable;
pub mod failover;
pub mod fanout;
pub mod idle;
pub mod media;
pub mod soak;
pub mod storm;

use std::net::Ipv4Addr;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::adapters::Target;
use crate::gen::{ConnSpec, GenSpec, Out, Role};
use crate::genproc::Gen;
use crate::hist;
use crate::peers::Installed;
use crate::procstat;
use crate::sut::System;

/// Connections per generator process: below the ~19,900 sockets one process may hold here.
pub const PER_GEN: usize = 15_000;

/// What every scenario run needs.
pub struct Ctx {
    /// Tiny sizes and short windows (CI).
    pub smoke: bool,
    /// Rounds of interleaved runs (ours, peer, ours, peer, ...).
    pub rounds: usize,
    pub server_cpus: Option<Vec<usize>>,
    pub gen_cpus: Option<Vec<usize>>,
    /// Source addresses for generator sockets.
    pub sources: Vec<Ipv4Addr>,
    pub installed: Option<Installed>,
    /// Systems compared, ours first.
    pub systems: Vec<System>,
}

impl Ctx {
    /// Pinning (server on core 0, generators on the others) when there are two cores or more.
    pub fn pinning() -> (Option<Vec<usize>>, Option<Vec<usize>>) {
        let n = procstat::cpu_count();
        if n >= 2 {
            (Some(vec![0]), Some((1..n).collect()))
        } else {
            (None, None)
        }
    }

    pub fn server_cpus(&self) -> Option<&[usize]> {
        self.server_cpus.as_deref()
    }

    /// Generator cores available (for saturation checks).
    pub fn gen_cores(&self) -> f64 {
        self.gen_cpus
            .as_ref()
            .map(|c| c.len() as f64)
            .unwrap_or(procstat::cpu_count() as f64)
    }
}

/// Starts generator processes for `conns`, at most [`PER_GEN`] each.
pub async fn spawn_gens(
    ctx: &Ctx,
    target: &Target,
    role: Role,
    conns: Vec<ConnSpec>,
    concurrency: usize,
) -> anyhow::Result<Vec<Gen>> {
    let mut gens = Vec::new();
    for (i, chunk) in conns.chunks(PER_GEN).enumerate() {
        // Each process gets its own slice of source addresses.
        let k = ctx.sources.len();
        let sources: Vec<Ipv4Addr> = (0..k).map(|j| ctx.sources[(i * 3 + j) % k]).collect();
        let spec = GenSpec {
            target: target.clone(),
            role: role.clone(),
            sources,
            conns: chunk.to_vec(),
            concurrency,
        };
        gens.push(Gen::spawn(&spec, ctx.gen_cpus.as_deref()).await?);
    }
    Ok(gens)
}

/// What the connect phase of several generators amounted to.
pub struct Connected {
    pub ok: u64,
    pub failed: u64,
    pub elapsed_ms: u64,
    pub hist: Histogram<u64>,
    pub first_error: Option<String>,
}

/// Waits for every generator's connect report.
pub async fn connected(gens: &mut [Gen], timeout: Duration) -> anyhow::Result<Connected> {
    let mut c = Connected {
        ok: 0,
        failed: 0,
        elapsed_ms: 0,
        hist: hist::new(),
        first_error: None,
    };
    for g in gens.iter_mut() {
        match g.recv(timeout).await? {
            Out::Connected {
                ok,
                failed,
                elapsed_ms,
                hist: h,
                first_error,
            } => {
                c.ok += ok;
                c.failed += failed;
                c.elapsed_ms = c.elapsed_ms.max(elapsed_ms);
                let _ = c.hist.add(hist::decode(&h));
                if c.first_error.is_none() {
                    c.first_error = first_error;
                }
            }
            other => anyhow::bail!("unexpected generator report {other:?}"),
        }
    }
    Ok(c)
}

/// Closes generators.
pub async fn finish(gens: Vec<Gen>) {
    for g in gens {
        g.finish().await;
    }
}

/// Source addresses 127.0.0.1 ..= 127.0.0.`n`.
pub fn loopback_sources(n: u8) -> Vec<Ipv4Addr> {
    (1..=n.max(1))
        .map(|i| Ipv4Addr::new(127, 0, 0, i))
        .collect()
}

/// Generator CPU (all generator processes) over a window, as a share of the generator cores.
pub fn gen_load(
    before: &[procstat::Sample],
    after: &[procstat::Sample],
    window: Duration,
    cores: f64,
) -> f64 {
    let used: u64 = before
        .iter()
        .zip(after)
        .map(|(b, a)| b.delta(a).cpu_us)
        .sum();
    used as f64 / (window.as_micros() as f64 * cores.max(1.0))
}

/// Samples every pid.
pub fn sample(pids: &[u32]) -> Vec<procstat::Sample> {
    pids.iter().map(|p| procstat::Sample::of(*p)).collect()
}

/// What the publishing generators sent, together.
#[derive(Default)]
pub struct Published {
    pub sent: u64,
    pub acked: u64,
    pub errors: u64,
    /// Most any publisher's schedule fell behind, ms.
    pub behind_max_ms: u64,
}

/// Waits for every publisher's report after `go`.
pub async fn published(gens: &mut [Gen], timeout: Duration) -> anyhow::Result<Published> {
    let mut p = Published::default();
    for g in gens.iter_mut() {
        if let Out::Published {
            sent,
            acked,
            errors,
            behind_max_ms,
        } = g.recv(timeout).await?
        {
            p.sent += sent;
            p.acked += acked;
            p.errors += errors;
            p.behind_max_ms = p.behind_max_ms.max(behind_max_ms);
        }
    }
    Ok(p)
}

/// What the subscribing generators received, together.
pub struct Received {
    pub delivered: u64,
    pub hist: Histogram<u64>,
    pub closed: u64,
    pub min_per_conn: u64,
    pub duplicates: u64,
    pub resumed: u64,
    pub unrecovered: u64,
}

/// Asks every subscriber generator for its counts until `expected` deliveries arrived or
/// `within` passed, and returns the last counts.
pub async fn received(
    gens: &mut [Gen],
    expected: u64,
    within: Duration,
) -> anyhow::Result<Received> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let mut r = Received {
            delivered: 0,
            hist: hist::new(),
            closed: 0,
            min_per_conn: u64::MAX,
            duplicates: 0,
            resumed: 0,
            unrecovered: 0,
        };
        for g in gens.iter_mut() {
            g.send(&crate::gen::Cmd::Report).await?;
        }
        for g in gens.iter_mut() {
            if let Out::Received {
                deliveries,
                hist: h,
                min_per_conn,
                closed,
                duplicates,
                resumed,
                unrecovered,
            } = g.recv(Duration::from_secs(30)).await?
            {
                r.delivered += deliveries;
                r.closed += closed;
                r.min_per_conn = r.min_per_conn.min(min_per_conn);
                r.duplicates += duplicates;
                r.resumed += resumed;
                r.unrecovered += unrecovered;
                let _ = r.hist.add(hist::decode(&h));
            }
        }
        if r.delivered >= expected || std::time::Instant::now() > deadline {
            return Ok(r);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
