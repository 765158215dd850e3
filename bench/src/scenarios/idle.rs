//! `idle`: N connected, authenticated and subscribed sessions, stepped up over several N.
//! Reports the server's RSS per session (the slope of RSS over N, so fixed costs cancel), the
//! kernel's slab growth per connection (both socket ends: the generator is on this machine
//! too), and the connect rate.

use std::time::Duration;

use crate::adapters::Target;
use crate::gen::Role;
use crate::procstat;
use crate::report::Run;
use crate::scenarios::{self, Ctx};
use crate::sut::{Sut, System};

pub async fn run(ctx: &Ctx, steps: &[usize]) -> anyhow::Result<Vec<Run>> {
    let steps: Vec<usize> = if ctx.smoke {
        vec![20, 60]
    } else {
        steps.to_vec()
    };
    let mut runs = Vec::new();
    for round in 0..ctx.rounds {
        for system in &ctx.systems {
            match one(ctx, *system, &steps, round).await {
                Ok(r) => {
                    r.emit();
                    runs.push(r);
                }
                Err(e) => eprintln!("idle {} round {round}: {e:#}", system.name()),
            }
        }
    }
    crate::report::table("idle", &runs);
    Ok(runs)
}

async fn one(ctx: &Ctx, system: System, steps: &[usize], round: usize) -> anyhow::Result<Run> {
    let max = steps.iter().copied().max().unwrap_or(0);
    let sut = Sut::launch(system, ctx.installed.as_ref(), ctx.server_cpus()).await?;
    let conns = sut.session_conns(&format!("i{round}"), max).await?;
    let server = sut.pids();
    let mut run = Run::new("idle", system.name(), round);
    run.param("steps", steps.to_vec());
    let mut points = Vec::new();
    let mut gens = Vec::new();
    let mut done = 0;
    let base = procstat::sum(&scenarios::sample(&server));
    points.push((0usize, base.rss, procstat::kernel_slab()));
    let mut connect_ms = 0u64;
    // The server's CPU while connections are being made (accept, upgrade or handshake, token
    // check, subscribe), not while they sit idle between steps.
    let mut connect_cpu_us = 0u64;
    let mut connect_hist = crate::hist::new();
    for &n in steps {
        let batch = conns[done..n].to_vec();
        // QUIC handshakes arrive as UDP bursts: fewer at once keeps the socket buffers from
        // dropping them (which costs a retransmission timeout each).
        let concurrency = if matches!(sut.target, Target::OursQuic { .. }) {
            64
        } else {
            512
        };
        let before = procstat::sum(&scenarios::sample(&server));
        let mut g =
            scenarios::spawn_gens(ctx, &sut.target, Role::Subscriber, batch, concurrency).await?;
        let c = scenarios::connected(&mut g, Duration::from_secs(300)).await?;
        connect_cpu_us += before
            .delta(&procstat::sum(&scenarios::sample(&server)))
            .cpu_us;
        if c.failed > 0 {
            run.invalid(format!(
                "{} of {} connections failed: {}",
                c.failed,
                n - done,
                c.first_error.unwrap_or_default()
            ));
        }
        connect_ms += c.elapsed_ms;
        let _ = connect_hist.add(&c.hist);
        gens.extend(g);
        done = n;
        // Let allocations settle (no traffic flows on idle sessions).
        tokio::time::sleep(Duration::from_secs(if ctx.smoke { 0 } else { 2 })).await;
        let s = procstat::sum(&scenarios::sample(&server));
        points.push((n, s.rss, procstat::kernel_slab()));
        eprintln!(
            "idle {}: {n} sessions, server RSS {:.1} MiB",
            system.name(),
            s.rss as f64 / 1048576.0
        );
    }
    let fit = |f: &dyn Fn(&(usize, u64, u64)) -> f64| -> f64 {
        let pts: Vec<(f64, f64)> = points.iter().skip(1).map(|p| (p.0 as f64, f(p))).collect();
        slope(&pts)
    };
    let lat = crate::hist::Latency::of(&connect_hist);
    run.metric("rss_per_session_kib", fit(&|p| p.1 as f64) / 1024.0)
        .metric(
            "kernel_slab_per_connection_kib",
            fit(&|p| p.2 as f64) / 1024.0,
        )
        .metric(
            "connects_per_s",
            done as f64 / (connect_ms.max(1) as f64 / 1000.0),
        )
        .metric("connect_p99_ms", lat.p99_ms)
        .metric(
            "server_cpu_us_per_connect",
            connect_cpu_us as f64 / done.max(1) as f64,
        )
        .metric("sessions", done as f64)
        .metric(
            "server_rss_mib",
            points.last().map(|p| p.1).unwrap_or(0) as f64 / 1048576.0,
        );
    scenarios::finish(gens).await;
    sut.stop();
    Ok(run)
}

/// Least-squares slope of y over x.
pub fn slope(pts: &[(f64, f64)]) -> f64 {
    let n = pts.len() as f64;
    if pts.len() < 2 {
        return 0.0;
    }
    let (sx, sy) = pts.iter().fold((0.0, 0.0), |a, p| (a.0 + p.0, a.1 + p.1));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = pts.iter().fold((0.0, 0.0), |a, p| {
        (a.0 + (p.0 - mx) * (p.1 - my), a.1 + (p.0 - mx) * (p.0 - mx))
    });
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}
