//! The kernel's floor: the CPU one small loopback TCP write costs the writing thread. Every
//! delivery to a socket costs at least one such write, so a server's CPU per delivery divided
//! by this floor says how much of its cost is its own.

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
fn thread_cpu_us() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let Some(close) = s.rfind(')') else { return 0 };
    let f: Vec<&str> = s[close + 2..].split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // Clock ticks of 10 ms on this kernel config; precise enough over 200k writes.
    (t(11) + t(12)) * 10_000
}
