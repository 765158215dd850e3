//! What the harness reads about a process from `/proc`: CPU time, resident memory, read/write
//! syscalls and context switches, plus the kernel's slab memory; and CPU pinning.
//!
//! Server cost is measured from outside the server, over exactly the measured window, by
//! differencing two [`Sample`]s of its process.

use std::fs;

/// Counters of one process at one instant.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// User + system CPU time, microseconds.
    pub cpu_us: u64,
    /// Resident set, bytes.
    pub rss: u64,
    /// Read-family and write-family syscalls (`/proc/<pid>/io` `syscr` + `syscw`).
    pub syscalls: u64,
    /// Voluntary + involuntary context switches summed over the process's threads.
    pub ctx_switches: u64,
}

/// The difference between two samples of one process.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Delta {
    pub cpu_us: u64,
    pub syscalls: u64,
    pub ctx_switches: u64,
}

impl Sample {
    /// Reads `pid`'s counters; missing files (a process that exited) read as zero.
    pub fn of(pid: u32) -> Sample {
        let ticks = clock_ticks();
        let cpu_us = fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                // Fields after the parenthesised command name; utime and stime are 14 and 15.
                let rest = &s[s.rfind(')')? + 2..];
                let f: Vec<&str> = rest.split_whitespace().collect();
                let utime: u64 = f.get(11)?.parse().ok()?;
                let stime: u64 = f.get(12)?.parse().ok()?;
                Some((utime + stime) * 1_000_000 / ticks)
            })
            .unwrap_or(0);
        let rss = status_field(&format!("/proc/{pid}/status"), "VmRSS:").unwrap_or(0) * 1024;
        let io = fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
        let syscalls = field(&io, "syscr:").unwrap_or(0) + field(&io, "syscw:").unwrap_or(0);
        let mut ctx_switches = 0;
        if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
            for t in tasks.flatten() {
                let path = t.path().join("status");
                let s = fs::read_to_string(path).unwrap_or_default();
                ctx_switches += field(&s, "voluntary_ctxt_switches:").unwrap_or(0)
                    + field(&s, "nonvoluntary_ctxt_switches:").unwrap_or(0);
            }
        }
        Sample {
            cpu_us,
            rss,
            syscalls,
            ctx_switches,
        }
    }

    /// `later - self`.
    pub fn delta(&self, later: &Sample) -> Delta {
        Delta {
            cpu_us: later.cpu_us.saturating_sub(self.cpu_us),
            syscalls: later.syscalls.saturating_sub(self.syscalls),
            ctx_switches: later.ctx_switches.saturating_sub(self.ctx_switches),
        }
    }
}

/// Sums samples of several processes (a cluster).
pub fn sum(samples: &[Sample]) -> Sample {
    samples.iter().fold(Sample::default(), |a, s| Sample {
        cpu_us: a.cpu_us + s.cpu_us,
        rss: a.rss + s.rss,
        syscalls: a.syscalls + s.syscalls,
        ctx_switches: a.ctx_switches + s.ctx_switches,
    })
}

/// The kernel's slab memory (bytes): socket buffers and socket structures live there, so its
/// growth per connection is the kernel-side cost of a connection.
pub fn kernel_slab() -> u64 {
    status_field("/proc/meminfo", "Slab:").unwrap_or(0) * 1024
}

/// Pins process `pid` to `cpus` with `taskset` (util-linux; the workspace forbids `unsafe`, so
/// no direct `sched_setaffinity`). Errors are reported, not fatal: a run records whether it was
/// pinned.
pub fn pin(pid: u32, cpus: &[usize]) -> std::io::Result<()> {
    let list: Vec<String> = cpus.iter().map(|c| c.to_string()).collect();
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &list.join(","), &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "taskset exited with {status}"
        )))
    }
}

/// CPUs this process may run on.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Kernel clock ticks per second (`getconf CLK_TCK`; 100 on every mainstream Linux build).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    })
}

fn status_field(path: &str, name: &str) -> Option<u64> {
    field(&fs::read_to_string(path).ok()?, name)
}

fn field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Counts the syscalls of `pids` over `window` with `perf stat` (tracepoint
/// `raw_syscalls:sys_enter`), in the background. `None` when perf is missing or not allowed.
pub struct SyscallCount(Option<std::process::Child>);

impl SyscallCount {
    pub fn start(pids: &[u32], window: std::time::Duration) -> SyscallCount {
        let list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
        let child = std::process::Command::new("perf")
            .args([
                "stat",
                "-x,",
                "-e",
                "raw_syscalls:sys_enter",
                "-p",
                &list.join(","),
                "--",
            ])
            .arg("sleep")
            .arg(format!("{:.3}", window.as_secs_f64()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .ok();
        SyscallCount(child)
    }

    /// Waits for the window to end and returns the count.
    pub fn finish(self) -> Option<u64> {
        let out = self.0?.wait_with_output().ok()?;
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .find(|l| l.contains("raw_syscalls:sys_enter"))?
            .split(',')
            .next()?
            .trim()
            .parse()
            .ok()
    }
}

/// Raises this process's open-file soft limit to its hard limit (children inherit it), with
/// `prlimit` (util-linux; no `unsafe` here). Returns the soft limit now in force.
pub fn raise_nofile() -> Option<u64> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard): (u64, u64) = (f.get(3)?.parse().ok()?, f.get(4)?.parse().ok()?);
    if soft < hard {
        let ok = std::process::Command::new("prlimit")
            .args([
                "--pid",
                &std::process::id().to_string(),
                &format!("--nofile={hard}:{hard}"),
            ])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        return Some(if ok { hard } else { soft });
    }
    Some(soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_cpu_memory_and_syscalls() {
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let s = Sample::of(std::process::id());
        assert!(s.rss > 0);
        assert!(s.syscalls > 0);
        assert!(s.ctx_switches > 0);
        assert!(kernel_slab() > 0);
    }
}
