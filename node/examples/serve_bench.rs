//! Measures a `chatsdk` node as a separate process on loopback: the memory an idle,
//! connected and subscribed WebSocket session costs, and durable REST send throughput.
//!
//! ```sh
//! cargo build --release -p chatsdk-node
//! ulimit -n 20000   # one process here holds at most ~19,900 sockets
//! cargo run --release -p chatsdk-node --example serve_bench -- idle 1000,2500,5000,10000 [subscribed|connect|open]
//! cargo run --release -p chatsdk-node --example serve_bench -- rest 64 10
//! ```
//!
//! `idle N1,N2,...`: opens sessions in steps (each connects with a token and subscribes to the
//! demo channel and its user channel), and after each step reads the server's RSS from
//! `/proc/<pid>/status`; reports the least-squares slope in bytes per session. `rest C S`: C
//! concurrent closed-loop senders post 100-byte messages through the Server API for S seconds
//! to 16 channels; reports acknowledged sends per second and latency percentiles. The server
//! runs with a fresh data directory and the bench rate-limit profile. The full load harness
//! (open-loop schedules, several generator processes, peers) is `bench/`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

struct Server {
    child: Child,
    base: String,
    key: String,
    ws_token: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> anyhow::Result<Server> {
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("chatsdk"))
        .context("binary path")?;
    if !bin.exists() {
        bail!(
            "{} not found: run `cargo build --release -p chatsdk-node` first",
            bin.display()
        );
    }
    let dir = tempfile::tempdir()?;
    // CHATSDK_BENCH_WRAP runs the server under a tool, e.g. "valgrind --tool=massif".
    let wrap: Vec<String> = std::env::var("CHATSDK_BENCH_WRAP")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let mut command = match wrap.split_first() {
        Some((tool, args)) => {
            let mut c = Command::new(tool);
            c.args(args).arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    let mut child = command
        .args([
            "serve",
            "--dev",
            "--http",
            "127.0.0.1:0",
            "--cluster-addr",
            "127.0.0.1:0",
            "--quic-port",
            "0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("CHATSDK_LIMITS__BENCH_PROFILE", "true")
        .env("CHATSDK_LIMITS__MAX_CONNECTIONS", "19000")
        .env("CHATSDK_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let out = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(out).lines();
    let (mut base, mut key, mut ws_token) = (String::new(), String::new(), String::new());
    for line in lines.by_ref() {
        let line = line?;
        let t = line.trim();
        if let Some(rest) = t.split("listening on ").nth(1) {
            base = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        } else if let Some(k) = t.strip_prefix("server API key:") {
            key = k.trim().to_string();
        } else if let Some(k) = t.strip_prefix("realtime token for user-1:") {
            ws_token = k.trim().to_string();
        } else if t.starts_with("join token") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    if base.is_empty() || key.is_empty() || ws_token.is_empty() {
        bail!("server did not print its credentials");
    }
    Ok(Server {
        child,
        base,
        key,
        ws_token,
        _dir: dir,
    })
}

fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")?;
    Ok(kb * 1024)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn session(url: &str, token: &str, channels: &[String]) -> anyhow::Result<Ws> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    if token.is_empty() {
        // Only the WebSocket: measures what a connection costs before it authenticates.
        return Ok(ws);
    }
    let mut frame = json!({"id": 1, "connect": {"token": token}}).to_string();
    for (i, c) in channels.iter().enumerate() {
        frame.push('\n');
        frame.push_str(&json!({"id": i + 2, "subscribe": {"channel": c}}).to_string());
    }
    ws.send(Message::Text(frame.into())).await?;
    let mut replies = 0;
    while replies < channels.len() + 1 {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                for line in t.as_str().lines() {
                    let v: Value = serde_json::from_str(line)?;
                    if v.get("error").is_some() {
                        bail!("refused: {v}");
                    }
                    if v.get("id").is_some() {
                        replies += 1;
                    }
                }
            }
            Some(Ok(_)) => {}
            other => bail!("session ended: {other:?}"),
        }
    }
    Ok(ws)
}

async fn idle(steps: Vec<usize>, mode: &str) -> anyhow::Result<()> {
    let server = start_server()?;
    let pid = server.child.id();
    let url = format!(
        "{}/connection/websocket",
        server.base.replacen("http://", "ws://", 1)
    );
    let mut channels = vec![
        "chat:00000000-0000-0000-0000-000000000001:00000000-0000-0000-0000-000000000002"
            .to_string(),
        "user:00000000-0000-0000-0000-000000000001:user-1".to_string(),
    ];
    let token = match mode {
        "open" => String::new(),
        "connect" => {
            channels.clear();
            server.ws_token.clone()
        }
        _ => server.ws_token.clone(),
    };
    // Warm up allocator arenas and the runtime before the first reading.
    let mut sessions: Vec<Ws> = Vec::new();
    for _ in 0..200 {
        sessions.push(session(&url, &token, &channels).await?);
    }
    let mut points = Vec::new();
    for target in steps {
        let started = Instant::now();
        let mut batch = futures::stream::iter(
            (sessions.len()..target).map(|_| session(&url, &token, &channels)),
        )
        .buffer_unordered(64);
        let mut opened = 0usize;
        while let Some(s) = batch.next().await {
            sessions.push(s?);
            opened += 1;
        }
        drop(batch);
        let rate = opened as f64 / started.elapsed().as_secs_f64().max(1e-9);
        // Let the server settle (queued frames written, tasks parked) before reading RSS.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss = rss_bytes(pid)?;
        println!("{{\"sessions\": {}, \"server_rss_bytes\": {rss}, \"connect_subscribe_per_s\": {rate:.0}}}", sessions.len());
        points.push((sessions.len() as f64, rss as f64));
    }
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    let slope = if den > 0.0 { num / den } else { 0.0 };
    println!("idle session cost: {slope:.0} bytes of server RSS per connected + subscribed session (least squares over {} points)", points.len());
    Ok(())
}

async fn rest(concurrency: usize, seconds: u64) -> anyhow::Result<()> {
    let server = start_server()?;
    let http = reqwest::Client::new();
    let mut channels = Vec::new();
    for i in 0..16 {
        let r: Value = http
            .post(format!("{}/api/channels", server.base))
            .header("X-API-Key", &server.key)
            .json(&json!({"user_id": "user-1", "type": "group", "name": format!("bench-{i}"), "member_ids": ["user-2"]}))
            .send()
            .await?
            .json()
            .await?;
        channels.push(r["id"].as_str().context("channel id")?.to_string());
    }
    let text = "x".repeat(100);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (http, base, key, channel, text) = (
            http.clone(),
            server.base.clone(),
            server.key.clone(),
            channels[w % channels.len()].clone(),
            text.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = http
                    .post(format!("{base}/api/messages"))
                    .header("X-API-Key", &key)
                    .json(&json!({"channel_id": channel, "user_id": "user-1", "text": text}))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().as_u16() == 201 => {
                        hist.record(t.elapsed().as_micros() as u64)?;
                    }
                    _ => errors += 1,
                }
            }
            anyhow::Ok((hist, errors))
        }));
    }
    let mut total = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    for t in tasks {
        let (h, e) = t.await??;
        total.add(h)?;
        errors += e;
    }
    println!(
        "{{\"scenario\": \"rest_send\", \"concurrency\": {concurrency}, \"seconds\": {seconds}, \"acked_per_s\": {:.0}, \"p50_ms\": {:.2}, \"p99_ms\": {:.2}, \"max_ms\": {:.2}, \"errors\": {errors}}}",
        total.len() as f64 / seconds as f64,
        total.value_at_quantile(0.5) as f64 / 1000.0,
        total.value_at_quantile(0.99) as f64 / 1000.0,
        total.max() as f64 / 1000.0
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("idle") => {
            let steps = args
                .get(1)
                .map(String::as_str)
                .unwrap_or("1000,2500,5000,10000")
                .split(',')
                .map(|s| s.parse())
                .collect::<Result<Vec<usize>, _>>()?;
            idle(
                steps,
                args.get(2).map(String::as_str).unwrap_or("subscribed"),
            )
            .await
        }
        Some("rest") => {
            let c = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(64);
            let s = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(10);
            rest(c, s).await
        }
        _ => bail!("usage: serve_bench idle N1,N2,... | rest CONCURRENCY SECONDS"),
    }
}
