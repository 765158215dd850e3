//! The cluster under test: `chatsdk serve` processes, each in its own network namespace
//! ([`super::net`]) or, where the machine cannot make namespaces, on 127.0.0.1. A node keeps its
//! data directory and its addresses across kills and restarts, as a host does.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::net::Net;
use crate::support::{ADMIN_KEY, BIN, WAIT};

/// One node: its process (when running) and what it keeps across restarts.
struct Proc {
    child: Option<Child>,
    dir: PathBuf,
    log: PathBuf,
    http: SocketAddr,
    cluster: SocketAddr,
    join: Option<(String, String)>,
    paused: bool,
    /// Starts so far (a replacement's directory is named after it).
    starts: u32,
    /// The cluster's id of the node now on this host (a replacement gets a new one).
    id: u64,
    /// Its data is not to be trusted: on heal it is replaced by a fresh node, not restarted.
    replace: bool,
    /// Its data directory is a tmpfs of its own (so that its disk can fill up).
    tmpfs: bool,
    /// Its wall clock's offset (libfaketime's `FAKETIME`, e.g. `+2h`) while skewed.
    skew: Option<String>,
    /// While this file exists, the node's syncs fail (when the shim is preloaded).
    fail_syncs: PathBuf,
    /// Without network namespaces: the node ids it drops its cluster traffic to, one per line
    /// (its `CHATSDK_FAULT_FILE`).
    cuts_file: PathBuf,
}

/// Nodes, their network and the default app's credentials.
pub(crate) struct Cluster {
    net: Option<Net>,
    nodes: Vec<Proc>,
    pub(crate) app: String,
    pub(crate) key: String,
    /// Taken (and so not removed) when the directories are to be kept.
    root: Option<tempfile::TempDir>,
    /// `support/failsync.c`, preloaded into every node, when the scenario fails syncs.
    failsync: Option<PathBuf>,
    snapshot_after_logs: Option<u64>,
    /// The links cut now, as (from, to) hosts.
    cut: BTreeSet<(usize, usize)>,
}

/// libfaketime, from Debian's `faketime` package (scripts/test installs it).
const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// What a scenario needs of the machine.
#[derive(Clone, Copy, Default)]
pub(crate) struct Needs {
    /// Links to cut (partitions): network namespaces where the machine allows, otherwise (or
    /// with `CHATSDK_FAULT_NO_NETNS` set) the nodes' transport fault hooks.
    pub(crate) net: bool,
    /// A disk of this size per node (a tmpfs), so that one can fill up.
    pub(crate) disk_mib: Option<u64>,
    /// The sync failure shim preloaded into every node (see [`Cluster::fail_syncs`]).
    pub(crate) sync_faults: bool,
    /// Groups snapshot after this many entries (and keep 10 behind), so that a node down for
    /// a few seconds is caught up by a snapshot.
    pub(crate) snapshot_after_logs: Option<u64>,
}

/// A port nothing listens on now, on `ip` (for the loopback fallback, where nodes share one
/// port space and must keep their ports across restarts).
fn free_port(ip: Ipv4Addr) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral port")
}

impl Cluster {
    /// Starts `n` nodes (the first bootstraps, the others join with a minted token) and waits
    /// until every shard has its replicas and a leader. `Err` (the reason) when the machine
    /// cannot give what `needs` asks for.
    pub(crate) async fn start(n: usize, needs: Needs) -> Result<Cluster, String> {
        let forced = std::env::var_os("CHATSDK_FAULT_NO_NETNS").is_some();
        let made = if forced {
            Err("CHATSDK_FAULT_NO_NETNS set".to_string())
        } else {
            Net::create(n)
        };
        let net = match made {
            Ok(net) => Some(net),
            Err(why) if needs.net => {
                eprintln!("fault suite: no network namespaces ({why}); nodes on 127.0.0.1, links cut by the nodes' transport fault hooks");
                None
            }
            Err(why) => {
                eprintln!("fault suite: no network namespaces ({why}); nodes on 127.0.0.1");
                None
            }
        };
        let root = tempfile::Builder::new()
            .prefix("chatsdk-faults-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let mut nodes = Vec::new();
        for i in 0..n {
            // In a namespace of its own a node has the port space to itself.
            let (http, cluster) = match &net {
                Some(net) => {
                    let ip = net.host(i).ip;
                    (SocketAddr::from((ip, 8080)), SocketAddr::from((ip, 7000)))
                }
                None => {
                    let ip = Ipv4Addr::LOCALHOST;
                    let cluster = std::net::UdpSocket::bind((ip, 0))
                        .and_then(|s| s.local_addr())
                        .map_err(|e| e.to_string())?;
                    (SocketAddr::from((ip, free_port(ip))), cluster)
                }
            };
            nodes.push(Proc {
                child: None,
                dir: root.path().join(format!("n{}", i + 1)),
                log: root.path().join(format!("n{}.log", i + 1)),
                http,
                cluster,
                join: None,
                paused: false,
                starts: 0,
                id: i as u64 + 1,
                replace: false,
                tmpfs: false,
                skew: None,
                fail_syncs: root.path().join(format!("n{}.fail-syncs", i + 1)),
                cuts_file: root.path().join(format!("n{}.cuts", i + 1)),
            });
        }
        let mut c = Cluster {
            net,
            nodes,
            app: String::new(),
            key: String::new(),
            root: Some(root),
            failsync: needs.sync_faults.then(crate::support::failsync_lib),
            snapshot_after_logs: needs.snapshot_after_logs,
            cut: BTreeSet::new(),
        };
        if let Some(mib) = needs.disk_mib {
            for i in 0..n {
                c.own_disk(i, mib)?;
            }
        }
        c.spawn(0);
        c.wait_up(0).await;
        let first = c.log_of(0);
        c.app = after(&first, "default app ").ok_or("no default app printed")?;
        c.key = after(&first, "server API key (shown once):").ok_or("no server key printed")?;
        let token = crate::support::mint_join_token(&c.base(0));
        for i in 1..n {
            c.nodes[i].join = Some((c.nodes[0].cluster.to_string(), token.clone()));
            c.spawn(i);
            c.wait_up(i).await;
        }
        c.until_settled(n).await?;
        Ok(c)
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Makes the cut set exactly `cut` ((from, to) hosts): `blackhole` routes in the senders'
    /// namespaces, or without namespaces each sender's fault file (its transport drops what it
    /// would send to the listed node ids).
    pub(crate) fn set_cuts(&mut self, cut: BTreeSet<(usize, usize)>) -> Result<(), String> {
        if let Some(net) = self.net.as_mut() {
            net.set_cuts(cut.clone())?;
        } else {
            for from in 0..self.nodes.len() {
                let ids: String = cut
                    .iter()
                    .filter(|(f, _)| *f == from)
                    .map(|&(_, to)| format!("{}\n", self.nodes[to].id))
                    .collect();
                // Written whole, then renamed over: the node never reads half a list.
                let file = &self.nodes[from].cuts_file;
                let tmp = file.with_extension("tmp");
                std::fs::write(&tmp, ids)
                    .and_then(|()| std::fs::rename(&tmp, file))
                    .map_err(|e| format!("{}: {e}", file.display()))?;
            }
        }
        self.cut = cut;
        Ok(())
    }

    /// Node pairs across `sides` cannot talk, both ways; within a side they can.
    pub(crate) fn partition(&mut self, sides: &[&[usize]]) -> Result<(), String> {
        self.set_cuts(super::net::partition_cut(sides))
    }

    /// How links are cut here.
    pub(crate) fn cut_by(&self) -> &'static str {
        if self.net.is_some() {
            "blackhole routes"
        } else {
            "transport fault hooks"
        }
    }

    /// The node's HTTP base URL.
    pub(crate) fn base(&self, i: usize) -> String {
        format!("http://{}", self.nodes[i].http)
    }

    pub(crate) fn running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.starts += 1;
        let mut cmd = match &self.net {
            Some(net) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &net.host(i).ns, BIN]);
                c
            }
            None => Command::new(BIN),
        };
        cmd.args(["serve", "--data-dir"])
            .arg(&node.dir)
            .args(["--http", &node.http.to_string()])
            .args(["--cluster-addr", &node.cluster.to_string()])
            .args(["--quic-port", "0"]);
        if let Some((addr, token)) = &node.join {
            // Kept on restarts, as in a unit file: a node with an identity ignores it.
            cmd.args(["--join", addr, "--join-token", token]);
        }
        for (name, _) in std::env::vars() {
            if name.starts_with("CHATSDK_") || name.ends_with("_BACKTRACE") {
                cmd.env_remove(name);
            }
        }
        // Settings for the nodes of an exploratory run (`CHATSDK_FAULT_NODE_ENV="K=V K=V"`).
        if let Ok(extra) = std::env::var("CHATSDK_FAULT_NODE_ENV") {
            for (k, v) in extra.split_whitespace().filter_map(|kv| kv.split_once('=')) {
                cmd.env(k, v);
            }
        }
        let mut preload = Vec::new();
        if self.net.is_none() {
            cmd.env("CHATSDK_FAULT_FILE", &node.cuts_file);
        }
        if let Some(lib) = &self.failsync {
            preload.push(lib.display().to_string());
            cmd.env("FAILSYNC_TRIGGER", &node.fail_syncs);
        }
        if let Some(offset) = &node.skew {
            // The wall clock only: a host whose clock is wrong, not one whose timers run at
            // another rate.
            preload.push(FAKETIME_LIB.to_string());
            cmd.env("FAKETIME", offset)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("FAKETIME_NO_CACHE", "1");
        }
        if !preload.is_empty() {
            cmd.env("LD_PRELOAD", preload.join(" "));
        }
        if let Some(n) = self.snapshot_after_logs {
            cmd.env("CHATSDK_CLUSTER__SNAPSHOT_AFTER_LOGS", n.to_string())
                .env("CHATSDK_CLUSTER__LOGS_KEPT_AFTER_SNAPSHOT", "10");
        }
        // Appended across restarts, so a failure shows the node's whole life.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("node log file");
        let err = log.try_clone().expect("node log file");
        let child = cmd
            // The chat layer at info: its position checks say which subscriptions they closed.
            .env("CHATSDK_LOG", "warn,chatsdk_actors=info")
            .env("CHATSDK_SERVER__ADMIN_API_KEY", ADMIN_KEY)
            .env("CHATSDK_AUTH__ACCESS_TTL_S", "43200")
            // Dead connections are noticed in seconds, not the default's half minute.
            .env("CHATSDK_REALTIME__PING_INTERVAL_S", "2")
            .env("CHATSDK_REALTIME__PONG_TIMEOUT_S", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("chatsdk starts");
        node.child = Some(child);
        node.paused = false;
    }

    /// What node `i` printed, over all its starts.
    pub(crate) fn log_of(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// Waits until node `i` answers `/health`; panics (with its log) if it exits or stays
    /// silent past [`WAIT`].
    async fn wait_up(&mut self, i: usize) {
        let url = format!("{}/health", self.base(i));
        let http = reqwest::Client::new();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(r) = http.get(&url).timeout(Duration::from_secs(1)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(child) = self.nodes[i].child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("node {} exited ({status}):\n{}", i + 1, self.log_of(i));
                }
            }
            assert!(
                Instant::now() < deadline,
                "node {} not up:\n{}",
                i + 1,
                self.log_of(i)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The admin cluster view, from the first running node that answers.
    pub(crate) async fn view(&self) -> Option<Value> {
        let http = reqwest::Client::new();
        for i in 0..self.len() {
            if !self.running(i) || self.nodes[i].paused {
                continue;
            }
            let r = http
                .get(format!("{}/admin/cluster", self.base(i)))
                .bearer_auth(ADMIN_KEY)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if let Ok(r) = r {
                if let Ok(v) = r.json::<Value>().await {
                    if v["groups"].is_array() {
                        return Some(v);
                    }
                }
            }
        }
        None
    }

    /// Waits until `n` nodes are active and every group is settled with a leader; `Err` with
    /// the last view after [`WAIT`].
    pub(crate) async fn until_settled(&self, n: usize) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let view = self.view().await;
            if let Some(v) = &view {
                let active = v["nodes"]
                    .as_array()
                    .map_or(0, |ns| ns.iter().filter(|n| n["state"] == "active").count());
                let groups = v["groups"].as_array().cloned().unwrap_or_default();
                let settled = groups
                    .iter()
                    .all(|g| g["settled"] != false && g["leader"].is_u64());
                let placed = groups
                    .iter()
                    .filter(|g| g["kind"] == "shard")
                    .all(|g| g["replicas"].as_array().map_or(0, Vec::len) == n.min(3));
                if active == n && settled && placed {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                let leaderless: Vec<String> = view
                    .as_ref()
                    .and_then(|v| v["groups"].as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .filter(|g| !g["leader"].is_u64() || g["settled"] == false)
                    .map(|g| format!("{} {} (replicas {})", g["kind"], g["id"], g["replicas"]))
                    .collect();
                return Err(format!(
                    "liveness: the cluster did not settle in {WAIT:?}; groups without a leader \
                     or unsettled: {leaderless:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// How long the cluster view (answered by a running node) says node `i` has been
    /// unreachable, if it says so.
    pub(crate) async fn unreachable_for(&self, i: usize) -> Option<u64> {
        let id = self.nodes[i].id;
        let v = self.view().await?;
        v["nodes"].as_array()?.iter().find(|n| n["id"] == id)?["unreachableForS"].as_u64()
    }

    /// Shard groups whose membership is being changed (replicas moving), as the view says.
    pub(crate) async fn moving(&self) -> usize {
        self.view().await.map_or(0, |v| {
            v["groups"].as_array().map_or(0, |gs| {
                gs.iter()
                    .filter(|g| g["kind"] == "shard" && g["settled"] == false)
                    .count()
            })
        })
    }

    /// The shard group of `channel` as the cluster view reports it.
    pub(crate) async fn shard_group(&self, channel: &str) -> Option<Value> {
        let v = self.view().await?;
        let shards = u32::try_from(v["shards"].as_u64()?).ok()?;
        let shard = chatsdk_cluster::shard_for(&self.app, channel, shards);
        v["groups"]
            .as_array()?
            .iter()
            .find(|g| g["kind"] == "shard" && g["id"] == shard)
            .cloned()
    }

    /// Starts a killed node again without waiting for it to serve.
    pub(crate) fn start_again(&mut self, i: usize) {
        self.exited(i);
        if self.nodes[i].child.is_none() {
            self.spawn(i);
        }
    }

    /// Node `i`'s answer to `GET path` (with the admin key), or None.
    async fn fetch(&self, i: usize, path: &str) -> Option<String> {
        reqwest::Client::new()
            .get(format!("{}{path}", self.base(i)))
            .bearer_auth(ADMIN_KEY)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    }

    /// Writes what each running node says of itself (`/metrics`, its cluster view) next to its
    /// log in `dir`, for the reader of a kept run: which node believed it led which shard, what
    /// its position checks found.
    pub(crate) async fn record_state(&self, dir: &std::path::Path) {
        for i in 0..self.len() {
            if !self.running(i) || self.nodes[i].paused {
                continue;
            }
            for (path, file) in [("/metrics", "metrics.txt"), ("/admin/cluster", "view.json")] {
                if let Some(text) = self.fetch(i, path).await {
                    let _ = std::fs::write(dir.join(format!("n{}.{file}", i + 1)), text);
                }
            }
        }
    }

    /// A sample of node `i`'s `/metrics` (the first line starting with `name `); `None` while
    /// it does not answer.
    pub(crate) async fn metric(&self, i: usize, name: &str) -> Option<f64> {
        let text = self.fetch(i, "/metrics").await?;
        let prefix = format!("{name} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The node (index) leading the shard of `channel`, as the cluster view reports it.
    pub(crate) async fn shard_leader(&self, channel: &str) -> Option<usize> {
        let id = self.shard_group(channel).await?["leader"].as_u64()?;
        self.index_of(id)
    }

    /// The host a node id runs on.
    fn index_of(&self, id: u64) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    /// The cluster's id of the node on host `i`.
    pub(crate) fn id_of(&self, i: usize) -> u64 {
        self.nodes[i].id
    }

    /// Kills node `i`, flips bytes inside the first record of its oldest Raft log segment (a
    /// disk that returns bad data, not a torn append) and starts it again; what it printed
    /// when it stopped, or `Err` with its log if it kept running (it must not serve on bad
    /// data). It is marked to be replaced on heal.
    pub(crate) async fn corrupt_and_start(&mut self, i: usize) -> Result<String, String> {
        self.kill(i);
        let wal = self.nodes[i].dir.join("raft-log");
        let mut segments: Vec<PathBuf> = std::fs::read_dir(&wal)
            .map_err(|e| format!("{}: {e}", wal.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wal"))
            .collect();
        segments.sort();
        let oldest = segments.first().ok_or("no log segment")?;
        let mut bytes = std::fs::read(oldest).map_err(|e| e.to_string())?;
        for b in bytes.iter_mut().skip(16).take(8) {
            *b ^= 0xa5;
        }
        std::fs::write(oldest, &bytes).map_err(|e| e.to_string())?;
        self.nodes[i].replace = true;
        let before = self.log_of(i).len();
        self.spawn(i);
        let deadline = Instant::now() + WAIT;
        loop {
            let child = self.nodes[i].child.as_mut().expect("just started");
            if let Ok(Some(status)) = child.try_wait() {
                self.nodes[i].child = None;
                let log = self.log_of(i);
                let said = log.get(before..).unwrap_or_default().trim().to_string();
                return if status.success() {
                    Err(format!("exited 0 on a corrupt log: {said}"))
                } else {
                    Ok(format!("{status}: {said}"))
                };
            }
            let health = reqwest::Client::new()
                .get(format!("{}/health", self.base(i)))
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return Err("it serves on a corrupt log".into());
            }
            if Instant::now() > deadline {
                return Err("it neither served nor stopped".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `chatsdk node remove <id>` through node `via`, as an operator removes a dead node;
    /// what it printed.
    pub(crate) fn remove(&self, via: usize, id: u64) -> Result<String, String> {
        let out = Command::new(BIN)
            .args(["node", "remove", &id.to_string(), "--url", &self.base(via)])
            .args(["--admin-key", ADMIN_KEY])
            .output()
            .map_err(|e| e.to_string())?;
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(said.trim().to_string())
        } else {
            Err(said)
        }
    }

    /// A fresh node on host `i` (an empty directory, a new join token from node `via`), which
    /// joins as a new member; waits until it is up and learns its id.
    pub(crate) async fn replace(&mut self, i: usize, via: usize) {
        self.kill(i);
        let node = &mut self.nodes[i];
        let old = node.dir.with_extension(format!("replaced-{}", node.starts));
        std::fs::rename(&node.dir, &old).expect("moving the old directory aside");
        let token = crate::support::mint_join_token(&self.base(via));
        let peer = self.nodes[via].cluster.to_string();
        let node = &mut self.nodes[i];
        node.join = Some((peer, token));
        node.replace = false;
        self.spawn(i);
        self.wait_up(i).await;
        let addr = self.nodes[i].cluster.to_string();
        let deadline = Instant::now() + WAIT;
        loop {
            let id = self.view().await.and_then(|v| {
                v["nodes"].as_array()?.iter().find_map(|n| {
                    (n["clusterAddr"] == addr.as_str() && n["state"] != "removed")
                        .then(|| n["id"].as_u64())
                        .flatten()
                })
            });
            if let Some(id) = id.filter(|&id| id != self.nodes[i].id) {
                self.nodes[i].id = id;
                return;
            }
            assert!(Instant::now() < deadline, "the replacement has no id");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no shutdown, nothing flushed beyond what acknowledgements required.
    pub(crate) fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.nodes[i].paused = false;
    }

    /// Starts a killed (or stopped) node again on its directory and addresses.
    pub(crate) async fn restart(&mut self, i: usize) {
        self.exited(i);
        if self.nodes[i].child.is_none() {
            self.spawn(i);
        }
        self.wait_up(i).await;
    }

    /// Restarts node `i` with its wall clock off by `offset` (`+2h`, `-90s`: libfaketime's
    /// notation); `Err` when libfaketime is not installed. Healing restarts it on true time.
    pub(crate) async fn skew(&mut self, i: usize, offset: &str) -> Result<(), String> {
        if !std::path::Path::new(FAKETIME_LIB).exists() {
            return Err(format!(
                "{FAKETIME_LIB} missing (Debian's faketime package)"
            ));
        }
        self.kill(i);
        self.nodes[i].skew = Some(offset.to_string());
        self.spawn(i);
        self.wait_up(i).await;
        Ok(())
    }

    /// Makes every `fsync`, `fdatasync` and `sync_file_range` of node `i` fail with EIO from
    /// now on (`on`), or succeed again; `Err` when the scenario did not preload the shim.
    pub(crate) fn fail_syncs(&self, i: usize, on: bool) -> Result<(), String> {
        if self.failsync.is_none() {
            return Err("the scenario runs without the sync failure shim".into());
        }
        let path = &self.nodes[i].fail_syncs;
        let done = if on {
            std::fs::write(path, b"")
        } else {
            std::fs::remove_file(path).or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            })
        };
        done.map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Waits up to `limit` for node `i` to stop by itself; how it stopped.
    pub(crate) async fn exit_within(
        &mut self,
        i: usize,
        limit: Duration,
    ) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited(i) {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last line node `i` printed (over all its starts).
    pub(crate) fn last_log_line(&self, i: usize) -> String {
        self.log_of(i)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_string()
    }

    /// Whether node `i` stopped by itself, and how (reaped: it counts as not running).
    pub(crate) fn exited(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        let status = self.nodes[i].child.as_mut()?.try_wait().ok()??;
        self.nodes[i].child = None;
        Some(status)
    }

    /// Gives node `i` a disk of its own, `mib` MiB (a tmpfs mounted on its data directory),
    /// before its first start; `Err` when this machine does not let the test mount.
    pub(crate) fn own_disk(&mut self, i: usize, mib: u64) -> Result<(), String> {
        let dir = &self.nodes[i].dir;
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        self.nodes[i].tmpfs = true;
        Ok(())
    }

    /// Resizes node `i`'s disk to `used + free_kib` KiB (a full disk when `free_kib` is
    /// small); what it now holds, in KiB.
    pub(crate) fn resize_disk(&self, i: usize, free_kib: u64) -> Result<u64, String> {
        let dir = &self.nodes[i].dir;
        let out = Command::new("df")
            .args(["--output=used", "-k"])
            .arg(dir)
            .output()
            .map_err(|e| format!("df: {e}"))?;
        let used: u64 = String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .ok_or("df printed no usage")?;
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={}k", used + free_kib)])
            .arg(dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(used)
    }

    /// SIGSTOP or SIGCONT.
    pub(crate) fn signal(&mut self, i: usize, stop: bool) {
        let Some(child) = &self.nodes[i].child else {
            return;
        };
        let sig = if stop { "-STOP" } else { "-CONT" };
        let ok = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} node {}", i + 1);
        self.nodes[i].paused = stop;
    }

    /// Every node running and reachable again: partitions healed, paused nodes resumed,
    /// killed ones restarted.
    pub(crate) async fn heal_all(&mut self) {
        if !self.cut.is_empty() {
            self.set_cuts(BTreeSet::new()).expect("healing the network");
        }
        for i in 0..self.len() {
            if self.nodes[i].paused {
                self.signal(i, false);
            }
            if self.nodes[i].skew.take().is_some() {
                self.kill(i);
            }
            if self.nodes[i].replace {
                let via = (0..self.len())
                    .find(|&j| j != i && self.running(j))
                    .expect("a running node to join");
                self.replace(i, via).await;
            } else {
                self.restart(i).await;
            }
        }
    }

    /// Keeps the nodes' directories and logs (when `CHATSDK_FAULT_KEEP` is set, or a
    /// scenario found a violation) and says where they are.
    pub(crate) fn keep(&mut self) -> Option<PathBuf> {
        let root = self.root.take()?;
        let path = root.path().to_path_buf();
        eprintln!(
            "fault suite: nodes' directories and logs kept in {}",
            path.display()
        );
        std::mem::forget(root);
        Some(path)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].paused {
                self.signal(i, false);
            }
            self.kill(i);
            if self.nodes[i].tmpfs && self.root.is_some() {
                let _ = Command::new("umount")
                    .arg("-l")
                    .arg(&self.nodes[i].dir)
                    .status();
            }
        }
    }
}

/// The rest of the first line of `text` that contains `prefix`, after it.
fn after(text: &str, prefix: &str) -> Option<String> {
    text.lines().find_map(|l| {
        l.find(prefix)
            .map(|at| l[at + prefix.len()..].trim().to_string())
    })
}
