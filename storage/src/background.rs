//! Low-priority threads for the storage work nothing waits for.
//!
//! Why: moving a state machine's pending writes into sled (see `state_machine`) is about a
//! fifth of a busy node's CPU, in bursts of milliseconds (sled's inserts on the thread that
//! applies the batch, then the writes of its log on sled's `sled-io-*` threads), and no reply
//! waits for it: the Raft log already holds those writes durably. At the request path's
//! priority, each burst delays the sends queued behind it on the same core. These threads
//! lower their own scheduling priority (a nice value, which any process may do to its own
//! threads without privileges) and that of sled's I/O threads, so the kernel runs the work in
//! the request path's idle time and preempts it when a request arrives. When the request path
//! waits for it (a group whose pending writes reached their bound waits for its flush, a
//! snapshot flushes first) the core is idle and the work runs as before.
//!
//! Linux only: elsewhere a nice value is per process, so the threads keep the process's.

use std::io;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A unit of background work.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// Jobs queued before [`Background::spawn`] hands new ones back to its caller. Each group has
/// at most one flush in flight, so the queue holds at most one job per group.
const QUEUE: usize = 1024;

/// How often a background thread looks for sled I/O threads started since its last look
/// (sled starts and retires them on demand).
const RENICE_EVERY: Duration = Duration::from_secs(1);

/// Name prefix of sled 0.34's I/O threads.
const SLED_IO_THREAD: &str = "sled-io";

/// The background threads of one store. Dropping it closes the queue; each thread ends after
/// the jobs queued before that.
pub(crate) struct Background {
    tx: SyncSender<Job>,
}

impl Background {
    /// Starts `threads` threads (at least one) at nice value `nice` (0..=19; 0 leaves them at
    /// the process's priority).
    pub(crate) fn start(threads: usize, nice: i32) -> io::Result<Background> {
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let rx = std::sync::Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("chatsdk-bg-{i}"))
                .spawn(move || run(&rx, nice))?;
        }
        Ok(Background { tx })
    }

    /// Queues `job`, or gives it back when the queue is full or the threads are gone (the
    /// caller then runs it itself).
    pub(crate) fn spawn(&self, job: Job) -> Result<(), Job> {
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => Err(job),
        }
    }
}

fn run(rx: &Mutex<Receiver<Job>>, nice: i32) {
    lower_priority(None, nice);
    let mut reniced_at: Option<Instant> = None;
    loop {
        // One thread waits on the queue at a time; the others wait for the lock.
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        if nice > 0 && reniced_at.is_none_or(|t| t.elapsed() >= RENICE_EVERY) {
            reniced_at = Some(Instant::now());
            lower_sled_io_threads(nice);
        }
        job();
    }
}

/// Sets thread `tid`'s nice value (`None`: the calling thread).
#[cfg(target_os = "linux")]
fn lower_priority(tid: Option<rustix::process::Pid>, nice: i32) {
    if nice <= 0 {
        return;
    }
    let tid = tid.unwrap_or_else(rustix::thread::gettid);
    // Linux keeps a nice value per thread: PRIO_PROCESS with a thread id sets that thread's.
    if let Err(e) = rustix::process::setpriority_process(Some(tid), nice) {
        tracing::debug!(tid = tid.as_raw_nonzero().get(), error = %e, "nice value not set");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_tid: Option<()>, _nice: i32) {}

/// Lowers the priority of sled's I/O threads that run above `nice`.
#[cfg(target_os = "linux")]
fn lower_sled_io_threads(nice: i32) {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    for task in tasks.flatten() {
        let is_sled_io = std::fs::read_to_string(task.path().join("comm"))
            .is_ok_and(|comm| comm.starts_with(SLED_IO_THREAD));
        let tid = task
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw);
        if let (true, Some(tid)) = (is_sled_io, tid) {
            if rustix::process::getpriority_process(Some(tid)).is_ok_and(|n| n < nice) {
                lower_priority(Some(tid), nice);
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_sled_io_threads(_nice: i32) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn nice_of_current_thread() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
    }

    #[test]
    fn jobs_run_on_named_threads_at_the_configured_nice_value() {
        let before = nice_of_current_thread();
        let bg = Background::start(2, 15).unwrap();
        let (tx, rx) = mpsc::channel();
        for _ in 0..4 {
            let tx = tx.clone();
            let job: Job = Box::new(move || {
                let name = std::thread::current().name().map(str::to_owned);
                tx.send((name, nice_of_current_thread())).unwrap();
            });
            assert!(bg.spawn(job).is_ok());
        }
        for _ in 0..4 {
            let (name, nice) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert!(name.unwrap().starts_with("chatsdk-bg-"));
            assert_eq!(nice, 15);
        }
        // The caller's own priority is untouched.
        assert_eq!(nice_of_current_thread(), before);
    }

    #[test]
    fn nice_zero_leaves_the_priority_alone() {
        let before = nice_of_current_thread();
        let bg = Background::start(1, 0).unwrap();
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move || tx.send(nice_of_current_thread()).unwrap());
        assert!(bg.spawn(job).is_ok());
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), before);
    }

    #[test]
    fn a_full_queue_hands_the_job_back() {
        let bg = Background::start(1, 0).unwrap();
        // Hold the only thread in a job until released, then fill the queue.
        let (release, wait) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel::<()>();
        let blocker: Job = Box::new(move || {
            started_tx.send(()).unwrap();
            let _ = wait.recv();
        });
        assert!(bg.spawn(blocker).is_ok());
        started.recv_timeout(Duration::from_secs(10)).unwrap();
        for _ in 0..QUEUE {
            assert!(bg.spawn(Box::new(|| {})).is_ok());
        }
        assert!(bg.spawn(Box::new(|| {})).is_err());
        release.send(()).unwrap();
    }
}
