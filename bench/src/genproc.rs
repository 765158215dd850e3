//! The coordinator's handle on generator processes: spawn (pinned), hand over the spec, send
//! commands, read reports with deadlines.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, Context};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::gen::{Cmd, GenSpec, Out};

/// A running generator process.
pub struct Gen {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Gen {
    /// Starts a generator for `spec`, pinned to `cpus` when given.
    pub async fn spawn(spec: &GenSpec, cpus: Option<&[usize]>) -> anyhow::Result<Gen> {
        let exe = std::env::current_exe()?;
        let mut cmd = match cpus {
            Some(c) => {
                let mut cmd = Command::new("taskset");
                cmd.arg("-c").arg(crate::ournode::cpu_list(c)).arg(exe);
                cmd
            }
            None => Command::new(exe),
        };
        let mut child = cmd
            .arg("gen")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawning a generator")?;
        let mut stdin = child.stdin.take().context("generator stdin")?;
        let stdout = child.stdout.take().context("generator stdout")?;
        let mut line = serde_json::to_vec(spec)?;
        line.push(b'\n');
        stdin.write_all(&line).await?;
        stdin.flush().await?;
        Ok(Gen {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    pub async fn send(&mut self, cmd: &Cmd) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(cmd)?;
        line.push(b'\n');
        self.stdin.write_all(&line).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    /// The next report, within `timeout`.
    pub async fn recv(&mut self, timeout: Duration) -> anyhow::Result<Out> {
        loop {
            let line = tokio::time::timeout(timeout, self.lines.next_line())
                .await
                .map_err(|_| anyhow!("generator {} silent for {timeout:?}", self.pid()))??
                .ok_or_else(|| anyhow!("generator {} exited", self.pid()))?;
            if let Ok(out) = serde_json::from_str::<Out>(&line) {
                return Ok(out);
            }
        }
    }

    /// Closes stdin (the generator closes its connections and exits) and waits.
    pub async fn finish(mut self) {
        let _ = self.stdin.shutdown().await;
        drop(self.stdin);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}
