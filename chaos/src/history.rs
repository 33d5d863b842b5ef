//! The history of a chaos run: every client operation as an invocation followed by its
//! completion (Jepsen's model), every fault the nemesis injected, and what the harness
//! observed of the cluster. Written as JSON lines (`history.jsonl`), one [`Event`] each.
//!
//! Completions say what the client knows:
//! - `ok`: it happened (a send was acknowledged at `offset`);
//! - `fail`: it certainly did not happen (the broker refused the request before writing);
//! - `info`: indeterminate (timeouts, lost connections, `NOT_ENOUGH_REPLICAS_AFTER_APPEND`,
//!   a leader change while waiting): it may or may not have happened.
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The type of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An operation starts.
    Invoke,
    /// It completed: it happened.
    Ok,
    /// It completed: it certainly did not happen.
    Fail,
    /// It completed: unknown whether it happened.
    Info,
}

/// What an operation or observation is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    /// A producer sends `value` to `partition` (ok carries the offset).
    Send,
    /// A consumer (group member or partition reader) read `value` at `offset`.
    Read,
    /// A group consumer committed `offset` for `partition`.
    Commit,
    /// The harness fetched the group's committed `offset` for `partition`.
    Committed,
    /// The harness saw `leader` lead `partition` in `leader_epoch` (from a broker's
    /// Metadata answer).
    Leader,
    /// The nemesis started (`invoke`) or finished (`ok`/`fail`) a fault; `fault` names it.
    Nemesis,
    /// The final read of `partition` after healing: `offset` is its high watermark.
    FinalRead,
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the run started.
    pub time_ms: u64,
    /// The client (or `nemesis`, `observer`) that did it; one process does one thing at a
    /// time, so its invoke and completion pair up.
    pub process: String,
    /// Invocation or completion.
    pub kind: Kind,
    /// The operation.
    pub op: Op,
    /// Partition, where one applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    /// The unique value sent or read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Offset acknowledged, read, committed or (final read) the high watermark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// Producer acks for sends (-1 = all, 1, 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acks: Option<i16>,
    /// The sending producer is idempotent (its duplicates are violations).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
    /// Leader of `partition` seen by a Leader observation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<i32>,
    /// Leader epoch of a Leader observation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_epoch: Option<i32>,
    /// Consumer group of Commit/Committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Nemesis: which fault (`kill 2`, `isolate 1`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// Nemesis: the cluster is expected to keep accepting acks=all writes during it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub available: bool,
    /// Error text of a fail/info completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Latency of a completion, milliseconds since its invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Which of its group memberships a member read in (a new one per member id or
    /// generation; a partition reader has none: its whole run is one sequence of polls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i32>,
}

impl Event {
    /// An event of `process` at `time_ms` with every optional field empty.
    pub fn new(time_ms: u64, process: impl Into<String>, kind: Kind, op: Op) -> Event {
        Event {
            time_ms,
            process: process.into(),
            kind,
            op,
            partition: None,
            value: None,
            offset: None,
            acks: None,
            idempotent: false,
            leader: None,
            leader_epoch: None,
            group: None,
            fault: None,
            available: false,
            error: None,
            latency_ms: None,
            generation: None,
        }
    }
}

/// The run's history: kept in memory for the checker and streamed to `history.jsonl`.
#[derive(Clone)]
pub struct Recorder {
    started: Instant,
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    events: Vec<Event>,
    out: Option<std::io::BufWriter<std::fs::File>>,
}

impl Recorder {
    /// A recorder writing to `path` (or only keeping events in memory).
    pub fn new(path: Option<&Path>) -> std::io::Result<Recorder> {
        let out = match path {
            Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p)?)),
            None => None,
        };
        Ok(Recorder {
            started: Instant::now(),
            inner: Arc::new(Mutex::new(Inner {
                events: Vec::new(),
                out,
            })),
        })
    }

    /// Milliseconds since the run started.
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The instant the run started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Appends an event (a write error is reported once and the file dropped; the
    /// in-memory history, which the checker uses, is kept).
    pub fn record(&self, event: Event) {
        let mut inner = self.inner.lock();
        if let Some(out) = inner.out.as_mut() {
            let line = serde_json::to_string(&event).unwrap_or_default();
            if writeln!(out, "{line}").is_err() {
                tracing::error!("cannot write history.jsonl; keeping the history in memory only");
                inner.out = None;
            }
        }
        inner.events.push(event);
    }

    /// Flushes the file.
    pub fn flush(&self) {
        if let Some(out) = self.inner.lock().out.as_mut() {
            let _ = out.flush();
        }
    }

    /// A copy of every event so far, in recording order.
    pub fn events(&self) -> Vec<Event> {
        self.inner.lock().events.clone()
    }
}

/// Reads a `history.jsonl`.
pub fn read_jsonl(path: &Path) -> anyhow::Result<Vec<Event>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}
