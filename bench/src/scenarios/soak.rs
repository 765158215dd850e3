//! `soak`: sustained sends with retention on, to show that a node's disk and memory level off
//! once retention keeps pace with the sends (what issue "bounded storage" asks for). One node;
//! channels whose `retentionSeconds` is short; the retention pass every few seconds; sends at a
//! fixed rate, open loop, spread over the channels, for as long as asked. Every
//! [`SAMPLE_EVERY`] the data directory's allocated bytes and the process's resident memory are
//! sampled. The report gives both at the start of the steady window (after one retention
//! period and two passes, or a third of the run, whichever is later) and at its end, and their growth per
//! hour over that window (a least-squares slope): flat means a growth that is small against the
//! level. The series is printed on stderr.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatsdk_client::rest::RestClient;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::ournode::{NodeOptions, OurNode};
use crate::procstat;
use crate::report::Run;
use crate::scenarios::Ctx;

/// How often the disk and memory are sampled (the smoke run samples every second).
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Sends in flight at most; beyond that the schedule waits.
const MAX_IN_FLIGHT: usize = 64;
/// How long one send may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of text per message.
const PAYLOAD: usize = 200;

/// What `soak` is asked for.
pub struct Soak {
    pub seconds: u64,
    pub rate: f64,
    pub channels: usize,
    pub retention_s: u64,
}

pub async fn run(ctx: &Ctx, asked: &Soak) -> anyhow::Result<Vec<Run>> {
    let soak = if ctx.smoke {
        Soak {
            seconds: 12,
            rate: 40.0,
            channels: 2,
            retention_s: 2,
        }
    } else {
        Soak {
            seconds: asked.seconds,
            rate: asked.rate,
            channels: asked.channels.max(1),
            retention_s: asked.retention_s.max(1),
        }
    };
    let sample_every = if ctx.smoke {
        Duration::from_secs(1)
    } else {
        SAMPLE_EVERY
    };
    let retention_every = soak.retention_s.clamp(1, 5);
    let node = OurNode::start(&NodeOptions {
        cpus: ctx.server_cpus().map(<[usize]>::to_vec),
        retention_every_s: Some(retention_every),
        ..NodeOptions::default()
    })?;
    let rooms = crate::setup::rooms(&node.info, "soak", soak.channels, 0, 1).await?;
    let base = format!("http://{}", node.info.http);
    let mut senders = Vec::new();
    for room in &rooms {
        let token = room
            .publisher_tokens
            .first()
            .ok_or_else(|| anyhow::anyhow!("a room without a publisher"))?;
        let client = RestClient::new(base.clone())?.with_token(token);
        let config = json!({ "config": { "retentionSeconds": soak.retention_s } });
        client
            .call(
                reqwest::Method::PATCH,
                &format!("/api/channels/{}", room.id),
                Some(&config),
            )
            .await?;
        senders.push((client, room.id.clone()));
    }
    let senders = Arc::new(senders);
    let data_dir = node
        .data_dir()
        .ok_or_else(|| anyhow::anyhow!("the node has no data directory of its own"))?
        .to_path_buf();
    let pid = node.pid();
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let start = Instant::now();
    let end = start + Duration::from_secs(soak.seconds);
    // The sampler: one sample now and one every `sample_every` until the end.
    let sampler = {
        let data_dir = data_dir.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                let at = start.elapsed().as_secs_f64();
                let disk = dir_bytes(&data_dir);
                let rss = procstat::Sample::of(pid).rss;
                eprintln!(
                    "soak t={at:>6.0}s disk={:>8.1} MB rss={:>7.1} MB",
                    disk as f64 / 1e6,
                    rss as f64 / 1e6
                );
                samples.push((at, disk as f64, rss as f64));
                if Instant::now() + sample_every > end {
                    return samples;
                }
                tokio::time::sleep(sample_every).await;
            }
        })
    };
    // The sends: open loop at `rate`, round-robin over the channels.
    let sem = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let period = Duration::from_secs_f64(1.0 / soak.rate);
    let total = (soak.rate * soak.seconds as f64) as u64;
    let text = "x".repeat(PAYLOAD);
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..total {
        tokio::time::sleep_until((start + period * k as u32).into()).await;
        let permit = sem.clone().acquire_owned().await?;
        let (senders, ok, failed, text) =
            (senders.clone(), ok.clone(), failed.clone(), text.clone());
        tasks.spawn(async move {
            let (client, channel) = &senders[k as usize % senders.len()];
            let sent =
                tokio::time::timeout(SEND_TIMEOUT, client.send_message(channel, &text, None)).await;
            match sent {
                Ok(Ok(_)) => ok.fetch_add(1, Ordering::Relaxed),
                _ => failed.fetch_add(1, Ordering::Relaxed),
            };
            drop(permit);
        });
        // Keep the set small: reap what has finished.
        while tasks.try_join_next().is_some() {}
    }
    // Every send ends within SEND_TIMEOUT, so this wait is bounded.
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64();
    let samples = sampler.await?;
    let kept = count_kept(&senders).await;
    node.stop();

    let mut run = Run::new("soak", "chatsdk-1node", 0);
    run.param("seconds", soak.seconds)
        .param("rate", soak.rate)
        .param("channels", soak.channels)
        .param("retention_s", soak.retention_s)
        .param("retention_pass_every_s", retention_every);
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    run.metric("sent_ok", ok as f64)
        .metric("sent_failed", failed as f64)
        .metric("sent_per_s", ok as f64 / elapsed)
        .metric("messages_kept_at_end", kept as f64);
    let steady_from = (soak.retention_s + 2 * retention_every) as f64;
    let steady_from = steady_from.max(soak.seconds as f64 / 3.0);
    let steady: Vec<_> = samples.iter().filter(|s| s.0 >= steady_from).collect();
    if steady.len() < 3 {
        run.invalid("fewer than three samples in the steady window");
    } else {
        let (first, last) = (steady[0], steady[steady.len() - 1]);
        let per_hour = |pick: fn(&(f64, f64, f64)) -> f64| {
            slope(steady.iter().map(|s| (s.0, pick(s)))) * 3600.0 / 1e6
        };
        run.metric("steady_from_s", first.0)
            .metric("disk_mb_steady_start", first.1 / 1e6)
            .metric("disk_mb_end", last.1 / 1e6)
            .metric("disk_growth_mb_per_h", per_hour(|s| s.1))
            .metric("rss_mb_steady_start", first.2 / 1e6)
            .metric("rss_mb_end", last.2 / 1e6)
            .metric("rss_growth_mb_per_h", per_hour(|s| s.2));
    }
    if failed * 100 > ok {
        run.invalid(format!("{failed} of {} sends failed", ok + failed));
    }
    // Retention kept pace: what is left is about what the retention window holds.
    let window = soak.rate * (soak.retention_s + 2 * retention_every) as f64;
    if kept as f64 > 2.0 * window + 200.0 {
        run.invalid(format!(
            "{kept} messages kept at the end; the retention window holds about {window:.0}"
        ));
    }
    run.emit();
    crate::report::table("soak", std::slice::from_ref(&run));
    Ok(vec![run])
}

/// The messages the channels still hold (newest pages of up to 200, counted up to 10,000 per
/// channel: enough to tell retention that keeps pace from retention that does not).
async fn count_kept(senders: &[(RestClient, String)]) -> u64 {
    let mut kept = 0;
    for (client, channel) in senders {
        let mut since = Some(0);
        let mut seen = 0u64;
        while let Some(from) = since {
            let Ok(page) = client.list_messages(channel, Some(from), Some(200)).await else {
                break;
            };
            seen += page.messages.len() as u64;
            since = page
                .messages
                .last()
                .map(|m| m.seq)
                .filter(|_| page.messages.len() == 200 && seen < 10_000);
        }
        kept += seen;
    }
    kept
}

/// Bytes allocated on disk for the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                todo.push(entry.path());
            } else {
                total += meta.blocks() * 512;
            }
        }
    }
    total
}

/// The least-squares slope of `points` (per unit of x).
fn slope(points: impl Iterator<Item = (f64, f64)> + Clone) -> f64 {
    let n = points.clone().count() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (sx, sy) = points
        .clone()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn slope_of_a_line_and_of_a_flat_series() {
        let line = [(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)];
        assert!((super::slope(line.into_iter()) - 2.0).abs() < 1e-9);
        let flat = [(0.0, 4.0), (5.0, 4.0), (9.0, 4.0)];
        assert_eq!(super::slope(flat.into_iter()), 0.0);
    }
}
