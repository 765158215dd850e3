//! The fault suite: three real `chatsdk` processes, each in its own network namespace, under a
//! steady load of sends with client ids and realtime subscribers on every node, while a
//! nemesis cuts the network, kills, pauses and restarts nodes. Every operation and delivery
//! is recorded and checked against I1–I3 (`faults/history.rs`); each scenario prints what it
//! did (sends, outcomes, deliveries, faults) and the violations found, which must be none.
//!
//! Short by default (each fault held 5 s, one round). The long form is the same target with
//! more rounds and longer faults: `scripts/faults` (or `CHATSDK_FAULT_ROUNDS`,
//! `CHATSDK_FAULT_HOLD_S`, `CHATSDK_FAULT_SEED`; `CHATSDK_FAULT_REPORT=file` appends each
//! report as a JSON line; `CHATSDK_FAULT_KEEP` keeps the nodes' directories and logs, with
//! each node's `/metrics` and cluster view at the end; `CHATSDK_FAULT_NODE_ENV="K=V K=V"`
//! gives the nodes settings of their own, such as `CHATSDK_REALTIME__HISTORY_SIZE=20`).
//! See docs/reliability.md for the scenarios and the latest figures.

mod support;

#[path = "faults/cluster.rs"]
mod cluster;
#[path = "faults/history.rs"]
mod history;
#[path = "faults/load.rs"]
mod load;
#[path = "faults/net.rs"]
mod net;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster::{Cluster, Needs};
use history::{Op, Outcome, Recorder, Report};
use load::{Rng, Target};
use support::WAIT;

/// Channels the load spreads over (so that several shards, and leaders, are involved).
const CHANNELS: usize = 3;
const NODES: usize = 3;

/// A fault and how it ends.
#[derive(Clone, Copy, Debug)]
enum Nemesis {
    /// One node (picked at random) cut off from the other two, both ways.
    IsolateOne,
    /// The leader of channel 0's shard cut off from the other two.
    IsolateLeader,
    /// Two nodes that cannot talk to each other, both reaching the third (the bridge).
    Bridge,
    /// The leader of channel 0's shard cannot send to the others, but hears them.
    OneWay,
    /// SIGKILL of a node that does not lead channel 0's shard; restarted after the hold.
    KillFollower,
    /// SIGKILL of the leader of channel 0's shard; restarted after the hold.
    KillLeader,
    /// SIGSTOP of the leader of channel 0's shard; SIGCONT after the hold.
    PauseLeader,
    /// SIGKILL of every node at once; all restarted after the hold.
    KillAll,
    /// The disk of the shard leader of channel 0 fills up (its tmpfs shrunk to what it
    /// holds): it must stop (fail-stop) or go on correctly; after the hold the disk grows
    /// again and a stopped node is restarted.
    DiskFullLeader,
    /// The same on a follower.
    DiskFullFollower,
    /// Every sync (`fdatasync`, `fsync`) of a follower fails with EIO, as when the disk's
    /// write-back failed: it must stop with status 74 (after a failed sync the page cache
    /// cannot be trusted); after the hold its syncs work again and it is restarted.
    SyncFailFollower,
    /// The same on the shard leader of channel 0.
    SyncFailLeader,
    /// The shard leader of channel 0 restarted with its wall clock two hours ahead, then
    /// restarted on true time after the hold.
    ClockAhead,
    /// A follower restarted with its wall clock two hours behind.
    ClockBehind,
    /// A follower removed (`chatsdk node remove`) and replaced by a fresh node, which is killed
    /// (-9) while the shards' replicas move to it (by snapshot or log), and restarted after
    /// the hold.
    KillDuringMove,
    /// A follower killed (-9) and kept down until channel 0's shard has purged its log past
    /// what the follower holds; started again and killed -9 as soon as it reports a snapshot
    /// install started (`chatsdk_raft_snapshot_installs_total`), so the kill falls inside (or
    /// right after) the install; restarted after the hold.
    KillDuringInstall,
    /// A follower's Raft log corrupted while it is down: it must refuse to start; the
    /// operator removes it (`chatsdk node remove`) and, after the hold, a fresh node joins on
    /// its host.
    CorruptFollower,
}

/// The run's knobs, from the environment.
struct Settings {
    hold: Duration,
    rounds: usize,
    seed: u64,
}

impl Settings {
    fn from_env() -> Settings {
        let num = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Settings {
            hold: Duration::from_secs(num("CHATSDK_FAULT_HOLD_S", 5)),
            rounds: num("CHATSDK_FAULT_ROUNDS", 1) as usize,
            seed: num("CHATSDK_FAULT_SEED", clock),
        }
    }
}

/// Runs `plan` (each nemesis in turn, `rounds` times) under load and checks the history.
/// `None` when the scenario needs what the machine cannot give (network namespaces, a disk of
/// its own per node) (said why).
async fn scenario(name: &str, needs: Needs, plan: &[Nemesis]) -> Option<Report> {
    let settings = Settings::from_env();
    let started = Instant::now();
    let mut c = match Cluster::start(NODES, needs).await {
        Ok(c) => c,
        Err(why) => {
            eprintln!("fault suite: {name} SKIPPED: this machine cannot ({why})");
            return None;
        }
    };
    eprintln!(
        "fault suite: {name}: seed {} (CHATSDK_FAULT_SEED repeats the choices)",
        settings.seed
    );
    let bases = (0..NODES).map(|i| c.base(i)).collect();
    let target = Arc::new(load::setup(bases, &c.app, &c.key, CHANNELS).await);
    let rec = Arc::new(Recorder::new(NODES));
    let mut subscribers = Vec::new();
    for s in 0..NODES {
        subscribers.push(load::subscriber(s, &target, rec.clone()).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..load::WRITERS)
        .map(|w| {
            tokio::spawn(load::writer(
                w,
                settings.seed,
                target.clone(),
                rec.clone(),
                stop.clone(),
            ))
        })
        .collect();
    until("the load is flowing", || ok_count(&rec) >= 20).await;

    let mut report = Report {
        scenario: name.to_string(),
        ..Report::default()
    };
    let mut rng = Rng::new(settings.seed);
    let mut probes = 0;
    'rounds: for round in 0..settings.rounds {
        for nemesis in plan {
            match inject(&mut c, &target, *nemesis, &mut rng).await {
                Ok(done) => report.faults.push(format!("round {}: {done}", round + 1)),
                Err(wrong) => report
                    .violations
                    .push(format!("round {}: {wrong}", round + 1)),
            }
            // The fault is held while the load goes on (the workload, not a synchronisation).
            tokio::time::sleep(settings.hold).await;
            c.heal_all().await;
            // Healed when a send through every node is acknowledged again.
            for node in 0..NODES {
                probes += 1;
                if let Err(stuck) = probe(&target, &rec, node, probes).await {
                    report.violations.push(stuck);
                    break 'rounds;
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer task");
    }
    if let Err(stuck) = c.until_settled(NODES).await {
        report.violations.push(stuck);
    }

    // The final histories, once every node reports the same (followers may still apply).
    let deadline = Instant::now() + WAIT;
    let finals = loop {
        let mut finals = Vec::new();
        let mut unreadable = Vec::new();
        for (node, base) in target.bases.iter().enumerate() {
            let mut lists = Vec::new();
            for id in &target.channels {
                match load::history(&target, base, id).await {
                    Ok(list) => lists.push(list),
                    Err(e) => unreadable.push(format!("node {}: {e}", node + 1)),
                }
            }
            finals.push(lists);
        }
        let agree = finals.iter().all(|f| f == &finals[0]);
        if (unreadable.is_empty() && agree) || Instant::now() > deadline {
            if !unreadable.is_empty() {
                report.violations.push(format!(
                    "liveness: histories unreadable after the faults healed: {unreadable:?}"
                ));
            }
            break finals;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if finals.iter().any(|f| f.len() != CHANNELS) {
        // Without every node's history the checks below would report every send as lost.
        println!("{}", report.summary());
        c.keep();
        return Some(report);
    }
    // Every subscriber gets to the end of every channel (or the checker says it did not).
    let ends: Vec<u64> = finals[0]
        .iter()
        .map(|l| l.last().map_or(0, |(seq, _)| *seq))
        .collect();
    let deadline = Instant::now() + WAIT;
    while !(0..NODES).all(|s| (0..CHANNELS).all(|ch| rec.reached(s, ch, ends[ch])))
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (client, task) in subscribers {
        drop(client);
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }

    history::check(&rec, &finals, &mut report);
    report.seconds = started.elapsed().as_secs_f64();
    println!("{}", report.summary());
    eprintln!("{}", report.summary());
    if let Ok(path) = std::env::var("CHATSDK_FAULT_REPORT") {
        let line = serde_json::to_string(&report).expect("report as JSON");
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes()));
        appended.expect("appending the report");
    }
    if !report.violations.is_empty() || std::env::var_os("CHATSDK_FAULT_KEEP").is_some() {
        if let Some(dir) = c.keep() {
            c.record_state(&dir).await;
            let path = dir.join("history.txt");
            match rec.dump(&path) {
                Ok(()) => eprintln!("fault suite: the history is in {}", path.display()),
                Err(e) => eprintln!("fault suite: the history could not be written: {e}"),
            }
        }
    }
    Some(report)
}

fn ok_count(rec: &Recorder) -> usize {
    rec.ops
        .lock()
        .map(|o| {
            o.iter()
                .filter(|op| matches!(op.outcome, Outcome::Ok { .. }))
                .count()
        })
        .unwrap_or(0)
}

/// Polls `cond` until it holds, failing the test after [`WAIT`].
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends one message through `node` until it is acknowledged (recorded like any send); `Err`
/// when it is not within [`WAIT`].
async fn probe(target: &Target, rec: &Recorder, node: usize, n: usize) -> Result<(), String> {
    let http = reqwest::Client::new();
    let cmid = format!("probe-{n}");
    let body = serde_json::json!({
        "channel_id": target.channels[0], "user_id": "w0",
        "text": "probe", "client_msg_id": cmid,
    });
    let deadline = Instant::now() + WAIT;
    loop {
        let at = Instant::now();
        let outcome = load::send_once(&http, &target.bases[node], &target.key, &body).await;
        let ok = matches!(outcome, Outcome::Ok { .. });
        let why = format!("{outcome:?}");
        rec.op(Op {
            cmid: cmid.clone(),
            channel: 0,
            node,
            outcome,
            ms: at.elapsed().as_millis() as u64,
            t_ms: 0,
        });
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "liveness: node {} takes no sends after the faults healed: {why}",
                node + 1
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Applies `nemesis`; what was done, for the report, or what the cluster did wrong.
async fn inject(
    c: &mut Cluster,
    target: &Target,
    nemesis: Nemesis,
    rng: &mut Rng,
) -> Result<String, String> {
    let leader = c
        .shard_leader(&target.channels[0])
        .await
        .unwrap_or_else(|| rng.below(NODES));
    let others: Vec<usize> = (0..NODES).filter(|&i| i != leader).collect();
    let n = |i: usize| i + 1;
    Ok(match nemesis {
        Nemesis::IsolateOne | Nemesis::IsolateLeader => {
            let alone = match nemesis {
                Nemesis::IsolateOne => rng.below(NODES),
                _ => leader,
            };
            let rest: Vec<usize> = (0..NODES).filter(|&i| i != alone).collect();
            c.partition(&[&[alone], &rest])?;
            format!(
                "partition ({}): node {} alone, nodes {:?} together (shard leader: node {})",
                c.cut_by(),
                n(alone),
                rest.iter().map(|&i| n(i)).collect::<Vec<_>>(),
                n(leader)
            )
        }
        Nemesis::Bridge => {
            let bridge = rng.below(NODES);
            let ends: Vec<usize> = (0..NODES).filter(|&i| i != bridge).collect();
            let cut = BTreeSet::from([(ends[0], ends[1]), (ends[1], ends[0])]);
            c.set_cuts(cut)?;
            format!(
                "bridge ({}): nodes {} and {} cannot talk, both reach node {} (shard leader: node {})",
                c.cut_by(),
                n(ends[0]),
                n(ends[1]),
                n(bridge),
                n(leader)
            )
        }
        Nemesis::OneWay => {
            let cut = others.iter().map(|&o| (leader, o)).collect();
            c.set_cuts(cut)?;
            format!(
                "one-way ({}): shard leader node {} cannot send to the others, hears them",
                c.cut_by(),
                n(leader)
            )
        }
        Nemesis::KillFollower => {
            let victim = others[rng.below(others.len())];
            c.kill(victim);
            // The failure detector: the cluster view marks the dead node within seconds.
            let deadline = Instant::now() + Duration::from_secs(10);
            let marked = loop {
                if let Some(s) = c.unreachable_for(victim).await {
                    break s;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "the cluster view does not mark killed node {} unreachable",
                        n(victim)
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            format!(
                "kill -9 of follower node {} (the cluster view marks it unreachable, {marked} s)",
                n(victim)
            )
        }
        Nemesis::KillLeader => {
            c.kill(leader);
            format!("kill -9 of shard leader node {}", n(leader))
        }
        Nemesis::PauseLeader => {
            c.signal(leader, true);
            format!("SIGSTOP of shard leader node {}", n(leader))
        }
        Nemesis::KillAll => {
            for i in 0..NODES {
                c.kill(i);
            }
            "kill -9 of every node at once".to_string()
        }
        Nemesis::ClockAhead => {
            c.skew(leader, "+2h").await?;
            format!("clock of shard leader node {} two hours ahead", n(leader))
        }
        Nemesis::ClockBehind => {
            let victim = others[rng.below(others.len())];
            c.skew(victim, "-2h").await?;
            format!("clock of follower node {} two hours behind", n(victim))
        }
        Nemesis::DiskFullLeader | Nemesis::DiskFullFollower => {
            let victim = match nemesis {
                Nemesis::DiskFullLeader => leader,
                _ => others[rng.below(others.len())],
            };
            let used = c.resize_disk(victim, 16)?;
            // Held until the node notices (a write fails) or the hold ends; either is an answer.
            let status = c.exit_within(victim, Duration::from_secs(10)).await;
            c.resize_disk(victim, 1024 * 1024)?;
            let how: String = match status {
                Some(s) if s.code() == Some(74) => "it stopped with status 74 (fail-stop)".into(),
                Some(s) => {
                    let last = c.last_log_line(victim);
                    return Err(format!(
                        "node {} stopped on a full disk with {s}, not the fail-stop status 74: {last}",
                        n(victim)
                    ));
                }
                None => "it went on within 10 s (no write failed it)".into(),
            };
            format!(
                "disk of {} node {} full at {used} KiB: {how}; the disk grows again after the hold",
                if victim == leader {
                    "shard leader"
                } else {
                    "follower"
                },
                n(victim)
            )
        }
        Nemesis::SyncFailFollower | Nemesis::SyncFailLeader => {
            let victim = match nemesis {
                Nemesis::SyncFailLeader => leader,
                _ => others[rng.below(others.len())],
            };
            c.fail_syncs(victim, true)?;
            // The load makes every node sync within a second; 10 s is ample.
            let status = c.exit_within(victim, Duration::from_secs(10)).await;
            c.fail_syncs(victim, false)?;
            let role = if victim == leader {
                "shard leader"
            } else {
                "follower"
            };
            match status {
                Some(s) if s.code() == Some(74) => {}
                other => {
                    let last = c.last_log_line(victim);
                    let how = other.map_or("went on for 10 s".to_string(), |s| {
                        format!("stopped with {s}")
                    });
                    return Err(format!(
                        "{role} node {} {how} after its syncs failed, not the fail-stop status 74: {last}",
                        n(victim)
                    ));
                }
            }
            format!(
                "syncs of {role} node {} failed (EIO): it stopped with status 74 (fail-stop); \
                 restarted after the hold with syncs working",
                n(victim)
            )
        }
        Nemesis::KillDuringInstall => {
            let victim = others[rng.below(others.len())];
            let channel = &target.channels[0];
            let group = c.shard_group(channel).await.ok_or("no view of the shard")?;
            // What the shard's leader holds bounds what the victim holds.
            let held = group["lastLogIndex"].as_u64().unwrap_or(0);
            c.kill(victim);
            // Down until the shard's log is purged past what the victim holds (the load appends
            // ~50 entries a second to it; it snapshots every 100).
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut purged = 0;
            while purged <= held && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
                purged = c
                    .shard_group(channel)
                    .await
                    .and_then(|g| g["purgedIndex"].as_u64())
                    .unwrap_or(0);
            }
            if purged <= held {
                return Err(format!(
                    "channel 0's shard did not purge past {held} within 30 s (purged to {purged})"
                ));
            }
            c.start_again(victim);
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut seen = None;
            while seen.is_none() && Instant::now() < deadline {
                if let Some(started) = c
                    .metric(victim, "chatsdk_raft_snapshot_installs_total")
                    .await
                {
                    if started > 0.0 {
                        let running = c
                            .metric(victim, "chatsdk_raft_snapshot_installs_running")
                            .await
                            .unwrap_or(0.0);
                        seen = Some((started, running));
                    }
                }
                if seen.is_none() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            c.kill(victim);
            let how = match seen {
                Some((_, running)) if running > 0.0 => {
                    "with a snapshot install running".to_string()
                }
                Some((started, _)) => format!("right after {started} snapshot install(s) finished"),
                None => {
                    return Err(format!(
                        "node {} reported no snapshot install within 20 s",
                        n(victim)
                    ))
                }
            };
            format!(
                "follower node {} killed -9 until the shard purged past its {held} (to {purged}), \
                 started again and killed -9 {how}",
                n(victim)
            )
        }
        Nemesis::KillDuringMove => {
            let victim = others[rng.below(others.len())];
            let via = others
                .iter()
                .copied()
                .find(|&o| o != victim)
                .unwrap_or(leader);
            let id = c.id_of(victim);
            c.kill(victim);
            c.remove(via, id)
                .map_err(|e| format!("removing node {id}: {e}"))?;
            c.replace(victim, via).await;
            // Killed once replicas are on their way to it (or after 10 s if none moved yet).
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut moving = c.moving().await;
            while moving == 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
                moving = c.moving().await;
            }
            c.kill(victim);
            format!(
                "node {id} removed, a fresh node {} joined on host {} and was killed -9 with {moving} \
                 shard groups changing membership",
                c.id_of(victim),
                n(victim)
            )
        }
        Nemesis::CorruptFollower => {
            let victim = others[rng.below(others.len())];
            let id = c.id_of(victim);
            let said = c.corrupt_and_start(victim).await?;
            let Some(said) = said.lines().find(|l| l.contains("corrupt")) else {
                return Err(format!(
                    "node {id} stopped on a corrupt log without saying so: {said}"
                ));
            };
            let said = said.trim().chars().take(200).collect::<String>();
            let via = others
                .iter()
                .copied()
                .find(|&o| o != victim)
                .unwrap_or(leader);
            let removed = c
                .remove(via, id)
                .map_err(|e| format!("removing node {id}: {e}"))?;
            format!(
                "corrupted Raft log of follower node {id} (host {}): it refused to start \
                 ({said}); `chatsdk node remove {id}`: {removed}; a fresh node joins on the \
                 host after the hold",
                n(victim)
            )
        }
    })
}

fn assert_clean(report: Option<Report>) {
    if let Some(r) = report {
        assert!(r.violations.is_empty(), "{}", r.summary());
        assert!(r.ok > 0, "no send was acknowledged: {}", r.summary());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_lose_no_acknowledged_message() {
    let plan = [
        Nemesis::IsolateOne,
        Nemesis::IsolateLeader,
        Nemesis::Bridge,
        Nemesis::OneWay,
    ];
    let needs = Needs {
        net: true,
        ..Needs::default()
    };
    assert_clean(scenario("partitions", needs, &plan).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_and_pauses_lose_no_acknowledged_message() {
    let plan = [
        Nemesis::KillFollower,
        Nemesis::KillLeader,
        Nemesis::PauseLeader,
        Nemesis::KillAll,
        Nemesis::CorruptFollower,
        Nemesis::KillDuringMove,
    ];
    assert_clean(scenario("crashes", Needs::default(), &plan).await);
}

/// A follower killed inside a snapshot install, with groups that snapshot every 100 entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_inside_snapshot_installs_lose_no_acknowledged_message() {
    let needs = Needs {
        snapshot_after_logs: Some(100),
        ..Needs::default()
    };
    assert_clean(scenario("installs", needs, &[Nemesis::KillDuringInstall]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_clocks_lose_no_acknowledged_message() {
    let plan = [Nemesis::ClockAhead, Nemesis::ClockBehind];
    assert_clean(scenario("clocks", Needs::default(), &plan).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disks_lose_no_acknowledged_message() {
    let plan = [
        Nemesis::DiskFullFollower,
        Nemesis::DiskFullLeader,
        Nemesis::SyncFailFollower,
        Nemesis::SyncFailLeader,
    ];
    let needs = Needs {
        disk_mib: Some(1024),
        sync_faults: true,
        ..Needs::default()
    };
    assert_clean(scenario("disks", needs, &plan).await);
}
