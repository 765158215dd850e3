//! `media`: upload throughput and search latency on one node.
//!
//! Uploads: plain files (1 MiB of text, stored as they are) and photos (a 1600×1200 JPEG,
//! resized, re-encoded, thumbnailed and blurhashed), each sent as direct multipart uploads by
//! several clients at once; reported as uploads/s and MiB/s of request bodies.
//! Search: `messages` messages (100,000 by default) sent through the Server API over ten
//! channels of one user, from a vocabulary of 2,000 words (Zipf-like frequencies); once the
//! index has caught up, queries of one common word, one rare word, two words, a prefix, and a
//! word with an author and date filter, one at a time; reported as p50/p99 per kind.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use serde_json::{json, Value};

use crate::hist;
use crate::ournode::{NodeOptions, OurNode};
use crate::report::Run;
use crate::scenarios::Ctx;

const CHANNELS: usize = 10;
const VOCABULARY: usize = 2_000;
const SENDERS: usize = 48;
const QUERIES_PER_KIND: usize = 300;

/// The `i`-th query of a kind (the `q` parameter and any filters).
type QueryOf = Box<dyn Fn(usize) -> String>;

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .header("X-API-Key", &self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await?;
        let status = res.status();
        let v: Value = res.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "{path}: {status} {v}");
        Ok(v)
    }
}

/// The `i`-th word of the vocabulary: pronounceable, distinct.
fn word(i: usize) -> String {
    const SYL: [&str; 16] = [
        "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "do", "gu", "he", "ji", "bo",
        "fe",
    ];
    let mut out = String::new();
    let mut n = i + 16;
    while n > 0 {
        out.push_str(SYL[n % 16]);
        n /= 16;
    }
    out
}

/// A word index with frequencies falling like 1/rank.
fn zipf(rng: &mut impl rand::Rng) -> usize {
    let u: f64 = rng.random();
    ((VOCABULARY as f64).powf(u) as usize)
        .saturating_sub(1)
        .min(VOCABULARY - 1)
}

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x / 7) as u8, (y / 5) as u8, ((x + y) / 9) as u8])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(
            &mut std::io::Cursor::new(&mut out),
            image::ImageFormat::Jpeg,
        )
        .map(|_| out)
        .unwrap_or_default()
}

fn multipart(channel: &str, file: &[u8], name: &str, ct: &str) -> (String, Vec<u8>) {
    let boundary = "chatsdk-bench-7f3c";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"channelId\"\r\n\r\n{channel}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"user_id\"\r\n\r\nbench-user\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: {ct}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Sends `count` uploads of `file` with `parallel` clients; (uploads/s, MiB/s).
async fn uploads(
    api: &Arc<Api>,
    channel: &str,
    file: Vec<u8>,
    name: &str,
    ct: &str,
    count: usize,
    parallel: usize,
) -> anyhow::Result<(f64, f64)> {
    let (ctype, body) = multipart(channel, &file, name, ct);
    let body = bytes::Bytes::from(body);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..parallel {
        let (api, body, ctype, next) = (api.clone(), body.clone(), ctype.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let res = api
                    .http
                    .post(format!("{}/api/uploads/direct", api.base))
                    .header("X-API-Key", &api.key)
                    .header("Content-Type", &ctype)
                    .body(body.clone())
                    .send()
                    .await?;
                anyhow::ensure!(res.status().as_u16() == 201, "upload: {}", res.status());
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok((
        count as f64 / secs,
        (count * body.len()) as f64 / secs / (1 << 20) as f64,
    ))
}

pub async fn run(ctx: &Ctx, messages: usize) -> anyhow::Result<Vec<Run>> {
    let (messages, files, photos) = if ctx.smoke {
        (2_000, 8, 4)
    } else {
        (messages, 200, 60)
    };
    let node = OurNode::start(&NodeOptions {
        join: None,
        cpus: ctx.server_cpus().map(<[usize]>::to_vec),
        retention_every_s: None,
        access_ttl_s: None,
    })?;
    let api = Arc::new(Api {
        http: reqwest::Client::new(),
        base: format!("http://{}", node.info.http),
        key: node.info.api_key.clone(),
    });
    api.call(
        reqwest::Method::POST,
        "/api/users",
        Some(json!({"user_id": "bench-user"})),
    )
    .await?;
    let mut channels = Vec::new();
    for i in 0..CHANNELS {
        let c = api
            .call(
                reqwest::Method::POST,
                "/api/channels",
                Some(
                    json!({"user_id": "bench-user", "type": "group", "name": format!("media-{i}")}),
                ),
            )
            .await?;
        channels.push(
            c["id"]
                .as_str()
                .ok_or_else(|| anyhow!("no channel id"))?
                .to_string(),
        );
    }
    let mut run = Run::new("media", "chatsdk-1node", 0);
    run.param("messages", messages as f64)
        .param("file_bytes", 1 << 20)
        .param("photo", "1600x1200 jpeg");

    eprintln!("media: {files} file uploads");
    let text: Vec<u8> = (0..1usize << 20).map(|i| b'a' + (i % 26) as u8).collect();
    let (per_s, mib_s) = uploads(
        &api,
        &channels[0],
        text,
        "notes.txt",
        "text/plain",
        files,
        8,
    )
    .await?;
    run.metric("file_uploads_per_s", per_s)
        .metric("file_mib_per_s", mib_s);
    eprintln!("media: {photos} photo uploads");
    let photo = jpeg(1600, 1200);
    let (per_s, mib_s) = uploads(
        &api,
        &channels[0],
        photo,
        "photo.jpg",
        "image/jpeg",
        photos,
        4,
    )
    .await?;
    run.metric("photo_uploads_per_s", per_s)
        .metric("photo_mib_per_s", mib_s);

    eprintln!("media: {messages} messages");
    let next = Arc::new(AtomicUsize::new(0));
    let channels = Arc::new(channels);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        let (api, next, channels) = (api.clone(), next.clone(), channels.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(s as u64);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= messages {
                    return Ok::<_, anyhow::Error>(());
                }
                let len = 8 + i % 13;
                let words: Vec<String> = (0..len).map(|_| word(zipf(&mut rng))).collect();
                let body = json!({
                    "channel_id": channels[i % CHANNELS],
                    "user_id": "bench-user",
                    "text": format!("{} m{i}", words.join(" ")),
                });
                api.call(reqwest::Method::POST, "/api/messages", Some(body))
                    .await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    run.metric(
        "sends_per_s",
        messages as f64 / started.elapsed().as_secs_f64(),
    );
    eprintln!("media: waiting for the index");
    let caught = Instant::now();
    let last = format!("m{}", messages - 1);
    loop {
        let r = api
            .call(
                reqwest::Method::GET,
                &format!("/api/search?user_id=bench-user&q={last}"),
                None,
            )
            .await?;
        if r["total_hits"].as_u64() == Some(1) {
            break;
        }
        anyhow::ensure!(
            caught.elapsed() < Duration::from_secs(if ctx.smoke { 30 } else { 300 }),
            "the index never caught up: {r}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    run.metric("index_catch_up_s", caught.elapsed().as_secs_f64());

    let kinds: [(&str, QueryOf); 5] = [
        ("common_word", Box::new(|i| word(i % 5))),
        ("rare_word", Box::new(|i| word(VOCABULARY - 1 - i % 100))),
        (
            "two_words",
            Box::new(|i| format!("{}%20{}", word(i % 7), word(10 + i % 40))),
        ),
        ("prefix", Box::new(|i| word(20 + i % 50)[..4].to_string())),
        (
            "word_author_dates",
            Box::new(|i| {
                format!(
                    "{}&authorId=bench-user&fromDate=2001-01-01&toDate=2999-01-01",
                    word(3 + i % 30)
                )
            }),
        ),
    ];
    for (name, q) in kinds {
        let mut h = hist::new();
        for i in 0..QUERIES_PER_KIND {
            let t = Instant::now();
            api.call(
                reqwest::Method::GET,
                &format!("/api/search?user_id=bench-user&limit=20&q={}", q(i)),
                None,
            )
            .await
            .with_context(|| format!("query {name}"))?;
            hist::record(&mut h, t.elapsed().as_micros() as u64);
        }
        let l = hist::Latency::of(&h);
        run.metric(&format!("search_{name}_p50_ms"), l.p50_ms)
            .metric(&format!("search_{name}_p99_ms"), l.p99_ms);
    }
    run.emit();
    let runs = vec![run];
    crate::report::table("media", &runs);
    drop(node);
    Ok(runs)
}
