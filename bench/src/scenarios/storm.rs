//! `storm`: connects on an open-loop schedule at increasing rates, each connection doing
//! connect + auth + subscribe; latency from the intended start to the subscribe reply. Steps
//! up until more than 1% fail, p99 passes 1 s, or the achieved rate falls below 90% of the
//! asked one: that is the limit.

use std::time::Duration;

use crate::gen::Role;
use crate::hist::Latency;
use crate::report::Run;
use crate::scenarios::{self, Ctx, PER_GEN};
use crate::sut::{Sut, System};

/// Most connections one step opens (the server holds ~19,000).
const STEP_MAX: usize = 15_000;

pub async fn run(ctx: &Ctx, rates: &[f64], seconds: f64) -> anyhow::Result<Vec<Run>> {
    let rates: Vec<f64> = if ctx.smoke {
        vec![50.0, 100.0]
    } else {
        rates.to_vec()
    };
    let seconds = if ctx.smoke { 0.5 } else { seconds };
    let mut runs = Vec::new();
    for round in 0..ctx.rounds {
        for system in &ctx.systems {
            match one(ctx, *system, &rates, seconds, round).await {
                Ok(rs) => {
                    for r in &rs {
                        r.emit();
                    }
                    runs.extend(rs);
                }
                Err(e) => eprintln!("storm {} round {round}: {e:#}", system.name()),
            }
        }
    }
    crate::report::table("storm (all steps)", &runs);
    Ok(runs)
}

async fn one(
    ctx: &Ctx,
    system: System,
    rates: &[f64],
    seconds: f64,
    round: usize,
) -> anyhow::Result<Vec<Run>> {
    let most = rates
        .iter()
        .map(|r| ((r * seconds) as usize).min(STEP_MAX))
        .max()
        .unwrap_or(0);
    let sut = Sut::launch(system, ctx.installed.as_ref(), ctx.server_cpus()).await?;
    let conns = sut.session_conns(&format!("s{round}"), most).await?;
    let mut out = Vec::new();
    for &rate in rates {
        let n = ((rate * seconds) as usize).clamp(1, STEP_MAX);
        // One generator per PER_GEN connections; each keeps the open-loop rate share.
        let procs = n.div_ceil(PER_GEN).max(1);
        let mut gens = scenarios::spawn_gens(
            ctx,
            &sut.target,
            Role::Storm {
                rate: rate / procs as f64,
            },
            conns[..n].to_vec(),
            1,
        )
        .await?;
        let pids: Vec<u32> = gens.iter().map(|g| g.pid()).collect();
        let g0 = scenarios::sample(&pids);
        let t0 = std::time::Instant::now();
        let c = scenarios::connected(&mut gens, Duration::from_secs(120)).await?;
        let load = scenarios::gen_load(
            &g0,
            &scenarios::sample(&pids),
            t0.elapsed(),
            ctx.gen_cores(),
        );
        let lat = Latency::of(&c.hist);
        let mut run = Run::new("storm", system.name(), round);
        let achieved = c.ok as f64 / (c.elapsed_ms.max(1) as f64 / 1000.0);
        run.param("rate", rate)
            .param("connections", n)
            .metric(&format!("r{rate}_achieved_per_s"), achieved)
            .metric(&format!("r{rate}_p50_ms"), lat.p50_ms)
            .metric(&format!("r{rate}_p99_ms"), lat.p99_ms)
            .metric(&format!("r{rate}_failed"), c.failed as f64)
            .metric(&format!("r{rate}_generator_load"), load);
        if load > 0.9 {
            run.invalid(format!(
                "generators used {:.0}% of their cores: the step measures the generator",
                load * 100.0
            ));
        }
        let limit = load > 0.9
            || c.failed as f64 > n as f64 * 0.01
            || lat.p99_ms > 1000.0
            || achieved < rate * 0.9;
        eprintln!(
            "storm {}: asked {rate}/s, achieved {achieved:.0}/s, p99 {:.1} ms, {} failed",
            system.name(),
            lat.p99_ms,
            c.failed
        );
        scenarios::finish(gens).await;
        out.push(run);
        if limit {
            break;
        }
    }
    sut.stop();
    Ok(out)
}
