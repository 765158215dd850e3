//! `soak`: sustained sends with retention on, to show that a node's disk and memory level off
//! once retention keeps pace with the sends (what issue "bounded storage" asks for). One node;
//! channels whose `retentionSeconds` is short; the retention pass every few seconds; sends at a
//! fixed rate, open loop, spread over the channels, for as long as asked. Every
//! [`SAMPLE_EVERY`] the data directory's allocated bytes and the process's resident memory are
//! sampled. The report gives both at the start of the steady window (after one retention
//! period and two passes, or a third of the run, whichever is later) and at its end, and their growth per
//! hour over that window (a least-squares slope): flat means a growth that is small against the
//! level. The series is printed on stderr.
//!
//! Each channel's publisher keeps its tokens fresh as a client does: a refresh (with the
//! single-use refresh token) once half the access token's lifetime has passed, so a run may
//! outlast any token (the smoke run shortens the lifetime to refresh several times).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chatsdk_client::rest::{RestClient, Tokens};
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
/// Distinct causes of failed sends remembered; later new causes are counted under "other".
const MAX_CAUSES: usize = 16;
/// Access token lifetime of the smoke run, in seconds (refreshed every few seconds).
const SMOKE_ACCESS_TTL_S: u64 = 4;
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
        access_ttl_s: ctx.smoke.then_some(SMOKE_ACCESS_TTL_S),
        ..NodeOptions::default()
    })?;
    let rooms = crate::setup::rooms(&node.info, "soak", soak.channels, 0, 1).await?;
    let base = format!("http://{}", node.info.http);
    let admin = RestClient::new(base.clone())?.with_api_key(&node.info.api_key);
    let mut senders = Vec::new();
    for room in &rooms {
        let user = room
            .publisher_ids
            .first()
            .ok_or_else(|| anyhow::anyhow!("a room without a publisher"))?;
        let sender = Sender::new(
            &base,
            room.id.clone(),
            admin.create_token(user, None).await?,
        )?;
        let config = json!({ "config": { "retentionSeconds": soak.retention_s } });
        sender
            .client()
            .call(
                reqwest::Method::PATCH,
                &format!("/api/channels/{}", room.id),
                Some(&config),
            )
            .await?;
        senders.push(sender);
    }
    let senders = Arc::new(senders);
    let data_dir = node
        .data_dir()
        .ok_or_else(|| anyhow::anyhow!("the node has no data directory of its own"))?
        .to_path_buf();
    let pid = node.pid();
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let causes = Arc::new(Causes::default());
    let start = Instant::now();
    let end = start + Duration::from_secs(soak.seconds);
    // The sampler: one sample now and one every `sample_every` until the end.
    let sampler = {
        let (data_dir, ok, failed) = (data_dir.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                let at = start.elapsed().as_secs_f64();
                let disk = dir_bytes(&data_dir);
                let rss = procstat::Sample::of(pid).rss;
                eprintln!(
                    "soak t={at:>6.0}s disk={:>8.1} MB rss={:>7.1} MB ok={} failed={}",
                    disk as f64 / 1e6,
                    rss as f64 / 1e6,
                    ok.load(Ordering::Relaxed),
                    failed.load(Ordering::Relaxed),
                );
                samples.push((at, disk as f64, rss as f64));
                if Instant::now() + sample_every > end {
                    return samples;
                }
                tokio::time::sleep(sample_every).await;
            }
        })
    };
    // The refresher: each sender's tokens, once half their lifetime has passed.
    let refresher = {
        let senders = senders.clone();
        tokio::spawn(async move {
            let mut refreshes = 0u64;
            while Instant::now() < end {
                for sender in senders.iter() {
                    if sender.due() {
                        sender.refresh().await?;
                        refreshes += 1;
                    }
                }
                tokio::time::sleep(
                    REFRESH_CHECK_EVERY.min(end.saturating_duration_since(Instant::now())),
                )
                .await;
            }
            Ok::<_, anyhow::Error>(refreshes)
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
        let (senders, ok, failed, text, causes) = (
            senders.clone(),
            ok.clone(),
            failed.clone(),
            text.clone(),
            causes.clone(),
        );
        tasks.spawn(async move {
            let sender = &senders[k as usize % senders.len()];
            let client = sender.client();
            let sent = tokio::time::timeout(
                SEND_TIMEOUT,
                client.send_message(&sender.channel, &text, None),
            )
            .await;
            match sent {
                Ok(Ok(_)) => {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(e)) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    causes.note(format!("{e:#}"));
                }
                Err(_) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    causes.note(format!("no answer within {SEND_TIMEOUT:?}"));
                }
            }
            drop(permit);
        });
        // Keep the set small: reap what has finished.
        while tasks.try_join_next().is_some() {}
    }
    // Every send ends within SEND_TIMEOUT, so this wait is bounded.
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64();
    let samples = sampler.await?;
    let refreshes = match refresher.await? {
        Ok(n) => n,
        Err(e) => anyhow::bail!("a token refresh failed: {e:#}"),
    };
    let kept = count_kept(&senders).await;
    causes.print();
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
        .metric("messages_kept_at_end", kept as f64)
        .metric("token_refreshes", refreshes as f64);
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

/// How often the refresher looks for tokens due for a refresh.
const REFRESH_CHECK_EVERY: Duration = Duration::from_secs(1);

/// One channel's publisher: its channel and its current tokens.
struct Sender {
    channel: String,
    base: String,
    tokens: Mutex<Fresh>,
}

/// A sender's current tokens and when to refresh them.
struct Fresh {
    client: RestClient,
    refresh_token: String,
    due: Instant,
}

impl Fresh {
    fn new(base: &str, tokens: Tokens) -> anyhow::Result<Fresh> {
        Ok(Fresh {
            client: RestClient::new(base.to_string())?.with_token(&tokens.token),
            refresh_token: tokens.refresh_token,
            due: Instant::now() + Duration::from_secs(tokens.expires_in.max(2) / 2),
        })
    }
}

impl Sender {
    fn new(base: &str, channel: String, tokens: Tokens) -> anyhow::Result<Sender> {
        Ok(Sender {
            channel,
            base: base.to_string(),
            tokens: Mutex::new(Fresh::new(base, tokens)?),
        })
    }

    fn fresh(&self) -> std::sync::MutexGuard<'_, Fresh> {
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A client with the current access token.
    fn client(&self) -> RestClient {
        self.fresh().client.clone()
    }

    fn due(&self) -> bool {
        Instant::now() >= self.fresh().due
    }

    /// Trades the refresh token for new tokens (only the refresher calls this, so no two
    /// refreshes of one sender race).
    async fn refresh(&self) -> anyhow::Result<()> {
        let (client, refresh_token) = {
            let fresh = self.fresh();
            (fresh.client.clone(), fresh.refresh_token.clone())
        };
        let tokens = client.refresh(&refresh_token).await?;
        *self.fresh() = Fresh::new(&self.base, tokens)?;
        Ok(())
    }
}

/// Why sends failed, by cause (error text), so that a run that fails says why.
#[derive(Default)]
struct Causes(Mutex<BTreeMap<String, u64>>);

impl Causes {
    fn note(&self, cause: String) {
        let mut causes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if causes.len() >= MAX_CAUSES && !causes.contains_key(&cause) {
            *causes.entry("other".into()).or_default() += 1;
            return;
        }
        if causes.is_empty() {
            eprintln!("soak: first failed send: {cause}");
        }
        *causes.entry(cause).or_default() += 1;
    }

    fn print(&self) {
        let causes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (cause, n) in causes.iter() {
            eprintln!("soak: {n} sends failed: {cause}");
        }
    }
}

/// The messages the channels still hold (newest pages of up to 200, counted up to 10,000 per
/// channel: enough to tell retention that keeps pace from retention that does not).
async fn count_kept(senders: &[Sender]) -> u64 {
    let mut kept = 0;
    for sender in senders {
        let (client, channel) = (sender.client(), &sender.channel);
        let mut since = Some(0);
        let mut seen = 0u64;
        while let Some(from) = since {
            let page = match client.list_messages(channel, Some(from), Some(200)).await {
                Ok(page) => page,
                Err(e) => {
                    eprintln!("soak: listing {channel} failed: {e:#}");
                    break;
                }
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
