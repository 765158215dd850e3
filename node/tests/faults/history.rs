//! The history checker: every send the load made (invoked, then ok, failed or unknown), every
//! event each realtime subscriber received, and the channels' final histories as each node
//! reports them, checked against the invariants of the design (§4):
//!
//! - **I1** no acknowledged message is lost: an ok send's client id is in the final history,
//!   at the seq its acknowledgement gave;
//! - **I2** one message per client id: no client id twice in a history; a retry of a send
//!   answers the first one's seq; a send answered with a definite refusal was not applied;
//! - **I3** order and gap-free recovery: a history's seqs ascend; every node reports the same
//!   history; a subscriber's offsets ascend by one, jumping only where the server said it
//!   could not recover (a `recovered: false` resubscribe) or at the first subscribe; what it
//!   receives is what the history holds at that seq; once the faults are healed it receives
//!   the channel's last message (or a subscribe reply places it at or past it: a resubscribe
//!   that could not recover, made after the last message, has nothing more to receive).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

/// How a send ended, as its client saw it.
#[derive(Clone, Debug)]
pub(crate) enum Outcome {
    /// Acknowledged: durable at this seq.
    Ok { seq: u64 },
    /// A definite refusal (4xx): it must not have been applied.
    Fail(String),
    /// No answer, a timeout or a 5xx: it may or may not have been applied.
    Unknown(String),
}

/// One invocation of a send.
#[derive(Clone, Debug)]
pub(crate) struct Op {
    pub(crate) cmid: String,
    pub(crate) channel: usize,
    pub(crate) node: usize,
    pub(crate) outcome: Outcome,
    /// How long the attempt took.
    pub(crate) ms: u64,
    /// When it ended, from the recorder's start (stamped by [`Recorder::op`]).
    pub(crate) t_ms: u64,
}

/// What a subscriber received, in order.
#[derive(Clone, Debug)]
pub(crate) enum Seen {
    Subscribed {
        channel: usize,
        recovered: bool,
        was_recovering: bool,
        /// The stream's position the reply gave: the subscriber has what comes up to it
        /// (recovered, or, when not, declared unrecoverable: the client refetches).
        offset: u64,
    },
    Publication {
        channel: usize,
        offset: u64,
        /// `(seq, client id)` of a `message.new`.
        message: Option<(u64, Option<String>)>,
    },
    Disconnected {
        code: u16,
        reason: String,
        will_reconnect: bool,
    },
}

/// Everything recorded during a run; shared by the load's tasks.
pub(crate) struct Recorder {
    started: Instant,
    pub(crate) ops: Mutex<Vec<Op>>,
    /// Per subscriber: when (ms from the start) and what.
    pub(crate) subscribers: Vec<Mutex<Vec<(u64, Seen)>>>,
}

impl Recorder {
    pub(crate) fn new(subscribers: usize) -> Recorder {
        Recorder {
            started: Instant::now(),
            ops: Mutex::new(Vec::new()),
            subscribers: (0..subscribers).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub(crate) fn op(&self, mut op: Op) {
        op.t_ms = self.now_ms();
        if let Ok(mut ops) = self.ops.lock() {
            ops.push(op);
        }
    }

    pub(crate) fn seen(&self, subscriber: usize, seen: Seen) {
        let t = self.now_ms();
        if let Ok(mut s) = self.subscribers[subscriber].lock() {
            s.push((t, seen));
        }
    }

    /// Everything recorded, a line per operation or event, for a kept run's directory.
    pub(crate) fn dump(&self, path: &std::path::Path) -> std::io::Result<()> {
        let mut out = String::new();
        for op in self.ops.lock().map(|o| o.clone()).unwrap_or_default() {
            let _ = writeln!(out, "{op:?}");
        }
        for (s, seen) in self.subscribers.iter().enumerate() {
            for (t, e) in seen.lock().map(|x| x.clone()).unwrap_or_default() {
                let _ = writeln!(out, "subscriber {s} at {t} ms: {e:?}");
            }
        }
        std::fs::write(path, out)
    }

    /// Whether subscriber `s` has reached message `end` of `channel`: it received it, or a
    /// subscribe reply placed it at or past it (a resubscribe that could not recover, after the
    /// last message: there is nothing more to receive, and the client refetches what it
    /// missed). The fault suite's first "deliveries stopped" findings were such subscribers.
    pub(crate) fn reached(&self, s: usize, channel: usize, end: u64) -> bool {
        if self.last_seq(s, channel) >= end {
            return true;
        }
        // The offset of message `end`, as any subscriber received it; the load's streams hold
        // only its messages, so without a receipt the offset is the seq.
        let end_offset = self
            .subscribers
            .iter()
            .find_map(|seen| {
                seen.lock().ok()?.iter().find_map(|(_, e)| match e {
                    Seen::Publication {
                        channel: c,
                        offset,
                        message: Some((seq, _)),
                    } if *c == channel && *seq == end => Some(*offset),
                    _ => None,
                })
            })
            .unwrap_or(end);
        self.subscribers[s].lock().is_ok_and(|seen| {
            seen.iter().any(|(_, e)| {
                matches!(e, Seen::Subscribed { channel: c, offset, .. }
                    if *c == channel && *offset >= end_offset)
            })
        })
    }

    /// The highest message seq subscriber `s` has received on `channel`.
    pub(crate) fn last_seq(&self, s: usize, channel: usize) -> u64 {
        // Read under the lock, newest first: polled while the subscriber records.
        let Ok(seen) = self.subscribers[s].lock() else {
            return 0;
        };
        seen.iter()
            .rev()
            .find_map(|(_, e)| match e {
                Seen::Publication {
                    channel: c,
                    message: Some((seq, _)),
                    ..
                } if *c == channel => Some(*seq),
                _ => None,
            })
            .unwrap_or(0)
    }
}

/// A channel's final history as one node reports it: `(seq, client id)` in its order.
pub(crate) type Final = Vec<(u64, Option<String>)>;

/// What a scenario did and what the checker found.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Report {
    pub(crate) scenario: String,
    pub(crate) seconds: f64,
    pub(crate) invoked: usize,
    pub(crate) ok: usize,
    pub(crate) failed: usize,
    pub(crate) unknown: usize,
    /// Client ids sent more than once (a retry after an unknown outcome).
    pub(crate) retried: usize,
    pub(crate) messages: usize,
    /// Latency of the acknowledged sends: median, 99th percentile, maximum (ms).
    pub(crate) ok_ms: [u64; 3],
    pub(crate) deliveries: usize,
    pub(crate) resubscribes_recovered: usize,
    pub(crate) resubscribes_not_recovered: usize,
    pub(crate) faults: Vec<String>,
    /// A few of the reasons sends ended unknown or failed (distinct, shortened).
    pub(crate) causes: Vec<String>,
    pub(crate) violations: Vec<String>,
}

impl Report {
    pub(crate) fn summary(&self) -> String {
        let mut s = format!(
            "{}: {:.0} s, {} sends ({} ok in {}/{}/{} ms p50/p99/max, {} failed, {} unknown, {} \
             client ids retried), {} messages, {} deliveries, resubscribes {} recovered / {} \
             not, {} faults, {} violations",
            self.scenario,
            self.seconds,
            self.invoked,
            self.ok,
            self.ok_ms[0],
            self.ok_ms[1],
            self.ok_ms[2],
            self.failed,
            self.unknown,
            self.retried,
            self.messages,
            self.deliveries,
            self.resubscribes_recovered,
            self.resubscribes_not_recovered,
            self.faults.len(),
            self.violations.len()
        );
        for f in &self.faults {
            let _ = write!(s, "\n  fault: {f}");
        }
        for c in &self.causes {
            let _ = write!(s, "\n  cause: {c}");
        }
        for v in self.violations.iter().take(50) {
            let _ = write!(s, "\n  VIOLATION: {v}");
        }
        s
    }
}

/// Checks the recorded run against the final histories (`finals[node][channel]`) and fills
/// the report's counts and violations.
pub(crate) fn check(rec: &Recorder, finals: &[Vec<Final>], report: &mut Report) {
    let ops = rec.ops.lock().map(|o| o.clone()).unwrap_or_default();
    let channels = finals.first().map_or(0, Vec::len);
    let v = &mut report.violations;

    // Every node reports the same history (I3).
    for (node, lists) in finals.iter().enumerate().skip(1) {
        for c in 0..channels {
            if lists[c] != finals[0][c] {
                let at = lists[c]
                    .iter()
                    .zip(&finals[0][c])
                    .position(|(a, b)| a != b)
                    .unwrap_or(lists[c].len().min(finals[0][c].len()));
                v.push(format!(
                    "I3: channel {c}: node {} reports {} messages, node 1 {}; first difference \
                     at position {at}",
                    node + 1,
                    lists[c].len(),
                    finals[0][c].len()
                ));
            }
        }
    }

    // Per channel: seqs ascend, each client id once (I2, I3).
    let mut at: Vec<HashMap<String, u64>> = vec![HashMap::new(); channels];
    for c in 0..channels {
        let mut last = 0;
        for (seq, cmid) in &finals[0][c] {
            if *seq <= last {
                v.push(format!("I3: channel {c}: seq {seq} after {last}"));
            }
            last = *seq;
            let Some(cmid) = cmid else {
                v.push(format!("I2: channel {c}: seq {seq} has no client id"));
                continue;
            };
            if let Some(first) = at[c].insert(cmid.clone(), *seq) {
                v.push(format!(
                    "I2: channel {c}: client id {cmid} at seqs {first} and {seq}"
                ));
            }
        }
        report.messages += finals[0][c].len();
    }

    // Each send against the history (I1, I2).
    let mut by_cmid: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in &ops {
        by_cmid.entry(op.cmid.as_str()).or_default().push(op);
        match &op.outcome {
            Outcome::Ok { seq } => {
                report.ok += 1;
                match at[op.channel].get(&op.cmid) {
                    Some(s) if s == seq => {}
                    Some(s) => v.push(format!(
                        "I2: {} acknowledged at seq {seq} (via node {}) is at seq {s}",
                        op.cmid,
                        op.node + 1
                    )),
                    None => v.push(format!(
                        "I1: {} acknowledged at seq {seq} (via node {}) is lost",
                        op.cmid,
                        op.node + 1
                    )),
                }
            }
            Outcome::Fail(why) | Outcome::Unknown(why) => {
                if matches!(op.outcome, Outcome::Fail(_)) {
                    report.failed += 1;
                } else {
                    report.unknown += 1;
                }
                // Request ids make every answer distinct; the cause is what comes before.
                let cause = why.split(",\"requestId\"").next().unwrap_or(why);
                let short: String = cause.chars().take(120).collect();
                if report.causes.len() < 8 && !report.causes.contains(&short) {
                    report.causes.push(short);
                }
            }
        }
    }
    report.invoked = ops.len();
    let mut ms: Vec<u64> = ops
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Ok { .. }))
        .map(|o| o.ms)
        .collect();
    ms.sort_unstable();
    if let Some(&max) = ms.last() {
        report.ok_ms = [ms[ms.len() / 2], ms[ms.len() * 99 / 100], max];
    }
    report.retried = by_cmid.values().filter(|o| o.len() > 1).count();
    for (c, index) in at.iter().enumerate() {
        for (cmid, seq) in index {
            match by_cmid.get(cmid.as_str()) {
                None => v.push(format!(
                    "I2: channel {c}: seq {seq} has client id {cmid}, which no send used"
                )),
                Some(sends) => {
                    let refused = sends.iter().all(|o| matches!(o.outcome, Outcome::Fail(_)));
                    if refused {
                        let why = match &sends[0].outcome {
                            Outcome::Fail(why) => why.as_str(),
                            _ => "",
                        };
                        v.push(format!(
                            "I2: {cmid} was refused ({why}) but is at seq {seq} of channel {c}"
                        ));
                    }
                }
            }
        }
    }

    // Each subscriber's deliveries (I3).
    for (s, seen) in rec.subscribers.iter().enumerate() {
        let seen = seen.lock().map(|x| x.clone()).unwrap_or_default();
        let mut last_offset: Vec<Option<u64>> = vec![None; channels];
        let mut may_jump = vec![true; channels];
        let mut last_seq = vec![0u64; channels];
        for (_, e) in &seen {
            match e {
                Seen::Subscribed {
                    channel,
                    recovered,
                    was_recovering,
                    ..
                } => {
                    if *was_recovering && *recovered {
                        report.resubscribes_recovered += 1;
                    } else if *was_recovering {
                        report.resubscribes_not_recovered += 1;
                    }
                    if !*was_recovering || !*recovered {
                        may_jump[*channel] = true;
                    }
                }
                Seen::Publication {
                    channel,
                    offset,
                    message,
                } => {
                    let c = *channel;
                    report.deliveries += 1;
                    if let Some(last) = last_offset[c] {
                        if *offset <= last {
                            v.push(format!(
                                "I3: subscriber {s} channel {c}: offset {offset} after {last}"
                            ));
                        } else if *offset != last + 1 && !may_jump[c] {
                            v.push(format!(
                                "I3: subscriber {s} channel {c}: offsets {} to {} missing \
                                 without a failed recovery",
                                last + 1,
                                offset - 1
                            ));
                        }
                    }
                    last_offset[c] = Some(last_offset[c].map_or(*offset, |l| l.max(*offset)));
                    may_jump[c] = false;
                    if let Some((seq, cmid)) = message {
                        if *seq <= last_seq[c] {
                            v.push(format!(
                                "I3: subscriber {s} channel {c}: seq {seq} after {}",
                                last_seq[c]
                            ));
                        }
                        last_seq[c] = last_seq[c].max(*seq);
                        let known = cmid.as_ref().and_then(|m| at[c].get(m));
                        if known != Some(seq) {
                            v.push(format!(
                                "I3: subscriber {s} channel {c}: received seq {seq} ({cmid:?}), \
                                 which the history has at {known:?}"
                            ));
                        }
                    }
                }
                // Code 0 is the client's own close at the end of the run.
                Seen::Disconnected {
                    code,
                    reason,
                    will_reconnect: false,
                } if *code != 0 => v.push(format!(
                    "liveness: subscriber {s} was closed for good: {code} {reason}"
                )),
                Seen::Disconnected { .. } => {}
            }
        }
        for c in 0..channels {
            let end = finals[0][c].last().map_or(0, |(seq, _)| *seq);
            if last_seq[c] < end && !rec.reached(s, c, end) {
                v.push(format!(
                    "I3: subscriber {s} channel {c}: last received seq {}, the history ends \
                     at {end}, and no subscribe reply placed it there",
                    last_seq[c]
                ));
            }
        }
    }
}
