//! The system under test of one run: our node (one or three processes) or a peer server,
//! with the pids whose CPU counts as "server" and a way to prepare rooms on it.

use crate::adapters::Target;
use crate::gen::ConnSpec;
use crate::ournode::{NodeOptions, OurNode};
use crate::peers::{Installed, Peer, PeerServer};
use crate::setup::{self, Room};

/// Which system a run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    Ours {
        quic: bool,
    },
    /// Three of our nodes, clients spread over them (WebSocket).
    Cluster3,
    Peer(Peer),
}

impl System {
    pub fn name(&self) -> &'static str {
        match self {
            System::Ours { quic: false } => "chatsdk-ws",
            System::Ours { quic: true } => "chatsdk-quic",
            System::Cluster3 => "chatsdk-3node",
            System::Peer(Peer::Ws) => "ws",
            System::Peer(Peer::Socketio) => "socketio",
            System::Peer(Peer::Nats) => "nats",
        }
    }
}

/// A started system.
pub struct Sut {
    pub system: System,
    pub target: Target,
    pub nodes: Vec<OurNode>,
    pub peer: Option<PeerServer>,
}

impl Sut {
    /// Starts `system` (a cluster unpinned, see [`Sut::cluster3`]).
    pub async fn launch(
        system: System,
        installed: Option<&Installed>,
        cpus: Option<&[usize]>,
    ) -> anyhow::Result<Sut> {
        match system {
            System::Cluster3 => Sut::cluster3(None).await,
            other => Sut::start(other, installed, cpus),
        }
    }

    pub fn start(
        system: System,
        installed: Option<&Installed>,
        cpus: Option<&[usize]>,
    ) -> anyhow::Result<Sut> {
        match system {
            System::Ours { quic } => {
                let node = OurNode::start(&NodeOptions {
                    join: None,
                    cpus: cpus.map(<[usize]>::to_vec),
                    retention_every_s: None,
                    access_ttl_s: None,
                })?;
                let target = if quic {
                    Target::OursQuic {
                        addr: node
                            .info
                            .quic
                            .ok_or_else(|| anyhow::anyhow!("the node has no quic endpoint"))?,
                        cert: node.info.quic_cert.clone().unwrap_or_default(),
                    }
                } else {
                    Target::OursWs {
                        http: node.info.http,
                    }
                };
                Ok(Sut {
                    system,
                    target,
                    nodes: vec![node],
                    peer: None,
                })
            }
            System::Cluster3 => anyhow::bail!("a cluster starts with Sut::cluster3"),
            System::Peer(p) => {
                let inst = installed.ok_or_else(|| anyhow::anyhow!("peers are not installed"))?;
                let server = PeerServer::start(p, inst, cpus)?;
                Ok(Sut {
                    system,
                    target: server.target.clone(),
                    nodes: Vec::new(),
                    peer: Some(server),
                })
            }
        }
    }

    /// Three of our nodes in one cluster (the first bootstraps, the others join), over
    /// WebSocket, once every node answers `/ready`.
    ///
    /// Scenarios start it unpinned (`cpus: None`): three nodes pinned to one core of two
    /// would measure that core's time-slicing, not the cluster.
    pub async fn cluster3(cpus: Option<&[usize]>) -> anyhow::Result<Sut> {
        let opts = NodeOptions {
            join: None,
            cpus: cpus.map(<[usize]>::to_vec),
            retention_every_s: None,
            access_ttl_s: None,
        };
        let first = OurNode::start(&opts)?;
        let token = first
            .info
            .join_token
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the first node printed no join token"))?;
        let join = NodeOptions {
            join: Some((first.info.cluster_addr, token)),
            cpus: cpus.map(<[usize]>::to_vec),
            retention_every_s: None,
            access_ttl_s: None,
        };
        let mut nodes = vec![first];
        for _ in 0..2 {
            nodes.push(OurNode::start(&join)?);
        }
        let http = reqwest::Client::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        for n in &nodes {
            loop {
                let ok = http
                    .get(format!("http://{}/ready", n.info.http))
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                if ok {
                    break;
                }
                anyhow::ensure!(
                    std::time::Instant::now() < deadline,
                    "node {} not ready after 60 s",
                    n.info.http
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        // Placement moves replicas and leaders onto the new nodes after they join; measure
        // only once leadership has been still for 3 s with every node leading something.
        let settle_by = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut last = Vec::new();
        let mut still_since = std::time::Instant::now();
        loop {
            let now: Vec<std::collections::BTreeSet<u32>> = nodes
                .iter()
                .map(|n| n.leads.lock().map(|l| l.clone()).unwrap_or_default())
                .collect();
            if now != last {
                last = now;
                still_since = std::time::Instant::now();
            } else if still_since.elapsed() >= std::time::Duration::from_secs(3)
                && last.iter().all(|l| !l.is_empty())
            {
                break;
            }
            anyhow::ensure!(
                std::time::Instant::now() < settle_by,
                "cluster leadership did not settle"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // Joined nodes carry the first node's app and key.
        let (app, key) = (nodes[0].info.app_id.clone(), nodes[0].info.api_key.clone());
        for n in nodes.iter_mut().skip(1) {
            n.info.app_id = app.clone();
            n.info.api_key = key.clone();
        }
        Ok(Sut {
            system: System::Ours { quic: false },
            target: Target::OursWs {
                http: nodes[0].info.http,
            },
            nodes,
            peer: None,
        })
    }

    /// Where clients of the `i`-th connection go: spread over a cluster's nodes.
    pub fn target_for(&self, i: usize) -> Target {
        match (&self.target, self.nodes.len()) {
            (Target::OursWs { .. }, n) if n > 1 => Target::OursWs {
                http: self.nodes[i % n].info.http,
            },
            (t, _) => t.clone(),
        }
    }

    /// Server process ids.
    pub fn pids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.nodes.iter().map(OurNode::pid).collect();
        if let Some(p) = &self.peer {
            v.push(p.pid());
        }
        v
    }

    /// One connection each for `n` sessions that subscribe to something of their own: on our
    /// server users `<tag>-<i>` and their `user:` channels (no membership setup needed), on a
    /// peer 100 rooms in turn.
    pub async fn session_conns(&self, tag: &str, n: usize) -> anyhow::Result<Vec<ConnSpec>> {
        Ok(match self.nodes.first() {
            Some(node) => setup::users(&node.info, tag, n)
                .await?
                .into_iter()
                .map(|(id, _, ws)| ConnSpec {
                    token: Some(ws),
                    room: format!("user:{}:{id}", node.info.app_id),
                    room_id: id,
                })
                .collect(),
            None => (0..n)
                .map(|i| ConnSpec {
                    token: None,
                    room: format!("room.{}", i % 100),
                    room_id: String::new(),
                })
                .collect(),
        })
    }

    /// Prepares `rooms` × (`members` subscribers + `publishers`).
    pub async fn rooms(
        &self,
        tag: &str,
        rooms: usize,
        members: usize,
        publishers: usize,
    ) -> anyhow::Result<Vec<Room>> {
        match self.nodes.first() {
            Some(n) => setup::rooms(&n.info, tag, rooms, members, publishers).await,
            None => Ok(setup::peer_rooms(rooms, members, publishers)),
        }
    }

    /// Stops everything.
    pub fn stop(self) {
        for n in self.nodes {
            n.stop();
        }
    }
}
