//! A cluster of three OS processes (the `chatsdk-cluster-node` tool) on 127.0.0.1: one is killed
//! with SIGKILL while writes are in flight on the others, no acknowledged write is lost, and the
//! killed node restarts from its directory and catches up.

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
    dir: Option<tempfile::TempDir>,
}

impl NodeProcess {
    fn spawn(join: Option<(&str, &str)>) -> NodeProcess {
        Self::spawn_in(tempfile::tempdir().unwrap(), join)
    }

    /// Starts the node again from the directory of a process that was killed.
    fn restart(mut self) -> NodeProcess {
        let dir = self.dir.take().expect("node directory");
        Self::spawn_in(dir, None)
    }

    fn spawn_in(dir: tempfile::TempDir, join: Option<(&str, &str)>) -> NodeProcess {
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
            dir: Some(dir),
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
    // Writes are in flight on both survivors when b dies: each runs on its own thread.
    let (mut a, mut c) = std::thread::scope(|scope| {
        let writer_a = scope.spawn(move || {
            let mut ok = Vec::new();
            for i in (100..300).step_by(2) {
                if put(&mut a, i) {
                    ok.push(i);
                }
            }
            (a, ok)
        });
        let writer_c = scope.spawn(move || {
            let mut ok = Vec::new();
            for i in (101..300).step_by(2) {
                if put(&mut c, i) {
                    ok.push(i);
                }
            }
            (c, ok)
        });
        // SIGKILL: no shutdown, no flush beyond what acknowledgements already required.
        b.child.kill().expect("kill node b");
        b.child.wait().expect("reap node b");
        let (a, ok_a) = writer_a.join().expect("writer a");
        let (c, ok_c) = writer_c.join().expect("writer c");
        acked.extend(ok_a);
        acked.extend(ok_c);
        (a, c)
    });
    assert!(
        acked.len() >= 250,
        "too few writes acknowledged around the kill: {}",
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

    // b comes back from its directory (after SIGKILL) and catches up on everything.
    let mut b = b.restart();
    for shard in 1..=SHARDS {
        let target = a.call(&format!("applied {shard}"));
        wait_until("restarted node catches up", || {
            let mine = b.call(&format!("applied {shard}"));
            mine.starts_with("applied") && applied(&mine) >= applied(&target)
        });
    }
    for i in &acked {
        let shard = shard_for("app", &format!("ch{i}"), SHARDS);
        assert_eq!(
            b.call(&format!("local {shard} key{i}")),
            format!("val value{i}")
        );
    }
    assert_eq!(a.call("quit"), "bye");
    assert_eq!(b.call("quit"), "bye");
    assert_eq!(c.call("quit"), "bye");
}

fn applied(line: &str) -> u64 {
    line.trim_start_matches("applied ").parse().unwrap_or(0)
}
