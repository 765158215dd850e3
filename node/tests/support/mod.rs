//! `chatsdk serve` processes for the tests that run the binary as a user does.

#![allow(dead_code)] // each test binary uses part of it

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_chatsdk");
pub(crate) const WAIT: Duration = Duration::from_secs(60);
pub(crate) const ADMIN_KEY: &str = "admin-key-of-the-browser-tests-0123456789";

/// A join token minted by `chatsdk cluster join-token` against the node at `base` (an hour,
/// any number of joins); what it printed on stderr must say when it expires.
pub(crate) fn mint_join_token(base: &str) -> String {
    let out = Command::new(BIN)
        .args([
            "cluster",
            "join-token",
            "--url",
            base,
            "--admin-key",
            ADMIN_KEY,
        ])
        .output()
        .expect("chatsdk cluster join-token runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("expires at"), "{err}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(token.starts_with("chatsdk-join-v2."), "{token}");
    token
}

/// `support/failsync.c` built as a shared library (once per test process, with `cc`, the
/// compiler that links Rust programs): preloaded into a node (`LD_PRELOAD`), it fails every
/// `fsync`, `fdatasync` and `sync_file_range` with EIO once the file named by the node's
/// `FAILSYNC_TRIGGER` variable exists.
pub(crate) fn failsync_lib() -> PathBuf {
    static LIB: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, lib) = LIB.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp dir for the shim");
        let lib = dir.path().join("libfailsync.so");
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/failsync.c");
        let out = Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-o"])
            .arg(&lib)
            .arg(src)
            .arg("-ldl")
            .output()
            .expect("cc runs");
        assert!(
            out.status.success(),
            "building the fsync failure shim: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (dir, lib)
    });
    lib.clone()
}

/// A `chatsdk serve` process on ephemeral ports, killed when dropped.
pub(crate) struct Node {
    child: Child,
    lines: mpsc::Receiver<String>,
    pub(crate) seen: Vec<String>,
    dir: Option<tempfile::TempDir>,
}

impl Node {
    pub(crate) fn start(extra: &[&str]) -> Node {
        Node::start_in(tempfile::tempdir().unwrap(), extra)
    }

    /// Starts a node on `dir` (a new one, or one a stopped node left).
    pub(crate) fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Node {
        let mut node = Node::start_at(dir.path(), extra, &[]);
        node.dir = Some(dir);
        node
    }

    /// Starts a node on a directory the test owns, with `env` set over the defaults.
    pub(crate) fn start_at(dir: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Node {
        Node::spawn(Command::new(BIN), dir, extra, env)
    }

    /// [`Node::start_at`] with no file allowed past `kib` KiB (`ulimit -f`, with SIGXFSZ
    /// ignored so that a write past it fails with EFBIG): a disk that stops taking writes.
    pub(crate) fn start_with_file_limit(
        dir: &std::path::Path,
        extra: &[&str],
        env: &[(&str, &str)],
        kib: u64,
    ) -> Node {
        let mut sh = Command::new("sh");
        sh.args([
            "-c",
            &format!("trap '' XFSZ; ulimit -f {kib}; exec \"$0\" \"$@\""),
            BIN,
        ]);
        Node::spawn(sh, dir, extra, env)
    }

    fn spawn(
        mut cmd: Command,
        dir: &std::path::Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Node {
        cmd.args(["serve", "--data-dir"])
            .arg(dir)
            .args(["--http", "127.0.0.1:0", "--cluster-addr", "127.0.0.1:0"])
            .args(["--quic-port", "0"])
            .args(extra);
        for (name, _) in std::env::vars() {
            if name.starts_with("CHATSDK_") {
                cmd.env_remove(name);
            }
        }
        let mut child = cmd
            .env("CHATSDK_LOG", "warn")
            .env("CHATSDK_SERVER__ADMIN_API_KEY", ADMIN_KEY)
            // Tools' own variables share the prefix and must not stop the node.
            .env("CHATSDK_TOKEN", "not-a-config-key")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chatsdk starts");
        // Both streams, line by line, into one channel (logs go to stderr at CHATSDK_LOG=warn).
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let stderr_tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if stderr_tx.send(line).is_err() {
                    return;
                }
            }
        });
        Node {
            child,
            lines,
            seen: Vec::new(),
            dir: None,
        }
    }

    /// Reads output until a line containing `needle`.
    pub(crate) fn until(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?}; output so far: {:#?}", self.seen),
            }
        }
    }

    /// The rest of the first line seen that starts with `prefix`.
    pub(crate) fn value_after(&self, prefix: &str) -> String {
        self.seen
            .iter()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("no {prefix:?} in {:#?}", self.seen))
    }

    /// The node-to-node (QUIC) address it printed, for `--join`.
    pub(crate) fn cluster_addr(&self) -> String {
        self.seen
            .iter()
            .find(|l| l.contains("node-to-node on udp"))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or_else(|| panic!("no cluster address in {:#?}", self.seen))
            .to_string()
    }

    /// The HTTP base URL, once the node is up (it prints its metrics URL last but one).
    pub(crate) fn base(&mut self) -> String {
        self.until("metrics: ");
        let line = self
            .seen
            .iter()
            .find(|l| l.contains("listening on "))
            .unwrap_or_else(|| panic!("no address in {:#?}", self.seen));
        line.split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap()
            .to_string()
    }
}

impl Node {
    /// Sends SIGTERM, waits for a clean exit and hands back the data directory (of a node
    /// started with one).
    pub(crate) fn terminate(mut self) -> tempfile::TempDir {
        self.stop();
        self.dir
            .take()
            .expect("a node started on its own directory")
    }

    /// Waits (at most [`WAIT`]) for the node to exit by itself; its status and everything it
    /// printed.
    pub(crate) fn wait_exit(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the node did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(1)) {
            self.seen.push(l);
        }
        (status, std::mem::take(&mut self.seen))
    }

    /// Sends SIGTERM, waits for a clean exit and hands back everything the node printed.
    pub(crate) fn terminate_output(mut self) -> Vec<String> {
        self.stop();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(1)) {
            self.seen.push(l);
        }
        std::mem::take(&mut self.seen)
    }

    fn stop(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit status {status}");
                break;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
