//! A progress bar on stderr for the long phases of a run (only when stderr is a terminal, so
//! logs stay clean).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Draws `label [#####.....] t/T s` until the returned guard is dropped.
pub fn bar(label: String, total: Duration) -> Guard {
    if !std::io::stderr().is_terminal() {
        return Guard(None);
    }
    let start = Instant::now();
    let task = tokio::spawn(async move {
        loop {
            let done = start.elapsed().min(total);
            let frac = done.as_secs_f64() / total.as_secs_f64().max(0.001);
            let filled = (frac * 30.0) as usize;
            eprint!(
                "\r{label} [{}{}] {:.0}/{:.0} s ",
                "#".repeat(filled),
                ".".repeat(30 - filled),
                done.as_secs_f64(),
                total.as_secs_f64()
            );
            let _ = std::io::stderr().flush();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    Guard(Some(task))
}

/// Stops the bar (and ends its line) when dropped.
pub struct Guard(Option<tokio::task::JoinHandle<()>>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.abort();
            eprintln!();
        }
    }
}
