//! The embedded store's floor for a durable send: the keys a chat send must write (the
//! message by sequence, its id index, its client-message-id index, the stream's event and
//! head), as plain `sled` inserts of the same sizes into one tree per shard, and the two reads
//! a send needs first (the head, the client message id). No redo record, no applied position,
//! no encoding: what the server's state machine pays on top of this is its own.

/// Shards (trees), streams and sends measured.
const TREES: usize = 16;
const STREAMS: usize = 64;
const SENDS: u64 = 40_000;

/// Per-send floor of the state-machine writes, in µs of CPU of the writing thread, and the
/// average µs per operation (insert or read).
pub struct SledFloor {
    pub send_us: f64,
    pub op_us: f64,
}

fn key(stream: &str, tag: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(stream.len() + rest.len() + 8);
    k.extend_from_slice(b"ds\0");
    k.extend_from_slice(stream.as_bytes());
    k.push(0);
    k.extend_from_slice(tag);
    k.push(0);
    k.extend_from_slice(rest);
    k
}

/// Runs the pattern on a fresh sled directory configured as the server configures its store.
pub fn send_floor() -> anyhow::Result<SledFloor> {
    let dir = tempfile::tempdir()?;
    let db = ::sled::Config::new()
        .path(dir.path())
        .cache_capacity(1 << 30)
        .flush_every_ms(Some(1000))
        .open()?;
    let trees = (0..TREES)
        .map(|i| db.open_tree(format!("g{i}")))
        .collect::<Result<Vec<_>, _>>()?;
    let streams: Vec<String> = (0..STREAMS)
        .map(|i| {
            format!(
                "chat:00000000-0000-0000-0000-000000000001:{}",
                uuid_like(i as u64)
            )
        })
        .collect();
    let message = vec![b'm'; 520];
    let event = vec![b'e'; 600];
    let head = vec![b'h'; 40];
    let mut seqs = vec![0u64; STREAMS];
    let before = super::thread_cpu_us();
    for n in 0..SENDS {
        let s = (n as usize) % STREAMS;
        let tree = &trees[s % TREES];
        let stream = &streams[s];
        let cmid = format!("b3000-{n}");
        let _ = tree.get(key(stream, b"h", b""))?;
        let _ = tree.get(key(stream, b"c", format!("u{s}\0{cmid}").as_bytes()))?;
        seqs[s] += 1;
        let seq = seqs[s].to_be_bytes();
        tree.insert(key(stream, b"m", &seq), message.as_slice())?;
        tree.insert(key(stream, b"i", uuid_like(n).as_bytes()), &seq)?;
        tree.insert(
            key(stream, b"c", format!("u{s}\0{cmid}").as_bytes()),
            uuid_like(n).as_bytes(),
        )?;
        tree.insert(key(stream, b"e", &seq), event.as_slice())?;
        tree.insert(key(stream, b"h", b""), head.as_slice())?;
    }
    let used = super::thread_cpu_us().saturating_sub(before) as f64;
    db.flush()?;
    Ok(SledFloor {
        send_us: used / SENDS as f64,
        op_us: used / (SENDS * 7) as f64,
    })
}

/// A UUIDv7-shaped, time-ordered id for `n`.
fn uuid_like(n: u64) -> String {
    format!(
        "0190{:04x}-{:04x}-7000-8000-{:012x}",
        (n >> 32) & 0xffff,
        (n >> 16) & 0xffff,
        n
    )
}
