//! A cluster of three OS processes (the `chatsdk-cluster-node` tool) on 127.0.0.1: one is killed
//! with SIGKILL while writes are in flight, and no acknowledged write is lost.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chatsdk_cluster::shard_for;

const DEADLINE: Duration = Duration::from_secs(60);
const SHARDS: u32 = 4;

/// A node process; killed when dropped so a failing test leaves nothing behind.
struct NodeProcess {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    addr: String,
    token: String,
    _dir: tempfile::TempDir,
}

impl NodeProcess {
    fn spawn(join: Option<(&str, &str)>) -> NodeProcess {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chatsdk-cluster-node"));
        cmd.arg("--dir")
            .arg(dir.path())
            .args(["--shards", &SHARDS.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some((addr, token)) = join {
            cmd.args(["--join", addr, "--token", token]);
        }
        let mut child = cmd.spawn().expect("spawn node process");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let ready = lines.recv_timeout(DEADLINE).expect("node ready line");
        let parts: Vec<&str> = ready.split_whitespace().collect();
        assert_eq!(
            parts.first(),
            Some(&"ready"),
            "unexpected first line {ready:?}"
        );
        NodeProcess {
            child,
            stdin,
            lines,
            addr: parts[2].to_string(),
            token: parts[3].to_string(),
            _dir: dir,
        }
    }

    fn call(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").expect("write command");
        self.stdin.flush().expect("flush command");
        self.lines.recv_timeout(DEADLINE).expect("reply")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        // Polling interval of a condition check, not a synchronisation sleep.
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sigkill_of_one_process_loses_no_acknowledged_write() {
    let mut a = NodeProcess::spawn(None);
    let (addr, token) = (a.addr.clone(), a.token.clone());
    let mut b = NodeProcess::spawn(Some((&addr, &token)));
    let mut c = NodeProcess::spawn(Some((&addr, &token)));
    wait_until("three active nodes, placement carried out", || {
        a.call("status") == "status active=3 settled=true balanced=true"
    });

    let mut acked = Vec::new();
    let put = |node: &mut NodeProcess, i: usize| {
        let shard = shard_for("app", &format!("ch{i}"), SHARDS);
        node.call(&format!("put {shard} key{i} value{i}")) == "ok"
    };
    for i in 0..100 {
        assert!(put(&mut a, i), "write {i} failed before the kill");
        acked.push(i);
    }
    // SIGKILL: no shutdown, no flush beyond what acknowledgements already required.
    b.child.kill().expect("kill node b");
    b.child.wait().expect("reap node b");
    drop(b);
    for i in 100..200 {
        // Writes keep being acknowledged while shards that b led elect new leaders.
        if put(&mut a, i) {
            acked.push(i);
        }
    }
    assert!(
        acked.len() >= 150,
        "too few writes acknowledged after the kill: {}",
        acked.len()
    );
    for i in &acked {
        let shard = shard_for("app", &format!("ch{i}"), SHARDS);
        for node in [&mut a, &mut c] {
            assert_eq!(
                node.call(&format!("get {shard} key{i}")),
                format!("val value{i}")
            );
        }
    }
    assert_eq!(a.call("quit"), "bye");
    assert_eq!(c.call("quit"), "bye");
}
