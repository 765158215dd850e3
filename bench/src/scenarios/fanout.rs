//! `fanout`: C channels × M members at P publishes/s, 100-byte payloads. Reports deliveries/s,
//! server CPU µs per delivery (and that over the kernel's loopback-write floor), read/write
//! syscalls and context switches per delivery, and end-to-end latency from the intended send
//! time. Shapes F1 = 10×100 at 500/s, F2 = 1×100 at 2000/s, F3 = 1×5000 at 10/s; S1 is F1 with
//! each room's subscribers on one node of a cluster (on one node, it is F1), so an event needs
//! to cross to at most one other node.

use std::time::{Duration, Instant};

use crate::gen::{Cmd, Role};
use crate::hist::Latency;
use crate::report::Run;
use crate::scenarios::{self, Ctx};
use crate::sut::{Sut, System};
use crate::{floor, procstat};

/// A fanout shape.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub name: &'static str,
    pub channels: usize,
    pub members: usize,
    pub rate: f64,
    /// On a cluster, each room's subscribers connect to one node (room k to node k mod n)
    /// instead of being spread over all of them.
    pub sparse: bool,
}

pub const F1: Shape = Shape {
    name: "F1",
    channels: 10,
    members: 100,
    rate: 500.0,
    sparse: false,
};
pub const F2: Shape = Shape {
    name: "F2",
    channels: 1,
    members: 100,
    rate: 2000.0,
    sparse: false,
};
pub const F3: Shape = Shape {
    name: "F3",
    channels: 1,
    members: 5000,
    rate: 10.0,
    sparse: false,
};
pub const S1: Shape = Shape {
    name: "S1",
    channels: 10,
    members: 100,
    rate: 500.0,
    sparse: true,
};

/// Publishes per second one of our publisher connections is asked for: a session handles
/// its commands one after another, each waiting for its durable commit.
const RATE_PER_PUBLISHER: f64 = 25.0;
const PAYLOAD: usize = 100;

pub async fn run(ctx: &Ctx, shapes: &[Shape], seconds: u64) -> anyhow::Result<Vec<Run>> {
    let floor_us = floor::loopback_write_us(PAYLOAD + 60)?;
    eprintln!(
        "kernel floor: {floor_us:.3} µs of CPU per {}-byte loopback write",
        PAYLOAD + 60
    );
    let mut runs = Vec::new();
    for shape in shapes {
        let mut shape_runs = Vec::new();
        for round in 0..ctx.rounds {
            for system in &ctx.systems {
                let r = one(ctx, *system, shape, seconds, round, floor_us).await;
                match r {
                    Ok(r) => {
                        r.emit();
                        shape_runs.push(r);
                    }
                    Err(e) => eprintln!(
                        "fanout {} {} round {round}: {e:#}",
                        shape.name,
                        system.name()
                    ),
                }
            }
        }
        crate::report::table(&format!("fanout {}", shape.name), &shape_runs);
        runs.extend(shape_runs);
    }
    Ok(runs)
}

async fn one(
    ctx: &Ctx,
    system: System,
    shape: &Shape,
    seconds: u64,
    round: usize,
    floor_us: f64,
) -> anyhow::Result<Run> {
    let (channels, members, rate) = if ctx.smoke {
        (
            shape.channels.min(2),
            shape.members.min(20),
            shape.rate.min(40.0),
        )
    } else {
        (shape.channels, shape.members, shape.rate)
    };
    let per_room_rate = rate / channels as f64;
    let pubs_per_room = (per_room_rate / RATE_PER_PUBLISHER).ceil().max(1.0) as usize;
    let sut = Sut::launch(system, ctx.installed.as_ref(), ctx.server_cpus()).await?;
    let rooms = sut
        .rooms(&format!("f{round}"), channels, members, pubs_per_room)
        .await?;
    let subs: Vec<_> = rooms.iter().flat_map(|r| r.subscribers.clone()).collect();
    let pubs: Vec<_> = rooms.iter().flat_map(|r| r.publishers.clone()).collect();
    let n_pubs = pubs.len();
    // On a cluster, clients are spread over the nodes (subscribers and publishers alike), or
    // for a sparse shape each room's subscribers go to one node.
    let spread = sut.nodes.len().max(1);
    let (mut sub_gens, mut pub_gens) = (Vec::new(), Vec::new());
    for k in 0..spread {
        let part = |v: &[crate::gen::ConnSpec]| -> Vec<crate::gen::ConnSpec> {
            v.iter().skip(k).step_by(spread).cloned().collect()
        };
        let target = sut.target_for(k);
        let s = if shape.sparse {
            rooms
                .iter()
                .skip(k)
                .step_by(spread)
                .flat_map(|r| r.subscribers.clone())
                .collect()
        } else {
            part(&subs)
        };
        let p = part(&pubs);
        if !s.is_empty() {
            sub_gens.extend(scenarios::spawn_gens(ctx, &target, Role::Subscriber, s, 256).await?);
        }
        if !p.is_empty() {
            let role = Role::Publisher {
                rate: rate / n_pubs as f64,
                payload: PAYLOAD,
            };
            pub_gens.extend(scenarios::spawn_gens(ctx, &target, role, p, 64).await?);
        }
    }
    let c1 = scenarios::connected(&mut sub_gens, Duration::from_secs(120)).await?;
    let c2 = scenarios::connected(&mut pub_gens, Duration::from_secs(120)).await?;
    let mut run = Run::new("fanout", system.name(), round);
    run.param("shape", shape.name)
        .param("channels", channels)
        .param("members", members)
        .param("publishes_per_s", rate)
        .param("publishers", n_pubs)
        .param("seconds", seconds)
        .param("payload_bytes", PAYLOAD)
        .param("pinned", ctx.server_cpus.is_some());
    if c1.failed + c2.failed > 0 {
        run.invalid(format!(
            "{} connections failed: {}",
            c1.failed + c2.failed,
            c1.first_error.or(c2.first_error).unwrap_or_default()
        ));
    }
    for g in sub_gens.iter_mut() {
        g.send(&Cmd::Reset).await?;
    }
    let server = sut.pids();
    let gens: Vec<u32> = sub_gens
        .iter()
        .chain(pub_gens.iter())
        .map(|g| g.pid())
        .collect();
    let s0 = procstat::sum(&scenarios::sample(&server));
    let g0 = scenarios::sample(&gens);
    let t0 = Instant::now();
    let duration_ms = seconds * 1000;
    let perf = procstat::SyscallCount::start(&server, Duration::from_millis(duration_ms));
    for g in pub_gens.iter_mut() {
        g.send(&Cmd::Go { duration_ms }).await?;
    }
    let bar = crate::progress::bar(
        format!("fanout {} {}", shape.name, system.name()),
        Duration::from_millis(duration_ms),
    );
    let scenarios::Published {
        sent,
        acked,
        errors,
        behind_max_ms: behind,
    } = scenarios::published(&mut pub_gens, Duration::from_secs(seconds + 60)).await?;
    drop(bar);
    let syscalls = tokio::task::spawn_blocking(move || perf.finish())
        .await
        .ok()
        .flatten();
    let expected = acked * members as u64;
    // Wait (bounded) for the deliveries to arrive.
    let scenarios::Received {
        delivered,
        hist: h,
        closed,
        min_per_conn,
        duplicates: dups,
        resumed,
        unrecovered,
    } = scenarios::received(&mut sub_gens, expected, Duration::from_secs(10)).await?;
    let window = t0.elapsed();
    let s1 = procstat::sum(&scenarios::sample(&server));
    let g1 = scenarios::sample(&gens);
    let d = s0.delta(&s1);
    let per = |x: u64| {
        if delivered > 0 {
            x as f64 / delivered as f64
        } else {
            0.0
        }
    };
    let lat = Latency::of(&h);
    let publish_window = Duration::from_millis(duration_ms);
    run.metric(
        "deliveries_per_s",
        delivered as f64 / publish_window.as_secs_f64(),
    )
    .metric("server_cpu_us_per_delivery", per(d.cpu_us))
    .metric("cpu_over_kernel_floor", per(d.cpu_us) / floor_us.max(1e-9))
    .metric(
        "syscalls_per_delivery",
        syscalls
            .map(|n| n as f64 / expected.max(1) as f64)
            .unwrap_or(f64::NAN),
    )
    .metric("ctx_switches_per_delivery", per(d.ctx_switches))
    .metric("latency_p50_ms", lat.p50_ms)
    .metric("latency_p99_ms", lat.p99_ms)
    .metric("latency_p999_ms", lat.p999_ms)
    .metric("latency_max_ms", lat.max_ms)
    .metric("sent", sent as f64)
    .metric("acked", acked as f64)
    .metric("delivered", delivered as f64)
    .metric("kernel_floor_us", floor_us)
    .metric("subscriber_reconnects", resumed as f64);
    if unrecovered > 0 {
        run.invalid(format!(
            "{unrecovered} reconnecting subscribers could not recover their gap"
        ));
    }
    if delivered < expected {
        run.invalid(format!("lost {} of {expected} deliveries ({closed} subscriber connections closed, fewest on one connection {min_per_conn})", expected - delivered));
    }
    // A publish acknowledged after the ack deadline may still be delivered: only repeats of
    // one publish on one connection are duplicates.
    if dups > 0 {
        run.invalid(format!("{dups} duplicate deliveries"));
    }
    if acked < sent {
        run.invalid(format!(
            "{} of {sent} publishes not acknowledged within 10 s of the window",
            sent - acked
        ));
    }
    if errors > 0 {
        run.invalid(format!("{errors} publishes failed"));
    }
    // A schedule that fell behind shows in the latency (measured from the intended time).
    run.metric("publisher_behind_max_ms", behind as f64);
    let load = scenarios::gen_load(&g0, &g1, window, ctx.gen_cores());
    run.metric("generator_load", load);
    if load > 0.9 {
        run.invalid(format!(
            "generators used {:.0}% of their cores",
            load * 100.0
        ));
    }
    scenarios::finish(pub_gens).await;
    scenarios::finish(sub_gens).await;
    sut.stop();
    Ok(run)
}
