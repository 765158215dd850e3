//! Run records and the summary table.
//!
//! Every run (one system, one round) becomes one JSON line on stdout, so results can be
//! collected by machines; at the end a human table shows each system's median per metric and
//! its ratio to ours. A run that lost messages or whose generator was saturated is marked
//! invalid with its reasons, and left out of the medians.

use std::collections::BTreeMap;

use serde::Serialize;

/// One measured run.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub scenario: String,
    /// `chatsdk-ws`, `chatsdk-quic`, `ws`, `socketio`, `nats`, `chatsdk-3node`...
    pub system: String,
    pub round: usize,
    /// What was asked for (sizes, rates, durations).
    pub params: BTreeMap<String, serde_json::Value>,
    /// What was measured.
    pub metrics: BTreeMap<String, f64>,
    pub valid: bool,
    pub invalid_reasons: Vec<String>,
    pub commit: String,
    pub unix_time: u64,
}

impl Run {
    pub fn new(scenario: &str, system: &str, round: usize) -> Run {
        Run {
            scenario: scenario.into(),
            system: system.into(),
            round,
            params: BTreeMap::new(),
            metrics: BTreeMap::new(),
            valid: true,
            invalid_reasons: Vec::new(),
            commit: commit(),
            unix_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }

    pub fn param(&mut self, k: &str, v: impl Into<serde_json::Value>) -> &mut Self {
        self.params.insert(k.into(), v.into());
        self
    }

    pub fn metric(&mut self, k: &str, v: f64) -> &mut Self {
        self.metrics.insert(k.into(), v);
        self
    }

    /// Marks the run invalid (lost messages, saturated generator, errors beyond bounds).
    pub fn invalid(&mut self, why: impl Into<String>) -> &mut Self {
        self.valid = false;
        self.invalid_reasons.push(why.into());
        self
    }

    /// Prints the JSON line.
    pub fn emit(&self) {
        if let Ok(line) = serde_json::to_string(self) {
            println!("{line}");
        }
    }
}

/// The commit the harness was built from (`git rev-parse`), or `unknown`.
fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The median of each metric per system over valid runs.
pub fn medians(runs: &[Run]) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut by: BTreeMap<String, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.valid) {
        for (k, v) in &r.metrics {
            by.entry(r.system.clone())
                .or_default()
                .entry(k.clone())
                .or_default()
                .push(*v);
        }
    }
    by.into_iter()
        .map(|(sys, m)| {
            let m = m
                .into_iter()
                .map(|(k, mut v)| {
                    v.sort_by(|a, b| a.total_cmp(b));
                    let mid = v.len() / 2;
                    let med = if v.len() % 2 == 1 {
                        v[mid]
                    } else {
                        (v[mid - 1] + v[mid]) / 2.0
                    };
                    (k, med)
                })
                .collect();
            (sys, m)
        })
        .collect()
}

/// Prints the summary table to stderr (stdout carries the JSON lines): one row per metric,
/// one column per system, and `ours/peer` ratios against the first system (ours).
pub fn table(scenario: &str, runs: &[Run]) {
    let med = medians(runs);
    let invalid = runs.iter().filter(|r| !r.valid).count();
    eprintln!();
    eprintln!(
        "== {scenario}: {} runs ({invalid} invalid), medians of valid runs",
        runs.len()
    );
    for r in runs.iter().filter(|r| !r.valid) {
        eprintln!(
            "   invalid: {} round {}: {}",
            r.system,
            r.round,
            r.invalid_reasons.join("; ")
        );
    }
    let systems: Vec<&String> = {
        let mut seen = Vec::new();
        for r in runs {
            if med.contains_key(&r.system) && !seen.contains(&&r.system) {
                seen.push(&r.system);
            }
        }
        seen
    };
    if systems.is_empty() {
        return;
    }
    let metrics: Vec<&String> = {
        let mut m: Vec<&String> = med.values().flat_map(|m| m.keys()).collect();
        m.sort();
        m.dedup();
        m
    };
    // Columns are at least 18 wide, and wide enough for every label and a gap.
    let w = systems
        .iter()
        .map(|s| s.len() + "ours/".len() + 2)
        .max()
        .unwrap_or(0)
        .max(18);
    let mut header = format!("{:<34}", "metric");
    for s in &systems {
        header.push_str(&format!("{s:>w$}"));
    }
    for s in systems.iter().skip(1) {
        header.push_str(&format!("{:>w$}", format!("ours/{s}")));
    }
    eprintln!("{header}");
    let ours = &med[systems[0]];
    for m in metrics {
        let mut row = format!("{m:<34}");
        for s in &systems {
            match med[*s].get(m) {
                Some(v) => row.push_str(&format!("{:>w$}", fmt(*v))),
                None => row.push_str(&format!("{:>w$}", "-")),
            }
        }
        for s in systems.iter().skip(1) {
            match (ours.get(m), med[*s].get(m)) {
                (Some(a), Some(b)) if *b != 0.0 => row.push_str(&format!("{:>w$.2}", a / b)),
                _ => row.push_str(&format!("{:>w$}", "-")),
            }
        }
        eprintln!("{row}");
    }
}

fn fmt(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}
