//! `chatsdk-cluster-node`: one cluster node with the test key-value state machine, driven by
//! line commands on stdin. It exists so tests can run a cluster as separate OS processes (and
//! kill one with SIGKILL); the product binary is `chatsdk`.
//!
//! Usage: `chatsdk-cluster-node --dir DIR [--listen ADDR] [--shards N] [--join ADDR --token T]`.
//! On start it prints `ready <node id> <cluster addr> <join token or ->`. Commands, one per line:
//! - `put <group> <key> <value>` → `ok` or `err <reason>` (acknowledged once committed)
//! - `get <group> <key>` → `val <value>`, `none` or `err <reason>` (linearizable read)
//! - `local <group> <key>` → like `get`, but reads this node's replica as it is (no barrier)
//! - `applied <group>` → `applied <index>`: the last index this node's replica applied
//! - `status` → `status active=<n> settled=<bool> balanced=<bool>`
//! - `quit` → shuts down gracefully, then prints `bye`.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use chatsdk_cluster::placement::place;
use chatsdk_cluster::testkit::KvApplier;
use chatsdk_cluster::{ClusterConfig, ClusterNode, StartMode};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    dir: PathBuf,
    listen: SocketAddr,
    shards: u32,
    join: Option<(SocketAddr, String)>,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut dir = None;
    let mut listen: SocketAddr = "127.0.0.1:0".parse()?;
    let mut shards = 16;
    let mut join_addr = None;
    let mut token = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--listen" => listen = value()?.parse()?,
            "--shards" => shards = value()?.parse()?,
            "--join" => join_addr = Some(value()?.parse()?),
            "--token" => token = Some(value()?),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let join = match (join_addr, token) {
        (Some(addr), Some(token)) => Some((addr, token)),
        (None, None) => None,
        _ => return Err("--join and --token go together".into()),
    };
    Ok(Args {
        dir: dir.ok_or("--dir is required")?,
        listen,
        shards,
        join,
    })
}

fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<(), BoxError> {
    let mut config = ClusterConfig::new(&args.dir, args.listen);
    config.shards = args.shards;
    let mode = match args.join {
        Some((addr, token)) => StartMode::Join { addr, token },
        None if args.dir.join("db").exists() => StartMode::Existing,
        None => StartMode::Bootstrap,
    };
    let node = ClusterNode::start(config, mode, Arc::new(KvApplier), None).await?;
    // A token for the test's other nodes: a day, any number of joins.
    let token = node
        .mint_join_token(std::time::Duration::from_secs(24 * 3600), false)
        .await
        .map_or_else(|_| "-".to_string(), |(token, _)| token);
    println!("ready {} {} {token}", node.id(), node.addr());
    std::io::stdout().flush()?;

    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = rx.recv().await {
        let reply = match execute(&node, &line).await {
            Ok(Some(reply)) => reply,
            Ok(None) => break,
            Err(e) => format!("err {e}"),
        };
        println!("{reply}");
        std::io::stdout().flush()?;
    }
    node.shutdown().await;
    println!("bye");
    Ok(())
}

async fn execute(node: &ClusterNode, line: &str) -> Result<Option<String>, BoxError> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let reply = match words.as_slice() {
        ["put", group, key, value] => {
            node.propose(group.parse()?, KvApplier::put(key, value))
                .await?;
            "ok".to_string()
        }
        ["get", group, key] => {
            let reader = node.linearizable_reader(group.parse()?).await?;
            match reader.get(key.as_bytes())? {
                Some(v) => format!("val {}", String::from_utf8_lossy(&v)),
                None => "none".to_string(),
            }
        }
        ["local", group, key] => {
            let reader = node
                .local_reader(group.parse()?)
                .ok_or("no local replica of that group")?;
            match reader.get(key.as_bytes())? {
                Some(v) => format!("val {}", String::from_utf8_lossy(&v)),
                None => "none".to_string(),
            }
        }
        ["applied", group] => {
            let metrics = node
                .group_metrics(group.parse()?)
                .ok_or("no local replica of that group")?;
            let applied = metrics.borrow().last_applied.map(|l| l.index).unwrap_or(0);
            format!("applied {applied}")
        }
        ["status"] => {
            let state = node.meta_state();
            let active = state.active_nodes();
            let map = state.placement_map();
            let settled = state.shard_map.values().all(|r| r.settled);
            let balanced = settled && place(&active, &map, state.replication) == map;
            format!(
                "status active={} settled={settled} balanced={balanced}",
                active.len()
            )
        }
        ["quit"] => return Ok(None),
        _ => return Err(format!("unknown command {line:?}").into()),
    };
    Ok(Some(reply))
}
