//! The cluster under test: `chatsdk serve` processes, each in its own network namespace
//! ([`super::net`]) or, where the machine cannot make namespaces, on 127.0.0.1. A node keeps its
//! data directory and its addresses across kills and restarts, as a host does.

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
    /// Restarts, for the log file names.
    starts: u32,
}

/// Nodes, their network and the default app's credentials.
pub(crate) struct Cluster {
    net: Option<Net>,
    nodes: Vec<Proc>,
    pub(crate) app: String,
    pub(crate) key: String,
    /// Taken (and so not removed) when the directories are to be kept.
    root: Option<tempfile::TempDir>,
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
    /// until every shard has its replicas and a leader. `Err` when `need_net` and the machine
    /// cannot make network namespaces (the reason).
    pub(crate) async fn start(n: usize, need_net: bool) -> Result<Cluster, String> {
        let net = match Net::create(n) {
            Ok(net) => Some(net),
            Err(why) if need_net => return Err(why),
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
            });
        }
        let mut c = Cluster {
            net,
            nodes,
            app: String::new(),
            key: String::new(),
            root: Some(root),
        };
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
        c.until_settled(n).await;
        Ok(c)
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    pub(crate) fn net(&mut self) -> &mut Net {
        self.net.as_mut().expect("a cluster in network namespaces")
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
            if name.starts_with("CHATSDK_") {
                cmd.env_remove(name);
            }
        }
        // Appended across restarts, so a failure shows the node's whole life.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("node log file");
        let err = log.try_clone().expect("node log file");
        let child = cmd
            .env("CHATSDK_LOG", "warn")
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

    /// Waits until `n` nodes are active and every group is settled with a leader.
    pub(crate) async fn until_settled(&self, n: usize) {
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
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not settle: {view:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The node (index) leading the shard of `channel`, as the cluster view reports it.
    pub(crate) async fn shard_leader(&self, channel: &str) -> Option<usize> {
        let v = self.view().await?;
        let shards = u32::try_from(v["shards"].as_u64()?).ok()?;
        let shard = chatsdk_cluster::shard_for(&self.app, channel, shards);
        let g = v["groups"]
            .as_array()?
            .iter()
            .find(|g| g["kind"] == "shard" && g["id"] == shard)?;
        let id = g["leader"].as_u64()?;
        self.index_of(id)
    }

    /// Node ids are given in join order from 1.
    fn index_of(&self, id: u64) -> Option<usize> {
        let i = usize::try_from(id).ok()?.checked_sub(1)?;
        (i < self.len()).then_some(i)
    }

    /// SIGKILL: no shutdown, nothing flushed beyond what acknowledgements required.
    pub(crate) fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.nodes[i].paused = false;
    }

    /// Starts a killed node again on its directory and addresses.
    pub(crate) async fn restart(&mut self, i: usize) {
        if self.nodes[i].child.is_none() {
            self.spawn(i);
        }
        self.wait_up(i).await;
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
        if let Some(net) = self.net.as_mut() {
            net.heal().expect("healing the network");
        }
        for i in 0..self.len() {
            if self.nodes[i].paused {
                self.signal(i, false);
            }
            self.restart(i).await;
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
