//! NATS JetStream as the durable peer of the `durable` scenario: nats-server (the binary that
//! `bench/peers/install.sh` installs) started with JetStream on file storage and
//! `sync_interval: always`, so every acknowledged publish has been fsynced, the same promise
//! our acknowledged send makes; and a client that speaks the core NATS protocol over TCP
//! itself (INFO, CONNECT, SUB to an inbox, PUB with a reply subject, MSG/HMSG back), with
//! many requests in flight on one connection, so no client library's cost lands on its side.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::adapters::nats::{self, Op, Parser};
use crate::adapters::str_field;
use crate::peers::{self, Installed};

/// Frames queued for one connection's writer before requests wait.
const WRITE_QUEUE: usize = 1024;
/// Bytes the writer gathers from its queue into one write.
const WRITE_BATCH: usize = 64 * 1024;
/// Time allowed for the handshake, and for any request's answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The nats-server configuration: core listener on loopback `port`, JetStream with its store
/// in `store_dir`, fsync before every acknowledgement; with `seat`, one server of a cluster.
pub fn config(store_dir: &std::path::Path, port: u16, seat: Option<&Seat>) -> String {
    let mut c = format!(
        "host: 127.0.0.1\nport: {port}\njetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n",
        store_dir.display()
    );
    if let Some(seat) = seat {
        let routes: Vec<String> = seat
            .peers
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect();
        c.push_str(&format!(
            "server_name: {}\ncluster {{\n  name: bench\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
            seat.name,
            seat.port,
            routes.join(", ")
        ));
    }
    c
}

/// One server's place in a JetStream cluster: its name, its route port and the other
/// servers' route ports.
pub struct Seat {
    pub name: String,
    pub port: u16,
    pub peers: Vec<u16>,
}

/// Longest wait for a new cluster to elect its JetStream leader and take streams.
const CLUSTER_READY: Duration = Duration::from_secs(60);

/// A running nats-server with JetStream, its store in a temp dir removed when dropped.
pub struct JetStream {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl JetStream {
    /// Starts nats-server on 127.0.0.1, pinned to `cpus` when given (as our node is).
    pub fn start(inst: &Installed, cpus: Option<&[usize]>) -> anyhow::Result<JetStream> {
        JetStream::spawn(inst, cpus, peers::free_port()?, None)
    }

    /// Starts `n` nats-servers on 127.0.0.1 routed into one JetStream cluster, unpinned as our
    /// cluster is. Its streams take writes once it has elected a leader (see
    /// [`Client::create_stream`]).
    pub fn start_cluster(inst: &Installed, n: usize) -> anyhow::Result<Vec<JetStream>> {
        // Each port is found free and released, so two picks may coincide: pick until all
        // differ (a clash would let one server's check find another's listener).
        let mut picked: Vec<u16> = Vec::with_capacity(2 * n);
        while picked.len() < 2 * n {
            let port = peers::free_port()?;
            if !picked.contains(&port) {
                picked.push(port);
            }
        }
        let (ports, routes) = picked.split_at(n);
        (0..n)
            .map(|i| {
                let seat = Seat {
                    name: format!("n{i}"),
                    port: routes[i],
                    peers: routes
                        .iter()
                        .enumerate()
                        .filter(|&(j, _)| j != i)
                        .map(|(_, p)| *p)
                        .collect(),
                };
                JetStream::spawn(inst, None, ports[i], Some(&seat))
            })
            .collect()
    }

    fn spawn(
        inst: &Installed,
        cpus: Option<&[usize]>,
        port: u16,
        seat: Option<&Seat>,
    ) -> anyhow::Result<JetStream> {
        let dir = tempfile::Builder::new()
            .prefix("chatsdk-bench-js-")
            .tempdir()?;
        let conf = dir.path().join("jetstream.conf");
        std::fs::write(&conf, config(&dir.path().join("store"), port, seat))?;
        let program = inst.get("NATS_SERVER")?;
        let mut cmd = match cpus {
            Some(c) => {
                let mut cmd = Command::new("taskset");
                cmd.arg("-c").arg(crate::ournode::cpu_list(c)).arg(program);
                cmd
            }
            None => Command::new(program),
        };
        let child = cmd
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let js = JetStream {
            child,
            addr,
            _dir: dir,
        };
        peers::wait_listening(addr)?;
        Ok(js)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for JetStream {
    fn drop(&mut self) {
        peers::stop(&mut self.child);
    }
}

type Answer = oneshot::Sender<Result<Bytes, String>>;

/// Requests waiting for their answer, by the id at the end of their reply subject.
#[derive(Default)]
struct Pending {
    map: Mutex<HashMap<u64, Answer>>,
    /// Set once the connection has ended: nothing more will be answered.
    closed: AtomicBool,
}

impl Pending {
    fn take(&self, id: u64) -> Option<Answer> {
        self.map.lock().ok()?.remove(&id)
    }

    /// Ends the connection's requests with `why`.
    fn fail_all(&self, why: &str) {
        self.closed.store(true, Ordering::SeqCst);
        let drained: Vec<Answer> = match self.map.lock() {
            Ok(mut m) => m.drain().map(|(_, a)| a).collect(),
            Err(_) => Vec::new(),
        };
        for a in drained {
            let _ = a.send(Err(why.to_string()));
        }
    }
}

/// One client connection; clones share it.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    out: mpsc::Sender<Bytes>,
    pending: Arc<Pending>,
    next: AtomicU64,
    /// Reply subjects are `<inbox>.<id>`.
    inbox: String,
    reader: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The writer ends with the last sender; the reader would wait for the server.
        self.reader.abort();
    }
}

impl Client {
    /// Connects to nats-server at `addr`, subscribes to its own inbox and waits for the
    /// server's PONG, so the subscription is in place before the first request.
    pub async fn connect(addr: SocketAddr, name: &str) -> anyhow::Result<Client> {
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("connecting to nats-server at {addr} timed out"))??;
        stream.set_nodelay(true)?;
        let (mut rd, mut wr) = stream.into_split();
        let mut parser = Parser::default();
        let inbox = format!("_INBOX.{name}");
        let hello = format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"protocol\":1,\"headers\":true,\
             \"no_responders\":true,\"name\":\"{name}\"}}\r\nSUB {inbox}.* 1\r\nPING\r\n"
        );
        let handshake = async {
            expect(&mut rd, &mut parser, |op| matches!(op, Op::Info)).await?;
            wr.write_all(hello.as_bytes()).await?;
            expect(&mut rd, &mut parser, |op| matches!(op, Op::Pong)).await
        };
        tokio::time::timeout(TIMEOUT, handshake)
            .await
            .map_err(|_| anyhow!("nats handshake timed out"))??;
        let (out, queue) = mpsc::channel(WRITE_QUEUE);
        let pending = Arc::new(Pending::default());
        tokio::spawn(write_loop(wr, queue, pending.clone()));
        let reader = tokio::spawn(read_loop(
            rd,
            parser,
            out.downgrade(),
            pending.clone(),
            format!("{inbox}."),
        ));
        Ok(Client {
            inner: Arc::new(Inner {
                out,
                pending,
                next: AtomicU64::new(1),
                inbox,
                reader,
            }),
        })
    }

    /// Publishes `payload` to `subject` with a reply subject and returns the reply's payload.
    pub async fn request(&self, subject: &str, payload: &[u8]) -> anyhow::Result<Bytes> {
        self.request_within(subject, payload, TIMEOUT).await
    }

    /// [`Client::request`], giving up after `timeout`.
    async fn request_within(
        &self,
        subject: &str,
        payload: &[u8],
        timeout: Duration,
    ) -> anyhow::Result<Bytes> {
        let inner = &self.inner;
        let id = inner.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        inner
            .pending
            .map
            .lock()
            .map_err(|_| anyhow!("pending map poisoned"))?
            .insert(id, tx);
        if inner.pending.closed.load(Ordering::SeqCst) {
            inner.pending.take(id);
            bail!("the nats connection is closed");
        }
        let mut frame =
            format!("PUB {subject} {}.{id} {}\r\n", inner.inbox, payload.len()).into_bytes();
        frame.extend_from_slice(payload);
        frame.extend_from_slice(b"\r\n");
        let answered = async {
            inner
                .out
                .send(Bytes::from(frame))
                .await
                .map_err(|_| anyhow!("the nats connection is closed"))?;
            rx.await
                .map_err(|_| anyhow!("the nats connection is closed"))?
                .map_err(|e| anyhow!(e))
        };
        match tokio::time::timeout(timeout, answered).await {
            Ok(r) => r,
            Err(_) => {
                inner.pending.take(id);
                bail!("no answer to a publish to {subject} within {timeout:?}")
            }
        }
    }

    /// A JetStream publish: returns once the PubAck (`{"stream":..,"seq":..}`) arrived.
    pub async fn publish(&self, subject: &str, payload: &[u8]) -> anyhow::Result<()> {
        let ack = self.request(subject, payload).await?;
        match pub_ack_error(&ack) {
            None => Ok(()),
            Some(e) => bail!("publish to {subject} refused: {e}"),
        }
    }

    /// Creates stream `name` capturing `subject`, on file storage, with `replicas` copies.
    /// A new cluster may not answer yet: it has no JetStream leader ("temporarily
    /// unavailable"), or the leader does not know of this connection's inbox yet (interest
    /// travels between servers asynchronously, so the answer is dropped). Either is asked again
    /// until [`CLUSTER_READY`] has passed.
    pub async fn create_stream(
        &self,
        name: &str,
        subject: &str,
        replicas: usize,
    ) -> anyhow::Result<()> {
        let config = serde_json::json!({
            "name": name,
            "subjects": [subject],
            "storage": "file",
            "retention": "limits",
            "discard": "old",
            "num_replicas": replicas,
        });
        let deadline = tokio::time::Instant::now() + CLUSTER_READY;
        loop {
            let reply = self
                .request_within(
                    &format!("$JS.API.STREAM.CREATE.{name}"),
                    config.to_string().as_bytes(),
                    Duration::from_secs(2),
                )
                .await;
            let why = match reply {
                Ok(r) if !contains(&r, b"\"error\"") && contains(&r, b"\"config\"") => {
                    return Ok(())
                }
                Ok(r) => String::from_utf8_lossy(&r[..r.len().min(300)]).into_owned(),
                Err(e) => e.to_string(),
            };
            let settling = why.contains("temporarily unavailable")
                || why.contains("no responders")
                || why.contains("no answer")
                || why.contains("insufficient resources");
            if !settling || tokio::time::Instant::now() >= deadline {
                bail!("creating stream {name}: {why}");
            }
            // The cluster is still electing: ask again shortly.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Why a PubAck is not one (`None`: it acknowledges a stored message).
pub fn pub_ack_error(ack: &[u8]) -> Option<String> {
    if contains(ack, b"\"error\"") {
        return Some(
            str_field(ack, "description")
                .unwrap_or_else(|| String::from_utf8_lossy(ack).into_owned()),
        );
    }
    if contains(ack, b"\"stream\"") && contains(ack, b"\"seq\":") {
        return None;
    }
    Some(format!(
        "not a PubAck: {}",
        String::from_utf8_lossy(&ack[..ack.len().min(200)])
    ))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Reads until an op that `want` accepts; `-ERR` and the end of the stream are errors.
async fn expect(
    rd: &mut OwnedReadHalf,
    parser: &mut Parser,
    want: impl Fn(&Op) -> bool,
) -> anyhow::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        while let Some(op) = parser.next_op()? {
            if let Op::Err(e) = &op {
                bail!("nats-server: {e}");
            }
            if want(&op) {
                return Ok(());
            }
        }
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            bail!("nats-server closed the connection in the handshake");
        }
        parser.feed(&buf[..n]);
    }
}

/// Writes queued frames, several per write when they queue up (as NATS clients buffer).
async fn write_loop(
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    mut queue: mpsc::Receiver<Bytes>,
    pending: Arc<Pending>,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while let Some(first) = queue.recv().await {
        batch.clear();
        batch.extend_from_slice(&first);
        while batch.len() < WRITE_BATCH {
            match queue.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if let Err(e) = wr.write_all(&batch).await {
            pending.fail_all(&format!("writing to nats-server: {e}"));
            return;
        }
    }
}

/// Reads the server's messages: answers to requests by the id in their subject, PONG to PING.
async fn read_loop(
    mut rd: OwnedReadHalf,
    mut parser: Parser,
    out: mpsc::WeakSender<Bytes>,
    pending: Arc<Pending>,
    prefix: String,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let why = loop {
        loop {
            let op = match parser.next_op() {
                Ok(Some(op)) => op,
                Ok(None) => break,
                Err(e) => {
                    pending.fail_all(&format!("reading nats-server: {e}"));
                    return;
                }
            };
            match op {
                Op::Msg {
                    subject,
                    headers,
                    payload,
                    ..
                } => {
                    let id = subject
                        .strip_prefix(prefix.as_bytes())
                        .and_then(|s| std::str::from_utf8(s).ok())
                        .and_then(|s| s.parse::<u64>().ok());
                    if let Some(answer) = id.and_then(|id| pending.take(id)) {
                        let result = match headers.as_deref().and_then(nats::status) {
                            Some(503) => Err("no responders: no stream takes the subject".into()),
                            Some(code) if code >= 300 => Err(format!("status {code}")),
                            _ => Ok(payload),
                        };
                        let _ = answer.send(result);
                    }
                }
                Op::Ping => {
                    if let Some(out) = out.upgrade() {
                        let _ = out.send(Bytes::from_static(b"PONG\r\n")).await;
                    }
                }
                Op::Err(e) => {
                    pending.fail_all(&format!("nats-server: {e}"));
                    return;
                }
                Op::Info | Op::Pong | Op::Ok => {}
            }
        }
        match rd.read(&mut buf).await {
            Ok(0) => break "nats-server closed the connection".to_string(),
            Ok(n) => parser.feed(&buf[..n]),
            Err(e) => break format!("reading nats-server: {e}"),
        }
    };
    pending.fail_all(&why);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pub_acks() {
        assert_eq!(pub_ack_error(br#"{"stream":"chat-0","seq":12}"#), None);
        assert_eq!(
            pub_ack_error(br#"{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}"#),
            Some("maximum messages exceeded".into())
        );
        assert!(pub_ack_error(b"hello").is_some());
        let c = config(std::path::Path::new("/tmp/x/store"), 4222, None);
        assert!(c.contains("sync_interval: always") && c.contains("store_dir: \"/tmp/x/store\""));
        assert!(!c.contains("cluster"));
        let seat = Seat {
            name: "n1".into(),
            port: 6001,
            peers: vec![6000, 6002],
        };
        let c = config(std::path::Path::new("/tmp/x/store"), 4223, Some(&seat));
        assert!(c.contains("server_name: n1") && c.contains("listen: 127.0.0.1:6001"));
        assert!(c.contains("routes: [nats-route://127.0.0.1:6000, nats-route://127.0.0.1:6002]"));
    }
}
