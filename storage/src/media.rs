//! The node's media store: uploaded files on local disk, content-addressed by SHA-256.
//!
//! Media never goes through the Raft log (a 100 MiB video in a log entry would stall every
//! group sharing the write-ahead log); only its metadata does, and the layer above copies the
//! bytes to the replicas of the owning shard itself. This module is the disk side of both:
//!
//! - [`MediaWriter`] streams a new file into `tmp/`, hashing and counting as it goes and
//!   refusing more than its limit, then fsyncs and renames it to its hash. Writing the same
//!   content twice yields one file.
//! - [`MediaStore::receive`] takes a file from a peer chunk by chunk, in order, and keeps it only
//!   if its bytes hash to the name the peer gave.
//! - Reads are by range, so nothing is held in memory whole.
//!
//! Layout: `<dir>/<first two hex digits>/<64 hex digits>` and `<dir>/tmp/`. A file is
//! written under `tmp/` and renamed into place only once it is complete and durable, so a crash
//! leaves at most stray temporary files, removed when the store opens.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

/// Why a media operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("the file exceeds {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("not a media hash: {0:?}")]
    BadHash(String),
    #[error("no such media file")]
    Missing,
    #[error("chunk at {got} out of order (expected {expected})")]
    OutOfOrder { expected: u64, got: u64 },
    #[error("received bytes hash to {actual}, not {expected}")]
    HashMismatch { expected: String, actual: String },
    #[error("media store: {0}")]
    Io(#[from] io::Error),
}

/// A stored file: its SHA-256 (hex) and size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub hash: String,
    pub size: u64,
}

/// Whether `s` is a media hash (64 lower-case hex digits), so it can name a file.
pub fn is_hash(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn checked(hash: &str) -> Result<&str, MediaError> {
    if is_hash(hash) {
        Ok(hash)
    } else {
        Err(MediaError::BadHash(hash.chars().take(80).collect()))
    }
}

/// A file being received from a peer.
struct Incoming {
    file: File,
    path: PathBuf,
    written: u64,
    hasher: Sha256,
}

/// One node's media files. Cheap to clone; every method does blocking file I/O, so async
/// callers run them on the blocking pool.
#[derive(Clone)]
pub struct MediaStore {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    dir: PathBuf,
    tmp: PathBuf,
    /// Files being received, by `(peer, hash)`.
    incoming: Mutex<HashMap<(u64, String), Incoming>>,
}

impl MediaStore {
    /// Opens (creating) the store in `dir`, removing temporary files a crash left behind.
    pub fn open(dir: impl Into<PathBuf>) -> Result<MediaStore, MediaError> {
        let dir = dir.into();
        let tmp = dir.join("tmp");
        fs::create_dir_all(&tmp)?;
        for entry in fs::read_dir(&tmp)? {
            let _ = fs::remove_file(entry?.path());
        }
        Ok(MediaStore {
            inner: Arc::new(StoreInner {
                dir,
                tmp,
                incoming: Mutex::new(HashMap::new()),
            }),
        })
    }

    fn path(&self, hash: &str) -> PathBuf {
        self.inner.dir.join(&hash[..2]).join(hash)
    }

    /// Starts a new file of at most `limit` bytes.
    pub fn writer(&self, limit: u64) -> Result<MediaWriter, MediaError> {
        let path = self.inner.tmp.join(format!("new-{}", temp_name()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(MediaWriter {
            store: self.clone(),
            file: Some(file),
            path,
            hasher: Sha256::new(),
            size: 0,
            limit,
        })
    }

    /// Stores `bytes` whole (small files: thumbnails, processed images).
    pub fn put(&self, bytes: &[u8]) -> Result<Stored, MediaError> {
        let mut w = self.writer(bytes.len() as u64)?;
        w.write(bytes)?;
        w.finish()
    }

    /// The size of a stored file, or None.
    pub fn size(&self, hash: &str) -> Result<Option<u64>, MediaError> {
        match fs::metadata(self.path(checked(hash)?)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a stored file for reading.
    pub fn open_file(&self, hash: &str) -> Result<File, MediaError> {
        match File::open(self.path(checked(hash)?)) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(MediaError::Missing),
            Err(e) => Err(e.into()),
        }
    }

    /// Up to `len` bytes of a stored file from `offset` (fewer at its end).
    pub fn read_at(&self, hash: &str, offset: u64, len: usize) -> Result<Vec<u8>, MediaError> {
        let mut f = self.open_file(hash)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut out = Vec::with_capacity(len.min(16 << 20));
        f.take(len as u64).read_to_end(&mut out)?;
        Ok(out)
    }

    /// Removes a stored file (absent is fine).
    pub fn remove(&self, hash: &str) -> Result<(), MediaError> {
        match fs::remove_file(self.path(checked(hash)?)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every stored file with its age (by modification time).
    pub fn list(&self) -> Result<Vec<(String, Duration)>, MediaError> {
        let now = SystemTime::now();
        let mut out = Vec::new();
        for shelf in fs::read_dir(&self.inner.dir)? {
            let shelf = shelf?;
            if shelf.file_name() == "tmp" || !shelf.file_type()?.is_dir() {
                continue;
            }
            for entry in fs::read_dir(shelf.path())? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if !is_hash(&name) {
                    continue;
                }
                let age = entry
                    .metadata()?
                    .modified()
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .unwrap_or_default();
                out.push((name, age));
            }
        }
        Ok(out)
    }

    /// Takes the chunk at `offset` of the file `hash` (of `total` bytes) from `peer`. Chunks
    /// come in order; the first (offset 0) starts over. Returns true once the file is stored
    /// (also at once when it already was).
    pub fn receive(
        &self,
        peer: u64,
        hash: &str,
        offset: u64,
        total: u64,
        bytes: &[u8],
    ) -> Result<bool, MediaError> {
        let hash = checked(hash)?;
        if self.size(hash)? == Some(total) {
            self.forget(peer, hash);
            return Ok(true);
        }
        let mut map = self
            .inner
            .incoming
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (peer, hash.to_string());
        if offset == 0 {
            if let Some(old) = map.remove(&key) {
                let _ = fs::remove_file(old.path);
            }
            let path = self.inner.tmp.join(format!("in-{peer}-{hash}"));
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)?;
            map.insert(
                key.clone(),
                Incoming {
                    file,
                    path,
                    written: 0,
                    hasher: Sha256::new(),
                },
            );
        }
        let Some(inc) = map.get_mut(&key) else {
            return Err(MediaError::OutOfOrder {
                expected: 0,
                got: offset,
            });
        };
        if inc.written != offset || offset + bytes.len() as u64 > total {
            let expected = inc.written;
            if let Some(old) = map.remove(&key) {
                let _ = fs::remove_file(old.path);
            }
            return Err(MediaError::OutOfOrder {
                expected,
                got: offset,
            });
        }
        inc.file.write_all(bytes)?;
        inc.hasher.update(bytes);
        inc.written += bytes.len() as u64;
        if inc.written < total {
            return Ok(false);
        }
        let Some(done) = map.remove(&key) else {
            return Ok(false);
        };
        drop(map);
        let actual = hex::encode(done.hasher.finalize());
        if actual != hash {
            let _ = fs::remove_file(&done.path);
            return Err(MediaError::HashMismatch {
                expected: hash.to_string(),
                actual,
            });
        }
        done.file.sync_all()?;
        drop(done.file);
        self.settle(&done.path, hash)?;
        Ok(true)
    }

    /// Drops a partly received file (the peer gave up).
    pub fn forget(&self, peer: u64, hash: &str) {
        let mut map = self
            .inner
            .incoming
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = map.remove(&(peer, hash.to_string())) {
            let _ = fs::remove_file(old.path);
        }
    }

    /// Drops partly received files not added to for `older_than` (their sender died).
    pub fn drop_stale_incoming(&self, older_than: Duration) {
        let now = SystemTime::now();
        let mut map = self
            .inner
            .incoming
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, inc| {
            let fresh = fs::metadata(&inc.path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age < older_than);
            if !fresh {
                let _ = fs::remove_file(&inc.path);
            }
            fresh
        });
    }

    /// Moves a complete, synced temporary file to its place and makes the rename durable.
    fn settle(&self, tmp: &Path, hash: &str) -> Result<(), MediaError> {
        let shelf = self.inner.dir.join(&hash[..2]);
        fs::create_dir_all(&shelf)?;
        fs::rename(tmp, shelf.join(hash))?;
        File::open(&shelf)?.sync_all()?;
        Ok(())
    }
}

/// A new file being written (see [`MediaStore::writer`]); dropped unfinished, it is removed.
pub struct MediaWriter {
    store: MediaStore,
    file: Option<File>,
    path: PathBuf,
    hasher: Sha256,
    size: u64,
    limit: u64,
}

impl MediaWriter {
    /// Appends bytes; refuses to grow past the limit.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), MediaError> {
        if self.size + bytes.len() as u64 > self.limit {
            return Err(MediaError::TooLarge { limit: self.limit });
        }
        let Some(file) = self.file.as_mut() else {
            return Err(MediaError::Missing);
        };
        file.write_all(bytes)?;
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The file written so far, for reading back before it is finished (sniffing, decoding).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the file durable and stores it under its hash.
    pub fn finish(mut self) -> Result<Stored, MediaError> {
        let Some(file) = self.file.take() else {
            return Err(MediaError::Missing);
        };
        file.sync_all()?;
        drop(file);
        let hash = hex::encode(std::mem::take(&mut self.hasher).finalize());
        if self.store.size(&hash)? == Some(self.size) {
            let _ = fs::remove_file(&self.path);
        } else {
            self.store.settle(&self.path, &hash)?;
        }
        Ok(Stored {
            hash,
            size: self.size,
        })
    }
}

impl Drop for MediaWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A name for a temporary file that no other writer of this process uses.
fn temp_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}-{t:x}-{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[test]
    fn a_written_file_is_stored_under_its_hash_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = MediaStore::open(dir.path()).unwrap();
        let mut w = store.writer(10).unwrap();
        w.write(b"hello").unwrap();
        w.write(b"world").unwrap();
        assert!(matches!(
            w.write(b"!"),
            Err(MediaError::TooLarge { limit: 10 })
        ));
        let s = w.finish().unwrap();
        assert_eq!(s.hash, sha(b"helloworld"));
        assert_eq!(store.size(&s.hash).unwrap(), Some(10));
        assert_eq!(store.read_at(&s.hash, 3, 4).unwrap(), b"lowo");
        assert_eq!(store.put(b"helloworld").unwrap(), s);
        assert_eq!(store.list().unwrap().len(), 1);
        store.remove(&s.hash).unwrap();
        assert_eq!(store.size(&s.hash).unwrap(), None);
        // Nothing left in tmp/.
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn an_abandoned_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = MediaStore::open(dir.path()).unwrap();
        let mut w = store.writer(100).unwrap();
        w.write(b"partial").unwrap();
        drop(w);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn received_chunks_are_kept_only_in_order_and_when_they_hash_right() {
        let dir = tempfile::tempdir().unwrap();
        let store = MediaStore::open(dir.path()).unwrap();
        let data = b"0123456789abcdef";
        let hash = sha(data);
        assert!(!store.receive(2, &hash, 0, 16, &data[..8]).unwrap());
        assert!(matches!(
            store.receive(2, &hash, 4, 16, &data[4..]),
            Err(MediaError::OutOfOrder { expected: 8, .. })
        ));
        // Starting over works.
        assert!(!store.receive(2, &hash, 0, 16, &data[..8]).unwrap());
        assert!(store.receive(2, &hash, 8, 16, &data[8..]).unwrap());
        assert_eq!(store.read_at(&hash, 0, 100).unwrap(), data);
        // Already there: done at once.
        assert!(store.receive(3, &hash, 0, 16, b"").unwrap());
        let wrong = sha(b"other");
        assert!(matches!(
            store.receive(2, &wrong, 0, 3, b"abc"),
            Err(MediaError::HashMismatch { .. })
        ));
        assert_eq!(store.size(&wrong).unwrap(), None);
        assert!(matches!(
            store.receive(2, "../../etc/passwd", 0, 3, b"abc"),
            Err(MediaError::BadHash(_))
        ));
    }
}
