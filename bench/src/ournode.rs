//! Our server under test, as its own OS process (so its CPU and memory can be read from
//! `/proc` apart from the generators').
//!
//! The harness re-executes itself with the hidden `node` subcommand, which runs the very same
//! node library as the `chatsdk` binary ([`chatsdk_node::start`]) and reports its addresses and
//! credentials as one JSON line, then the set of shard groups it leads whenever that changes.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context};
use serde::{Deserialize, Serialize};

/// What a started node reports.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeInfo {
    pub http: SocketAddr,
    pub quic: Option<SocketAddr>,
    /// Base64 DER of the QUIC certificate (dev self-signed).
    pub quic_cert: Option<String>,
    pub cluster_addr: SocketAddr,
    pub app_id: String,
    pub api_key: String,
    pub join_token: Option<String>,
}

/// How to start a node.
#[derive(Clone, Debug, Default)]
pub struct NodeOptions {
    /// Join this node's cluster instead of bootstrapping.
    pub join: Option<(SocketAddr, String)>,
    /// CPUs to pin the process to.
    pub cpus: Option<Vec<usize>>,
    /// Seconds between the node's retention passes (its default when `None`).
    pub retention_every_s: Option<u64>,
    /// Lifetime of access tokens, in seconds (the node's default when `None`).
    pub access_ttl_s: Option<u64>,
}

/// A running node process.
pub struct OurNode {
    child: Child,
    pub info: NodeInfo,
    /// Data groups this node currently leads.
    pub leads: Arc<Mutex<BTreeSet<u32>>>,
    _dir: Option<tempfile::TempDir>,
}

impl OurNode {
    /// Starts a node in a fresh temp data dir and waits for its report.
    pub fn start(opts: &NodeOptions) -> anyhow::Result<OurNode> {
        let dir = tempfile::Builder::new()
            .prefix("chatsdk-bench-")
            .tempdir()?;
        let exe = std::env::current_exe()?;
        // `CHATSDK_BENCH_WRAP="heaptrack -o /tmp/x"` (or perf, strace...) runs the node under
        // a tool, for profiling.
        let wrap: Vec<String> = std::env::var("CHATSDK_BENCH_WRAP")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let mut cmd = match &opts.cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu_list(cpus)).args(&wrap).arg(&exe);
                c
            }
            None => match wrap.split_first() {
                Some((tool, args)) => {
                    let mut c = Command::new(tool);
                    c.args(args).arg(&exe);
                    c
                }
                None => Command::new(&exe),
            },
        };
        cmd.arg("node").arg("--data-dir").arg(dir.path());
        if let Some((addr, token)) = &opts.join {
            cmd.arg("--join")
                .arg(addr.to_string())
                .arg("--join-token")
                .arg(token);
        }
        if let Some(every) = opts.retention_every_s {
            cmd.env("CHATSDK_BENCH_RETENTION_EVERY_S", every.to_string());
        }
        if let Some(ttl) = opts.access_ttl_s {
            cmd.env("CHATSDK_BENCH_ACCESS_TTL_S", ttl.to_string());
        }
        let mut child = cmd
            .env(
                "CHATSDK_LOG",
                std::env::var("CHATSDK_LOG").unwrap_or_else(|_| "error".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning the node process")?;
        let out = child.stdout.take().context("node stdout")?;
        let (tx, rx) = std::sync::mpsc::channel::<NodeInfo>();
        let leads = Arc::new(Mutex::new(BTreeSet::new()));
        let leads2 = leads.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(info) = serde_json::from_str::<NodeInfo>(&line) {
                    let _ = tx.send(info);
                } else if let Ok(l) = serde_json::from_str::<Leads>(&line) {
                    if let Ok(mut g) = leads2.lock() {
                        *g = l.leads;
                    }
                }
            }
        });
        let info = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(i) => i,
            Err(_) => {
                let _ = child.kill();
                return Err(anyhow!("the node did not report within 60 s"));
            }
        };
        Ok(OurNode {
            child,
            info,
            leads,
            _dir: Some(dir),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The node's data directory (a temp dir of its own).
    pub fn data_dir(&self) -> Option<&Path> {
        self._dir.as_ref().map(tempfile::TempDir::path)
    }

    /// SIGKILL: the crash of a failover test.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Graceful stop: closing stdin makes the node drain and exit.
    pub fn stop(mut self) {
        drop(self.child.stdin.take());
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
    }
}

impl Drop for OurNode {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Leads {
    leads: BTreeSet<u32>,
}

pub fn cpu_list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The hidden `node` subcommand: runs a node until stdin closes.
pub async fn run_node(data_dir: &Path, join: Option<(SocketAddr, String)>) -> anyhow::Result<()> {
    use chatsdk_node::config::Config;
    let mut c = Config::default();
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    c.server.http = any;
    c.server.data_dir = PathBuf::from(data_dir);
    // Not dev mode, which is for one node: the first node makes a default app and its key,
    // and QUIC serves a self-signed certificate made here (the clients pin it).
    let tls = data_dir.join("tls");
    chatsdk_gateway::quic::tls::Identity::load(
        &chatsdk_gateway::quic::tls::CertSource::SelfSigned {
            dir: tls.clone(),
            names: vec!["localhost".into(), "127.0.0.1".into()],
        },
    )?;
    c.quic.cert_file = Some(tls.join("quic-cert.pem").display().to_string());
    c.quic.key_file = Some(tls.join("quic-key.pem").display().to_string());
    c.server.drain_timeout_ms = 2_000;
    c.cluster.addr = any;
    c.quic.port = 0;
    c.limits.bench_profile = true;
    // A process here may hold ~20,000 files; leave room for storage and cluster sockets.
    c.limits.max_connections = 19_000;
    // Experiments: the shard count, the log's group-commit linger and the background threads'
    // nice value of the node under test.
    if let Some(shards) = env_number("CHATSDK_BENCH_SHARDS")? {
        c.cluster.shards = u32::try_from(shards)?;
    }
    if let Some(linger) = env_number("CHATSDK_BENCH_FLUSH_LINGER_US")? {
        c.cluster.flush_linger_us = linger;
    }
    if let Some(every) = env_number("CHATSDK_BENCH_RETENTION_EVERY_S")? {
        c.lifecycle.retention_interval_s = every;
    }
    if let Some(ttl) = env_number("CHATSDK_BENCH_ACCESS_TTL_S")? {
        c.auth.access_ttl_s = ttl;
    }
    if let Some(mib) = env_number("CHATSDK_BENCH_CACHE_MIB")? {
        c.cluster.cache_mib = mib;
    }
    if let Some(nice) = env_number("CHATSDK_BENCH_BACKGROUND_NICE")? {
        c.cluster.background_nice = i32::try_from(nice)?;
    }
    if let Some((addr, token)) = &join {
        c.cluster.join = Some((*addr).into());
        c.cluster.join_token = Some(token.clone());
    }
    c.validate()?;
    let node = chatsdk_node::start(&c).await?;
    let (app_id, api_key) = match (&node.credentials.dev, &node.credentials.default_app) {
        (Some(d), _) => (d.app_id.clone(), d.api_key.clone()),
        (None, Some((a, k))) => (a.clone(), k.clone()),
        (None, None) => (String::new(), String::new()),
    };
    let info = NodeInfo {
        http: node.http,
        quic: node.quic,
        quic_cert: node.quic_cert.as_ref().map(|d| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(d)
        }),
        cluster_addr: node.chat.cluster().addr(),
        app_id,
        api_key,
        join_token: node
            .chat
            .cluster()
            .mint_join_token(std::time::Duration::from_secs(24 * 3600), false)
            .await
            .ok()
            .map(|(token, _)| token),
    };
    println!("{}", serde_json::to_string(&info)?);
    std::io::stdout().flush()?;
    let mut leadership = node.chat.cluster().watch_leadership();
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin()
            .read_line(&mut sink)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            sink.clear();
        }
    });
    tokio::pin!(stdin_closed);
    loop {
        let leads: BTreeSet<u32> = leadership.borrow_and_update().iter().copied().collect();
        println!("{}", serde_json::to_string(&Leads { leads })?);
        std::io::stdout().flush()?;
        tokio::select! {
            _ = &mut stdin_closed => break,
            changed = leadership.changed() => if changed.is_err() { break },
        }
    }
    node.shutdown().await;
    Ok(())
}

/// A numeric setting from the environment, if set.
fn env_number(name: &str) -> anyhow::Result<Option<u64>> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(
            v.parse().map_err(|e| anyhow::anyhow!("{name}={v}: {e}"))?,
        )),
        Err(_) => Ok(None),
    }
}
