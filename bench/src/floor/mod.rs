//! Floors: what the pieces a send goes through cost on their own, on this machine, so a
//! server's figures can be read against them.
//!
//! - [`loopback_write_us`]: the kernel's CPU for one small loopback TCP write. Every delivery to
//!   a socket costs at least one such write.
//! - [`sled`]: a durable send's state-machine writes done directly on sled, with no Raft, no
//!   actor and no encoding of ours: the least the embedded store can cost per send.
//! - [`http`]: one REST request and its JSON answer through axum and hyper, with a handler
//!   that does nothing else, and one WebSocket text frame and its answer through
//!   tokio-tungstenite: the least a send can cost on each transport before any chat work.

pub mod http;
pub mod sled;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

/// Writes of `size` bytes measured.
const WRITES: u64 = 200_000;

/// Microseconds of writer-thread CPU per `size`-byte write to a loopback TCP socket whose
/// reader keeps up.
pub fn loopback_write_us(size: usize) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 64 * 1024];
        while s.read(&mut buf)? > 0 {}
        Ok(())
    });
    let mut w = TcpStream::connect(addr)?;
    w.set_nodelay(true)?;
    let msg = vec![b'x'; size];
    let before = thread_cpu_us();
    for _ in 0..WRITES {
        w.write_all(&msg)?;
    }
    let after = thread_cpu_us();
    drop(w);
    let _ = reader.join();
    Ok(after.saturating_sub(before) as f64 / WRITES as f64)
}

/// CPU time of the calling thread (µs), from `/proc/thread-self/stat`.
pub(crate) fn thread_cpu_us() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let Some(close) = s.rfind(')') else { return 0 };
    let f: Vec<&str> = s[close + 2..].split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // Clock ticks of 10 ms on this kernel config; precise enough over 200k writes.
    (t(11) + t(12)) * 10_000
}
