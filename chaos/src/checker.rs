//! The checker: reads a run's [`Event`] history and judges it. Each property is one
//! [`Verdict`]; judged verdicts decide the run, the others (acks=1 losses, duplicates of
//! non-idempotent producers) are only reported because Kafka does not promise them.
//!
//! Pure code, no I/O. Histories can hold about a million events, so the history is indexed
//! once ([`Index`]) into hash maps and every check is linear (or `n log n` where it sorts)
//! in the size of the history. Counterexamples are produced in history order so that two
//! runs of the checker on the same history print the same report.
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;
use serde_json::{json, Value};

use crate::history::{Event, Kind, Op};

/// At most this many counterexamples are kept per verdict (the count is always exact).
pub const MAX_COUNTEREXAMPLES: usize = 10;

/// The `process` of the final read's records.
pub const FINAL_PROCESS: &str = "final";

/// Acks value of acks=all sends (also assumed when a send does not say: the default of
/// current Kafka producers, and the stricter choice for a checker).
const ACKS_ALL: i16 = -1;

/// Tunables of the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CheckConfig {
    /// After a fault heals (or an `available` fault starts), an acks=all send must be
    /// acknowledged within this many milliseconds.
    pub recovery_bound_ms: u64,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            recovery_bound_ms: 30_000,
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// The check's name (`lost`, `gaps`, ...).
    pub name: &'static str,
    /// `false`: reported only, never fails the run.
    pub judged: bool,
    /// No violation.
    pub pass: bool,
    /// How many violations were found.
    pub violations: usize,
    /// One line for a person.
    pub summary: String,
    /// At most [`MAX_COUNTEREXAMPLES`] examples of violations.
    pub counterexamples: Vec<Value>,
}

/// What the history holds, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Ok sends with acks=all.
    pub acked: usize,
    /// Ok acks=all sends missing from the final read.
    pub lost: usize,
    /// Values of idempotent producers found more than once in the final read.
    pub duplicates: usize,
    /// Sends completed `info` (may or may not have happened).
    pub indeterminate: usize,
    /// Sends completed `fail` (certainly did not happen).
    pub failed: usize,
    /// Ok sends with acks=1 or acks=0.
    pub acked_acks1: usize,
    /// Ok acks=1/0 sends missing from the final read.
    pub lost_acks1: usize,
    /// Values of non-idempotent producers found more than once in the final read.
    pub duplicates_non_idempotent: usize,
    /// Records read during the run.
    pub reads: usize,
    /// Records read by the final read.
    pub final_records: usize,
}

/// One recovery measurement: the time of the fault's end (or of an `available` fault's
/// start), a label naming the fault, and the milliseconds to the first ok acks=all send
/// after it (`None`: none came).
pub type Recovery = (u64, String, Option<u64>);

/// Everything the checker found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Checked {
    /// One verdict per check, in a fixed order.
    pub verdicts: Vec<Verdict>,
    /// Counts of the history.
    pub counts: Counts,
    /// Every recovery measurement, in time order.
    pub recovery_ms: Vec<Recovery>,
}

impl Checked {
    /// Every judged verdict passes.
    pub fn pass(&self) -> bool {
        self.verdicts.iter().filter(|v| v.judged).all(|v| v.pass)
    }

    /// The verdict named `name`.
    pub fn verdict(&self, name: &str) -> Option<&Verdict> {
        self.verdicts.iter().find(|v| v.name == name)
    }
}

/// A fault the nemesis injected: from its `invoke` to its completion (`None`: never
/// healed before the history ended).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultSpan {
    /// What the fault was (`kill 2`, ...).
    pub fault: String,
    /// When it started.
    pub start_ms: u64,
    /// When it was healed.
    pub end_ms: Option<u64>,
    /// The cluster should keep accepting acks=all writes during it.
    pub available: bool,
    /// It ended with an `ok` completion (a heal worth measuring recovery from).
    pub healed_ok: bool,
}

/// Checks the history.
pub fn check(events: &[Event], config: &CheckConfig) -> Checked {
    let index = Index::build(events);
    let mut counts = index.base_counts();

    let (lost, acked, lost_n) = check_lost(&index, true);
    counts.acked = acked;
    counts.lost = lost_n;
    let (lost_acks1, acked1, lost1_n) = check_lost(&index, false);
    counts.acked_acks1 = acked1;
    counts.lost_acks1 = lost1_n;
    let (duplicates, duplicates_non_idempotent) = check_duplicates(&index);
    counts.duplicates = duplicates.violations;
    counts.duplicates_non_idempotent = duplicates_non_idempotent.violations;
    let (recovery, recovery_ms) = check_recovery(events, &index, config);
    let (poll_skip, nonmonotonic_poll) = check_polls(&index);

    let verdicts = vec![
        lost,
        lost_acks1,
        check_one_value_per_offset(&index),
        duplicates,
        duplicates_non_idempotent,
        check_unexpected_reads(&index),
        check_dirty_reads(&index),
        check_inconsistent_offsets(&index),
        poll_skip,
        nonmonotonic_poll,
        check_unseen(&index),
        check_gaps(&index),
        check_producer_order(&index),
        check_committed_monotonic(&index),
        recovery,
        check_one_leader_per_epoch(&index),
        check_final_read(&index),
        check_faults_injected(events),
    ];
    Checked {
        verdicts,
        counts,
        recovery_ms,
    }
}

/// The nemesis' faults, paired invoke → completion by fault name (first in, first out).
pub fn fault_spans(events: &[Event]) -> Vec<FaultSpan> {
    let mut spans: Vec<FaultSpan> = Vec::new();
    let mut open: HashMap<&str, Vec<usize>> = HashMap::new();
    for e in events.iter().filter(|e| e.op == Op::Nemesis) {
        let fault = e.fault.as_deref().unwrap_or("");
        if e.kind == Kind::Invoke {
            open.entry(fault).or_default().push(spans.len());
            spans.push(FaultSpan {
                fault: fault.to_string(),
                start_ms: e.time_ms,
                end_ms: None,
                available: e.available,
                healed_ok: false,
            });
        } else if let Some(i) = open
            .get_mut(fault)
            .and_then(|q| (!q.is_empty()).then(|| q.remove(0)))
        {
            spans[i].end_ms = Some(e.time_ms);
            spans[i].healed_ok = e.kind == Kind::Ok;
        }
    }
    spans
}

// ---------------------------------------------------------------------------------------
// The index: one pass over the history.
// ---------------------------------------------------------------------------------------

/// How a send ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// No completion in the history.
    Pending,
    Ok,
    Fail,
    Info,
}

/// One send, invoke and completion merged.
#[derive(Debug, Clone)]
struct SendRec<'a> {
    value: Option<&'a str>,
    process: &'a str,
    /// Position of the invocation in the history (of the completion if it had none).
    invoke_seq: usize,
    invoke_ms: u64,
    complete_ms: Option<u64>,
    partition: Option<i32>,
    offset: Option<i64>,
    acks: i16,
    idempotent: bool,
    outcome: Outcome,
}

impl SendRec<'_> {
    fn is_ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }

    /// The acknowledged offset, if the broker gave a real one (acks=0 gives -1).
    fn known_offset(&self) -> Option<i64> {
        self.offset.filter(|o| *o >= 0)
    }
}

/// One record read, during the run or by the final read.
#[derive(Debug, Clone)]
struct ReadRec<'a> {
    time_ms: u64,
    process: &'a str,
    /// The group member's generation (`None`: a partition reader, one sequence).
    generation: Option<i32>,
    partition: Option<i32>,
    offset: Option<i64>,
    value: Option<&'a str>,
    is_final: bool,
}

/// What the final read of one partition said.
#[derive(Debug, Clone, Default)]
struct FinalLog<'a> {
    /// High watermark of the last `ok` FinalRead (`None`: the read never completed).
    hw: Option<i64>,
    /// Error of a failed FinalRead.
    failure: Option<Option<&'a str>>,
    /// Offsets of the final records, as read.
    offsets: Vec<i64>,
}

/// Where a value sits in the final read, and how many distinct positions hold it.
#[derive(Debug, Clone, Copy)]
struct Placement {
    first: (i32, i64),
    copies: u32,
}

/// A `Committed` observation.
#[derive(Debug, Clone)]
struct CommittedObs<'a> {
    time_ms: u64,
    seq: usize,
    group: &'a str,
    partition: i32,
    offset: i64,
}

/// The history, indexed for the checks.
#[derive(Default)]
struct Index<'a> {
    sends: Vec<SendRec<'a>>,
    send_by_value: HashMap<&'a str, usize>,
    /// The open send of each process (for completions that do not repeat the value).
    pending: HashMap<&'a str, usize>,
    reads: Vec<ReadRec<'a>>,
    finals: BTreeMap<i32, FinalLog<'a>>,
    final_at: HashMap<(i32, i64), Option<&'a str>>,
    /// Final records at an offset already read: (partition, offset, first, second).
    final_repeats: Vec<(i32, i64, Option<&'a str>, Option<&'a str>)>,
    placements: HashMap<&'a str, Placement>,
    /// Values placed at more than one position, in the order they were found.
    duplicated: Vec<&'a str>,
    committed: Vec<CommittedObs<'a>>,
    leaders: Vec<&'a Event>,
}

impl<'a> Index<'a> {
    fn build(events: &'a [Event]) -> Index<'a> {
        let mut index = Index::default();
        for (seq, e) in events.iter().enumerate() {
            match e.op {
                Op::Send => index.add_send(seq, e),
                Op::Read if e.kind == Kind::Ok => index.add_read(e),
                Op::FinalRead => index.add_final_read(e),
                Op::Committed if e.kind == Kind::Ok => index.add_committed(seq, e),
                Op::Leader if e.kind == Kind::Ok => index.leaders.push(e),
                _ => {}
            }
        }
        index
    }

    /// Merges a send invocation or completion into its [`SendRec`]: completions are
    /// matched by their (unique) value, or else to the process' open invocation.
    fn add_send(&mut self, seq: usize, e: &'a Event) {
        if e.kind == Kind::Invoke {
            let i = self.open_send(seq, e);
            self.pending.insert(&e.process, i);
            return;
        }
        let by_value = e
            .value
            .as_deref()
            .and_then(|v| self.send_by_value.get(v).copied());
        let open = self.pending.get(e.process.as_str()).copied();
        let i = match by_value.or(open) {
            Some(i) => i,
            None => self.open_send(seq, e),
        };
        if open == Some(i) {
            self.pending.remove(e.process.as_str());
        }
        let rec = &mut self.sends[i];
        rec.complete_ms = Some(e.time_ms);
        rec.partition = e.partition.or(rec.partition);
        rec.offset = e.offset.or(rec.offset);
        rec.acks = e.acks.unwrap_or(rec.acks);
        rec.idempotent |= e.idempotent;
        rec.value = rec.value.or(e.value.as_deref());
        rec.outcome = match e.kind {
            Kind::Ok => Outcome::Ok,
            Kind::Fail => Outcome::Fail,
            Kind::Info | Kind::Invoke => Outcome::Info,
        };
    }

    /// A new send record for an invocation, or for a completion whose invocation is not
    /// in the history (a truncated history: the send is taken as invoked when it
    /// completed); returns its index.
    fn open_send(&mut self, seq: usize, e: &'a Event) -> usize {
        let i = self.sends.len();
        self.sends.push(SendRec {
            value: e.value.as_deref(),
            process: &e.process,
            invoke_seq: seq,
            invoke_ms: e.time_ms,
            complete_ms: None,
            partition: e.partition,
            offset: None,
            acks: e.acks.unwrap_or(ACKS_ALL),
            idempotent: e.idempotent,
            outcome: Outcome::Pending,
        });
        if let Some(v) = e.value.as_deref() {
            self.send_by_value.insert(v, i);
        }
        i
    }

    fn add_read(&mut self, e: &'a Event) {
        let is_final = e.process == FINAL_PROCESS;
        let value = e.value.as_deref();
        self.reads.push(ReadRec {
            time_ms: e.time_ms,
            process: &e.process,
            generation: e.generation,
            partition: e.partition,
            offset: e.offset,
            value,
            is_final,
        });
        if !is_final {
            return;
        }
        let (Some(p), Some(o)) = (e.partition, e.offset) else {
            return;
        };
        self.finals.entry(p).or_default().offsets.push(o);
        if let Some(&first) = self.final_at.get(&(p, o)) {
            self.final_repeats.push((p, o, first, value));
            return;
        }
        self.final_at.insert((p, o), value);
        if let Some(v) = value {
            self.place(v, (p, o));
        }
    }

    /// Notes that value `v` sits at `at` in the final read.
    fn place(&mut self, v: &'a str, at: (i32, i64)) {
        let placement = self.placements.entry(v).or_insert(Placement {
            first: at,
            copies: 0,
        });
        placement.copies += 1;
        if placement.copies == 2 {
            self.duplicated.push(v);
        }
    }

    fn add_final_read(&mut self, e: &'a Event) {
        let Some(p) = e.partition else { return };
        let log = self.finals.entry(p).or_default();
        match e.kind {
            Kind::Ok => log.hw = Some(e.offset.unwrap_or(0)),
            Kind::Fail | Kind::Info => log.failure = Some(e.error.as_deref()),
            Kind::Invoke => {}
        }
    }

    fn add_committed(&mut self, seq: usize, e: &'a Event) {
        let (Some(group), Some(partition), Some(offset)) =
            (e.group.as_deref(), e.partition, e.offset)
        else {
            return;
        };
        self.committed.push(CommittedObs {
            time_ms: e.time_ms,
            seq,
            group,
            partition,
            offset,
        });
    }

    /// The final high watermark of `p`, if its final read completed.
    fn final_hw(&self, p: i32) -> Option<i64> {
        self.finals.get(&p).and_then(|f| f.hw)
    }

    /// Counts that need no judgement.
    fn base_counts(&self) -> Counts {
        let final_records = self.reads.iter().filter(|r| r.is_final).count();
        Counts {
            indeterminate: self
                .sends
                .iter()
                .filter(|s| s.outcome == Outcome::Info)
                .count(),
            failed: self
                .sends
                .iter()
                .filter(|s| s.outcome == Outcome::Fail)
                .count(),
            reads: self.reads.len() - final_records,
            final_records,
            ..Counts::default()
        }
    }
}

// ---------------------------------------------------------------------------------------
// Checks.
// ---------------------------------------------------------------------------------------

/// Violations being collected: an exact count and the first few examples.
#[derive(Default)]
struct Violations {
    count: usize,
    examples: Vec<Value>,
}

impl Violations {
    /// Counts one violation; `example` is only built while examples are still kept, so
    /// a history full of violations costs no more than a clean one.
    fn add(&mut self, example: impl FnOnce() -> Value) {
        self.count += 1;
        if self.examples.len() < MAX_COUNTEREXAMPLES {
            self.examples.push(example());
        }
    }

    fn verdict(self, name: &'static str, judged: bool, summary: String) -> Verdict {
        Verdict {
            name,
            judged,
            pass: self.count == 0,
            violations: self.count,
            summary,
            counterexamples: self.examples,
        }
    }
}

/// `lost` (acks=all, judged) or `lost-acks1` (acks 1 and 0, reported): every ok send must
/// be in the final read of its partition at its acknowledged offset with its value. A
/// send without a usable offset (acks=0 answers -1) must at least be somewhere in its
/// partition. Sends to partitions whose final read did not complete cannot be verified
/// (the `final-read` check fails for those). Returns the verdict, ok sends, lost sends.
fn check_lost(index: &Index<'_>, acks_all: bool) -> (Verdict, usize, usize) {
    let mut v = Violations::default();
    let (mut acked, mut unverifiable) = (0, 0);
    let selected = index
        .sends
        .iter()
        .filter(|s| s.is_ok() && (s.acks == ACKS_ALL) == acks_all);
    for s in selected {
        acked += 1;
        let Some(value) = s.value else {
            unverifiable += 1;
            continue;
        };
        if s.partition.is_some_and(|p| index.final_hw(p).is_none()) {
            unverifiable += 1;
            continue;
        }
        let placed = index.placements.get(value).map(|pl| pl.first);
        let found = match (s.partition, s.known_offset()) {
            (Some(p), Some(o)) => index.final_at.get(&(p, o)).copied().flatten(),
            _ => placed
                .filter(|(p, _)| s.partition.is_none_or(|sp| sp == *p))
                .map(|_| value),
        };
        if found != Some(value) {
            v.add(|| {
                json!({
                    "value": value, "partition": s.partition, "offset": s.offset,
                    "found": found, "found_at": placed.map(|(p, o)| json!([p, o])),
                })
            });
        }
    }
    let lost = v.count;
    let (name, what, judged) = if acks_all {
        ("lost", "acks=all", true)
    } else {
        ("lost-acks1", "acks=1/0", false)
    };
    let mut summary =
        format!("{lost} of {acked} acknowledged {what} sends missing from the final read");
    if unverifiable > 0 {
        summary.push_str(&format!(
            " ({unverifiable} not verifiable: no value or no complete final read of their partition)"
        ));
    }
    (v.verdict(name, judged, summary), acked, lost)
}

/// `one-value-per-offset`: an offset of a partition holds one record, so two ok acks=all
/// sends acknowledged at the same offset with different values, or two final-read records
/// at the same offset, mean the log forked (or an acknowledgement lied). Acks=1 sends are
/// left out: a new leader legitimately reuses the offsets of acks=1 records it never had.
fn check_one_value_per_offset(index: &Index<'_>) -> Verdict {
    let mut v = Violations::default();
    let mut acked_at: HashMap<(i32, i64), &str> = HashMap::new();
    for s in index
        .sends
        .iter()
        .filter(|s| s.is_ok() && s.acks == ACKS_ALL)
    {
        let (Some(p), Some(o), Some(value)) = (s.partition, s.known_offset(), s.value) else {
            continue;
        };
        match acked_at.get(&(p, o)) {
            Some(&other) if other != value => v.add(|| {
                json!({"partition": p, "offset": o, "values": [other, value], "source": "acknowledged sends"})
            }),
            Some(_) => {}
            None => {
                acked_at.insert((p, o), value);
            }
        }
    }
    for &(p, o, first, second) in &index.final_repeats {
        v.add(|| json!({"partition": p, "offset": o, "values": [first, second], "source": "final read"}));
    }
    let summary = format!("{} offsets with two records", v.count);
    v.verdict("one-value-per-offset", true, summary)
}

/// `duplicates` (judged, idempotent producers) and `duplicates-non-idempotent` (reported):
/// a value found at more than one position of the final read was written more than once.
/// Idempotent producers promise this does not happen; plain producers retry and may.
fn check_duplicates(index: &Index<'_>) -> (Verdict, Verdict) {
    let mut idem = Violations::default();
    let mut plain = Violations::default();
    let is_idempotent = |v: &str| {
        index
            .send_by_value
            .get(v)
            .is_some_and(|&i| index.sends[i].idempotent)
    };
    let examples = positions_of(index, &index.duplicated, MAX_COUNTEREXAMPLES);
    for &value in &index.duplicated {
        let copies = index.placements.get(value).map_or(0, |p| p.copies);
        let example = || json!({"value": value, "copies": copies, "at": examples.get(value)});
        if is_idempotent(value) {
            idem.add(example);
        } else {
            plain.add(example);
        }
    }
    let s1 = format!(
        "{} values of idempotent producers found more than once in the final read",
        idem.count
    );
    let s2 = format!(
        "{} values of non-idempotent producers found more than once in the final read (allowed)",
        plain.count
    );
    (
        idem.verdict("duplicates", true, s1),
        plain.verdict("duplicates-non-idempotent", false, s2),
    )
}

/// Every position of the first `limit` idempotent and `limit` other duplicated values (a
/// second pass over the final records, only for the values shown as counterexamples).
fn positions_of<'a>(
    index: &Index<'a>,
    duplicated: &[&'a str],
    limit: usize,
) -> HashMap<&'a str, Vec<[i64; 2]>> {
    let (mut idem, mut plain) = (0, 0);
    let mut wanted: HashMap<&str, Vec<[i64; 2]>> = HashMap::new();
    for &v in duplicated {
        let is_idem = index
            .send_by_value
            .get(v)
            .is_some_and(|&i| index.sends[i].idempotent);
        let n = if is_idem { &mut idem } else { &mut plain };
        if *n < limit {
            *n += 1;
            wanted.insert(v, Vec::new());
        }
    }
    for r in index.reads.iter().filter(|r| r.is_final) {
        let (Some(v), Some(p), Some(o)) = (r.value, r.partition, r.offset) else {
            continue;
        };
        if let Some(at) = wanted.get_mut(v) {
            at.push([i64::from(p), o]);
        }
    }
    wanted
}

/// `unexpected-reads`: every record read (during the run or finally) must carry a value
/// that some send invoked, in that partition, before the read, and whose send did not
/// fail (a `fail` completion means it certainly was not written).
fn check_unexpected_reads(index: &Index<'_>) -> Verdict {
    let mut v = Violations::default();
    for r in &index.reads {
        let Some(reason) = unexpected_reason(index, r) else {
            continue;
        };
        v.add(|| {
            json!({
                "value": r.value, "partition": r.partition, "offset": r.offset,
                "process": r.process, "time_ms": r.time_ms, "reason": reason,
            })
        });
    }
    let summary = format!("{} records read that were never written", v.count);
    v.verdict("unexpected-reads", true, summary)
}

/// Why read `r` is impossible, if it is.
fn unexpected_reason(index: &Index<'_>, r: &ReadRec<'_>) -> Option<String> {
    let Some(value) = r.value else {
        return Some("null value (never sent)".to_string());
    };
    let Some(&i) = index.send_by_value.get(value) else {
        return Some("never sent".to_string());
    };
    let s = &index.sends[i];
    if s.outcome == Outcome::Fail {
        return Some("its send failed".to_string());
    }
    if let (Some(sp), Some(rp)) = (s.partition, r.partition) {
        if sp != rp {
            return Some(format!("sent to partition {sp}"));
        }
    }
    if !r.is_final && r.time_ms < s.invoke_ms {
        return Some(format!(
            "read before its send was invoked at {} ms",
            s.invoke_ms
        ));
    }
    None
}

/// `dirty-reads`: a record read during the run must be the record the final read found at
/// that offset, and below the final high watermark. Otherwise the consumer saw a record
/// that was later truncated (read above the high watermark, or from a deposed leader).
/// Partitions without a complete final read are skipped; offsets the final read does not
/// hold (below the log start, or a gap reported by `gaps`) cannot be compared.
fn check_dirty_reads(index: &Index<'_>) -> Verdict {
    let mut v = Violations::default();
    for r in index.reads.iter().filter(|r| !r.is_final) {
        let (Some(p), Some(o)) = (r.partition, r.offset) else {
            continue;
        };
        let Some(hw) = index.final_hw(p) else {
            continue;
        };
        let final_value = index.final_at.get(&(p, o)).copied();
        let dirty = o >= hw || final_value.is_some_and(|fv| fv != r.value);
        if dirty {
            v.add(|| {
                json!({
                    "value": r.value, "partition": p, "offset": o, "process": r.process,
                    "time_ms": r.time_ms, "final_value": final_value.flatten(), "final_hw": hw,
                })
            });
        }
    }
    let summary = format!("{} reads of records that are not in the final log", v.count);
    v.verdict("dirty-reads", true, summary)
}

/// `inconsistent-offsets` (Jepsen): every read of one offset, by any reader during the
/// run or by the final read, sees the same record; two values mean readers were served
/// different logs.
fn check_inconsistent_offsets(index: &Index<'_>) -> Verdict {
    let mut v = Violations::default();
    let mut seen: HashMap<(i32, i64), &ReadRec<'_>> = HashMap::new();
    let mut reported: HashSet<(i32, i64)> = HashSet::new();
    for r in &index.reads {
        let (Some(p), Some(o)) = (r.partition, r.offset) else {
            continue;
        };
        match seen.get(&(p, o)) {
            None => {
                seen.insert((p, o), r);
            }
            Some(first) if first.value != r.value && reported.insert((p, o)) => v.add(|| {
                json!({
                    "partition": p, "offset": o,
                    "first": {"process": first.process, "value": first.value, "time_ms": first.time_ms},
                    "second": {"process": r.process, "value": r.value, "time_ms": r.time_ms},
                })
            }),
            Some(_) => {}
        }
    }
    let summary = format!("{} offsets read with two different records", v.count);
    v.verdict("inconsistent-offsets", true, summary)
}

/// `poll-skip` and `nonmonotonic-poll` (Jepsen): one consumer's successive reads of a
/// partition within one generation (a partition reader: its whole run) move forward one
/// record at a time. Going back, or reading the same offset again, is nonmonotonic; moving
/// past records the final log holds between the two reads is a skip (the consumer would
/// have silently missed them). Skips are judged where the partition's final read
/// completed.
fn check_polls(index: &Index<'_>) -> (Verdict, Verdict) {
    let mut skip = Violations::default();
    let mut back = Violations::default();
    let logs: HashMap<i32, Vec<i64>> = index
        .finals
        .iter()
        .filter(|(_, f)| f.hw.is_some())
        .map(|(&p, f)| {
            let mut offsets = f.offsets.clone();
            offsets.sort_unstable();
            offsets.dedup();
            (p, offsets)
        })
        .collect();
    let mut last: HashMap<(&str, Option<i32>, i32), (i64, u64)> = HashMap::new();
    for r in index.reads.iter().filter(|r| !r.is_final) {
        let (Some(p), Some(o)) = (r.partition, r.offset) else {
            continue;
        };
        let Some((prev, prev_ms)) = last.insert((r.process, r.generation, p), (o, r.time_ms))
        else {
            continue;
        };
        let example = |extra: Value| {
            let mut e = json!({
                "process": r.process, "generation": r.generation, "partition": p,
                "previous": prev, "previous_ms": prev_ms, "offset": o, "time_ms": r.time_ms,
            });
            if let (Value::Object(e), Value::Object(extra)) = (&mut e, extra) {
                e.extend(extra);
            }
            e
        };
        if o <= prev {
            back.add(|| example(json!({})));
            continue;
        }
        let Some(offsets) = logs.get(&p) else {
            continue;
        };
        let from = offsets.partition_point(|&x| x <= prev);
        let to = offsets.partition_point(|&x| x < o);
        if to > from {
            skip.add(|| example(json!({"skipped": to - from, "first_skipped": offsets[from]})));
        }
    }
    let skip_summary = format!("{} polls skipped records the log holds", skip.count);
    let back_summary = format!("{} polls went back or repeated an offset", back.count);
    (
        skip.verdict("poll-skip", true, skip_summary),
        back.verdict("nonmonotonic-poll", true, back_summary),
    )
}

/// `unseen` (reported, Jepsen): acknowledged records no consumer read during the run
/// although a later offset of their partition was read. Consumers may lag or rebalance,
/// so this is not a violation by itself; `lost` judges what the final read lacks.
fn check_unseen(index: &Index<'_>) -> Verdict {
    let mut v = Violations::default();
    let read: HashSet<&str> = index
        .reads
        .iter()
        .filter(|r| !r.is_final)
        .filter_map(|r| r.value)
        .collect();
    let mut furthest: HashMap<i32, i64> = HashMap::new();
    for r in index.reads.iter().filter(|r| !r.is_final) {
        if let (Some(p), Some(o)) = (r.partition, r.offset) {
            let f = furthest.entry(p).or_insert(o);
            *f = (*f).max(o);
        }
    }
    for s in index.sends.iter().filter(|s| s.is_ok()) {
        let (Some(p), Some(o), Some(value)) = (s.partition, s.known_offset(), s.value) else {
            continue;
        };
        if !read.contains(value) && furthest.get(&p).is_some_and(|&f| f > o) {
            v.add(|| json!({"value": value, "partition": p, "offset": o}));
        }
    }
    let summary = format!(
        "{} acknowledged records were passed over by every consumer during the run",
        v.count
    );
    v.verdict("unseen", false, summary)
}

/// `gaps`: without compaction or transactions, a partition's offsets are contiguous from
/// its log start (the first offset read) to the high watermark - 1; and the final read
/// should hold nothing at or above the high watermark.
fn check_gaps(index: &Index<'_>) -> Verdict {
    let mut v = Violations::default();
    let mut missing: i64 = 0;
    for (&p, log) in &index.finals {
        let Some(hw) = log.hw else { continue };
        let mut offsets = log.offsets.clone();
        offsets.sort_unstable();
        offsets.dedup();
        for &o in offsets.iter().filter(|&&o| o >= hw) {
            v.add(|| json!({"partition": p, "offset": o, "hw": hw, "reason": "record at or above the high watermark"}));
        }
        let below: Vec<i64> = offsets.into_iter().filter(|&o| o < hw).collect();
        let Some(&last) = below.last() else { continue };
        let holes = below
            .windows(2)
            .map(|w| (w[0] + 1, w[1] - 1))
            .chain(std::iter::once((last + 1, hw - 1)));
        for (from, to) in holes.filter(|(from, to)| from <= to) {
            missing += to - from + 1;
            v.add(|| json!({"partition": p, "missing_from": from, "missing_to": to, "hw": hw}));
        }
    }
    let summary = format!(
        "{} gaps ({missing} offsets missing) in the final read",
        v.count
    );
    v.verdict("gaps", true, summary)
}

/// `producer-order`: an idempotent producer's acknowledged sends to one partition land
/// in the order it invoked them (one op at a time per process), so their offsets strictly
/// increase; a reordering means the broker accepted an out-of-sequence batch.
fn check_producer_order(index: &Index<'_>) -> Verdict {
    let mut v = Violations::default();
    let mut per_producer: BTreeMap<(&str, i32), Vec<&SendRec<'_>>> = BTreeMap::new();
    for s in index.sends.iter().filter(|s| s.is_ok() && s.idempotent) {
        if let (Some(p), Some(_)) = (s.partition, s.known_offset()) {
            per_producer.entry((s.process, p)).or_default().push(s);
        }
    }
    for ((process, p), mut sends) in per_producer {
        sends.sort_by_key(|s| s.invoke_seq);
        for w in sends.windows(2) {
            let (a, b) = (w[0], w[1]);
            if b.offset <= a.offset {
                v.add(|| {
                    json!({
                        "process": process, "partition": p,
                        "earlier": {"value": a.value, "offset": a.offset, "invoke_ms": a.invoke_ms},
                        "later": {"value": b.value, "offset": b.offset, "invoke_ms": b.invoke_ms},
                    })
                });
            }
        }
    }
    let summary = format!(
        "{} idempotent sends acknowledged out of invocation order",
        v.count
    );
    v.verdict("producer-order", true, summary)
}

/// `committed-offsets-monotonic`: a group's committed offset for a partition, as fetched
/// by the harness over time, never goes backwards (a lost or rolled-back commit would).
fn check_committed_monotonic(index: &Index<'_>) -> Verdict {
    let mut v = Violations::default();
    let mut obs: Vec<&CommittedObs<'_>> = index.committed.iter().collect();
    obs.sort_by_key(|c| (c.time_ms, c.seq));
    let mut last: HashMap<(&str, i32), &CommittedObs<'_>> = HashMap::new();
    for c in obs {
        if let Some(prev) = last.insert((c.group, c.partition), c) {
            if c.offset < prev.offset {
                v.add(|| {
                    json!({
                        "group": c.group, "partition": c.partition, "previous": prev.offset,
                        "previous_ms": prev.time_ms, "offset": c.offset, "time_ms": c.time_ms,
                    })
                });
            }
        }
    }
    let summary = format!("{} committed offsets went backwards", v.count);
    v.verdict("committed-offsets-monotonic", true, summary)
}

/// A moment recovery is measured from.
struct RecoveryPoint<'s> {
    at_ms: u64,
    label: String,
    /// The fault it belongs to (excluded when looking for overlapping faults).
    span: &'s FaultSpan,
}

/// `recovery`: after a fault heals, and from the start of a fault the cluster should
/// tolerate (`available`), every partition the workload is still writing to must
/// acknowledge an acks=all send within the bound: recovery is judged per partition, so
/// one partition left without a leader fails the run even while the others are fine.
/// A partition is judged only when acks=all sends to it were invoked past the window
/// (else there was nothing to acknowledge), and no window is judged while another,
/// unavailable fault overlaps it (its own heal is measured instead). The measurement of
/// each point is its slowest partition, returned in time order.
fn check_recovery(
    events: &[Event],
    index: &Index<'_>,
    config: &CheckConfig,
) -> (Verdict, Vec<Recovery>) {
    let bound = config.recovery_bound_ms;
    let spans = fault_spans(events);
    let acks_all = || index.sends.iter().filter(|s| s.acks == ACKS_ALL);
    let mut ok_times: BTreeMap<Option<i32>, Vec<u64>> = BTreeMap::new();
    let mut last_invoke: BTreeMap<Option<i32>, u64> = BTreeMap::new();
    for s in acks_all() {
        let last = last_invoke.entry(s.partition).or_insert(s.invoke_ms);
        *last = (*last).max(s.invoke_ms);
        if let (true, Some(done)) = (s.is_ok(), s.complete_ms) {
            ok_times.entry(s.partition).or_default().push(done);
        }
    }
    for times in ok_times.values_mut() {
        times.sort_unstable();
    }
    let mut points = recovery_points(&spans);
    points.sort_by_key(|p| p.at_ms);

    let mut v = Violations::default();
    let (mut measured, mut excused) = (Vec::new(), 0);
    for point in &points {
        let t = point.at_ms;
        let window_end = t.saturating_add(bound);
        let first_ok = |p: &Option<i32>| {
            let times = ok_times.get(p)?;
            times.get(times.partition_point(|&x| x < t)).map(|&x| x - t)
        };
        // Partitions still written to past the window, each with its first ack after t.
        let judged: Vec<(Option<i32>, Option<u64>)> = last_invoke
            .iter()
            .filter(|(_, &last)| last >= window_end)
            .map(|(p, _)| (*p, first_ok(p)))
            .collect();
        let slowest = if judged.is_empty() {
            ok_times.keys().filter_map(first_ok).min()
        } else {
            judged
                .iter()
                .map(|(_, first)| *first)
                .try_fold(0, |acc, f| f.map(|f| acc.max(f)))
        };
        measured.push((t, point.label.clone(), slowest));
        let late: Vec<&(Option<i32>, Option<u64>)> = judged
            .iter()
            .filter(|(_, first)| !first.is_some_and(|ms| ms <= bound))
            .collect();
        if late.is_empty() {
            continue;
        }
        if overlaps_unavailable(&spans, point.span, t, window_end) {
            excused += 1;
            continue;
        }
        for (partition, first) in late {
            v.add(|| {
                json!({
                    "fault": point.label, "at_ms": t, "partition": partition,
                    "first_ok_after_ms": first, "bound_ms": bound,
                })
            });
        }
    }
    let mut summary = format!(
        "{} partition recoveries took longer than {bound} ms, over {} fault points",
        v.count,
        measured.len()
    );
    if excused > 0 {
        summary.push_str(&format!(
            " ({excused} slow points not judged: another unavailable fault overlapped)"
        ));
    }
    (v.verdict("recovery", true, summary), measured)
}

/// The moments to measure recovery from: every `ok` heal, and every `available` start.
fn recovery_points(spans: &[FaultSpan]) -> Vec<RecoveryPoint<'_>> {
    let mut points = Vec::new();
    for span in spans {
        if span.available {
            points.push(RecoveryPoint {
                at_ms: span.start_ms,
                label: format!("{} (started, available)", span.fault),
                span,
            });
        }
        if let (true, Some(end)) = (span.healed_ok, span.end_ms) {
            points.push(RecoveryPoint {
                at_ms: end,
                label: format!("{} (healed)", span.fault),
                span,
            });
        }
    }
    points
}

/// Another fault, not expected to stay available, is active somewhere in `[t, end)`.
fn overlaps_unavailable(spans: &[FaultSpan], own: &FaultSpan, t: u64, end: u64) -> bool {
    spans.iter().any(|s| {
        !std::ptr::eq(s, own) && !s.available && s.start_ms < end && s.end_ms.is_none_or(|e| e > t)
    })
}

/// `one-leader-per-epoch`: a leader epoch names one leader; two brokers seen leading a
/// partition in the same epoch is split brain.
fn check_one_leader_per_epoch(index: &Index<'_>) -> Verdict {
    let mut v = Violations::default();
    let mut seen: HashMap<(i32, i32), Vec<i32>> = HashMap::new();
    for e in &index.leaders {
        let (Some(p), Some(epoch), Some(leader)) = (e.partition, e.leader_epoch, e.leader) else {
            continue;
        };
        if leader < 0 {
            continue; // No leader at the moment: nothing claimed the epoch.
        }
        let leaders = seen.entry((p, epoch)).or_default();
        if leaders.contains(&leader) {
            continue;
        }
        leaders.push(leader);
        if leaders.len() > 1 {
            let all = leaders.clone();
            v.add(|| {
                json!({"partition": p, "leader_epoch": epoch, "leaders": all, "time_ms": e.time_ms, "process": e.process})
            });
        }
    }
    let summary = format!(
        "{} (partition, epoch) pairs seen with another leader",
        v.count
    );
    v.verdict("one-leader-per-epoch", true, summary)
}

/// `final-read`: every partition written to (and every partition whose final read failed)
/// must have been read completely after healing, or the other checks cannot see it.
fn check_final_read(index: &Index<'_>) -> Verdict {
    let mut v = Violations::default();
    let mut partitions: BTreeSet<i32> = index.sends.iter().filter_map(|s| s.partition).collect();
    partitions.extend(
        index
            .finals
            .iter()
            .filter(|(_, f)| f.failure.is_some())
            .map(|(p, _)| *p),
    );
    let mut total = 0;
    for p in partitions {
        total += 1;
        let log = index.finals.get(&p);
        if log.is_some_and(|f| f.hw.is_some()) {
            continue;
        }
        let error = log.and_then(|f| f.failure).flatten();
        let reason = match log.and_then(|f| f.failure) {
            Some(_) => "final read failed",
            None => "no final read",
        };
        v.add(|| json!({"partition": p, "reason": reason, "error": error}));
    }
    let summary = format!(
        "{} of {total} partitions without a complete final read",
        v.count
    );
    v.verdict("final-read", true, summary)
}

/// `faults-injected`: every fault the nemesis started completed as planned, and no fault
/// round failed (a scenario whose faults were never injected proves nothing, so it must
/// not pass).
fn check_faults_injected(events: &[Event]) -> Verdict {
    let mut v = Violations::default();
    for e in events
        .iter()
        .filter(|e| e.op == Op::Nemesis && e.kind == Kind::Fail)
    {
        v.add(|| json!({"time_ms": e.time_ms, "fault": e.fault, "error": e.error}));
    }
    let spans = fault_spans(events);
    for s in spans.iter().filter(|s| !s.healed_ok) {
        v.add(|| json!({"time_ms": s.start_ms, "fault": s.fault, "error": "never completed"}));
    }
    let summary = format!(
        "{} of {} faults (or fault rounds) not injected as planned",
        v.count,
        spans.len()
    );
    v.verdict("faults-injected", true, summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds histories by hand; time advances 10 ms per event unless set.
    #[derive(Default)]
    struct H {
        events: Vec<Event>,
        t: u64,
    }

    impl H {
        fn new() -> H {
            H::default()
        }

        fn at(&mut self, t: u64) -> &mut Self {
            self.t = t;
            self
        }

        fn push(&mut self, mut e: Event) -> &mut Self {
            e.time_ms = self.t;
            self.t += 10;
            self.events.push(e);
            self
        }

        fn send_event(
            kind: Kind,
            process: &str,
            p: i32,
            value: &str,
            acks: i16,
            idem: bool,
        ) -> Event {
            let mut e = Event::new(0, process, kind, Op::Send);
            e.partition = Some(p);
            e.value = Some(value.to_string());
            e.acks = Some(acks);
            e.idempotent = idem;
            e
        }

        fn invoke(
            &mut self,
            process: &str,
            p: i32,
            value: &str,
            acks: i16,
            idem: bool,
        ) -> &mut Self {
            self.push(Self::send_event(
                Kind::Invoke,
                process,
                p,
                value,
                acks,
                idem,
            ))
        }

        #[allow(clippy::too_many_arguments)]
        fn complete(
            &mut self,
            kind: Kind,
            process: &str,
            p: i32,
            value: &str,
            acks: i16,
            idem: bool,
            offset: Option<i64>,
        ) -> &mut Self {
            let mut e = Self::send_event(kind, process, p, value, acks, idem);
            e.offset = offset;
            e.latency_ms = Some(10.0);
            self.push(e)
        }

        /// An acks=all idempotent send acknowledged at `offset`.
        fn ok(&mut self, process: &str, p: i32, value: &str, offset: i64) -> &mut Self {
            self.send(process, p, value, -1, true, Kind::Ok, Some(offset))
        }

        #[allow(clippy::too_many_arguments)]
        fn send(
            &mut self,
            process: &str,
            p: i32,
            value: &str,
            acks: i16,
            idem: bool,
            kind: Kind,
            offset: Option<i64>,
        ) -> &mut Self {
            self.invoke(process, p, value, acks, idem);
            self.complete(kind, process, p, value, acks, idem, offset)
        }

        fn read(&mut self, process: &str, p: i32, offset: i64, value: &str) -> &mut Self {
            let mut e = Event::new(0, process, Kind::Ok, Op::Read);
            e.partition = Some(p);
            e.offset = Some(offset);
            e.value = Some(value.to_string());
            self.push(e)
        }

        /// The final read of `p`: `records` from offset `start`, high watermark after them.
        fn final_read(&mut self, p: i32, start: i64, records: &[&str]) -> &mut Self {
            for (i, v) in records.iter().enumerate() {
                self.read(FINAL_PROCESS, p, start + i as i64, v);
            }
            self.final_hw(p, start + records.len() as i64)
        }

        fn final_hw(&mut self, p: i32, hw: i64) -> &mut Self {
            let mut e = Event::new(0, FINAL_PROCESS, Kind::Ok, Op::FinalRead);
            e.partition = Some(p);
            e.offset = Some(hw);
            self.push(e)
        }

        fn nemesis(&mut self, kind: Kind, fault: &str, available: bool) -> &mut Self {
            let mut e = Event::new(0, "nemesis", kind, Op::Nemesis);
            e.fault = Some(fault.to_string());
            e.available = available;
            self.push(e)
        }

        fn committed(&mut self, group: &str, p: i32, offset: i64) -> &mut Self {
            let mut e = Event::new(0, "observer", Kind::Ok, Op::Committed);
            e.group = Some(group.to_string());
            e.partition = Some(p);
            e.offset = Some(offset);
            self.push(e)
        }

        fn leader(&mut self, p: i32, epoch: i32, leader: i32) -> &mut Self {
            let mut e = Event::new(0, "observer", Kind::Ok, Op::Leader);
            e.partition = Some(p);
            e.leader_epoch = Some(epoch);
            e.leader = Some(leader);
            self.push(e)
        }

        fn check(&self) -> Checked {
            check(&self.events, &CheckConfig::default())
        }
    }

    /// A clean history touching every kind of event.
    fn clean() -> H {
        let mut h = H::new();
        h.leader(0, 1, 1).leader(1, 1, 2);
        h.ok("p1", 0, "a", 0)
            .ok("p1", 0, "b", 1)
            .ok("p2", 1, "c", 0);
        h.read("c1", 0, 0, "a").read("c1", 1, 0, "c");
        h.committed("g", 0, 1);
        h.nemesis(Kind::Invoke, "kill 1", false);
        h.send("p1", 0, "x", -1, true, Kind::Fail, None);
        h.send("p2", 1, "y", -1, true, Kind::Info, None);
        h.nemesis(Kind::Ok, "kill 1", false);
        h.leader(0, 2, 2);
        h.ok("p1", 0, "d", 2).ok("p2", 1, "e", 1);
        h.send("p3", 0, "f", 1, false, Kind::Ok, Some(3));
        h.read("c1", 0, 1, "b").committed("g", 0, 3);
        h.final_read(0, 0, &["a", "b", "d", "f"]);
        h.final_read(1, 0, &["c", "e"]);
        h
    }

    fn failing(c: &Checked) -> Vec<&'static str> {
        c.verdicts
            .iter()
            .filter(|v| !v.pass)
            .map(|v| v.name)
            .collect()
    }

    #[test]
    fn clean_history_passes_every_check() {
        let c = clean().check();
        assert!(c.pass(), "{:#?}", c.verdicts);
        assert!(failing(&c).is_empty(), "{:?}", failing(&c));
        assert_eq!(c.verdicts.len(), 18);
        let expected = Counts {
            acked: 5,
            lost: 0,
            duplicates: 0,
            indeterminate: 1,
            failed: 1,
            acked_acks1: 1,
            lost_acks1: 0,
            duplicates_non_idempotent: 0,
            reads: 3,
            final_records: 6,
        };
        assert_eq!(c.counts, expected);
        assert_eq!(c.recovery_ms.len(), 1);
        assert_eq!(c.recovery_ms[0].1, "kill 1 (healed)");
        assert!(c.recovery_ms[0].2.is_some());
    }

    #[test]
    fn verdict_names_are_the_documented_ones() {
        let c = clean().check();
        let names: Vec<&str> = c.verdicts.iter().map(|v| v.name).collect();
        for name in [
            "lost",
            "lost-acks1",
            "one-value-per-offset",
            "duplicates",
            "duplicates-non-idempotent",
            "unexpected-reads",
            "dirty-reads",
            "inconsistent-offsets",
            "poll-skip",
            "nonmonotonic-poll",
            "unseen",
            "gaps",
            "producer-order",
            "committed-offsets-monotonic",
            "recovery",
            "one-leader-per-epoch",
            "final-read",
            "faults-injected",
        ] {
            assert!(names.contains(&name), "{name} missing");
        }
        assert!(!c.verdict("lost-acks1").is_some_and(|v| v.judged));
        assert!(!c
            .verdict("duplicates-non-idempotent")
            .is_some_and(|v| v.judged));
    }

    #[test]
    fn a_poll_that_skips_a_record_the_log_holds_fails() {
        let mut h = clean();
        // c2 reads offsets 0 and 2 of partition 0: offset 1 ("b") is in the final log.
        h.read("c2", 0, 0, "a").read("c2", 0, 2, "d");
        let c = h.check();
        assert_eq!(failing(&c), vec!["poll-skip"]);
        assert_eq!(c.verdict("poll-skip").map(|v| v.violations), Some(1));
        // The same jump across generations of a group member is a rebalance, not a skip.
        let mut h = clean();
        let mut first = Event::new(0, "m1", Kind::Ok, Op::Read);
        (first.partition, first.offset, first.value) = (Some(0), Some(0), Some("a".into()));
        first.generation = Some(1);
        let mut later = first.clone();
        (later.offset, later.value, later.generation) = (Some(2), Some("d".into()), Some(2));
        h.push(first).push(later);
        assert!(h.check().pass());
    }

    #[test]
    fn a_poll_going_back_fails() {
        let mut h = clean();
        h.read("c2", 0, 1, "b").read("c2", 0, 0, "a");
        let c = h.check();
        assert_eq!(failing(&c), vec!["nonmonotonic-poll"]);
    }

    #[test]
    fn two_readers_seeing_two_records_at_one_offset_fail() {
        // No final read of partition 2 to compare with: the readers disagree with each other.
        let mut h = clean();
        h.read("c1", 2, 0, "q").read("c2", 2, 0, "r");
        let c = h.check();
        assert!(
            failing(&c).contains(&"inconsistent-offsets"),
            "{:?}",
            failing(&c)
        );
        assert_eq!(
            c.verdict("inconsistent-offsets").map(|v| v.violations),
            Some(1)
        );
    }

    #[test]
    fn records_every_consumer_passed_over_are_reported_not_judged() {
        let mut h = clean();
        // c1 read partition 1 at offset 0 only; "e" (offset 1) was passed over once
        // someone reads offset 2.
        h.ok("p2", 1, "g", 2).read("c3", 1, 2, "g");
        h.final_read(1, 0, &["c", "e", "g"]);
        let c = h.check();
        let v = c.verdict("unseen").unwrap();
        assert_eq!((v.judged, v.violations), (false, 1));
    }

    #[test]
    fn recovery_is_judged_per_partition() {
        // After the heal, partition 0 acknowledges at once but partition 1 never does,
        // though sends to it go on: the cluster as a whole "recovered", partition 1 did not.
        let mut h = H::new();
        h.nemesis(Kind::Invoke, "kill 1", false)
            .nemesis(Kind::Ok, "kill 1", false);
        h.at(1_000).ok("p1", 0, "a", 0);
        for i in 0..5 {
            h.at(2_000 + i * 20_000)
                .send("p2", 1, &format!("x{i}"), -1, true, Kind::Info, None);
        }
        h.final_read(0, 0, &["a"]).final_read(1, 0, &[]);
        let c = h.check();
        let v = c.verdict("recovery").unwrap();
        assert!(!v.pass, "{v:?}");
        assert_eq!(v.counterexamples[0]["partition"], 1);
        assert_eq!(
            c.recovery_ms[0].2, None,
            "the slowest partition never recovered"
        );
    }

    #[test]
    fn two_available_faults_in_a_row_do_not_excuse_a_slow_partition() {
        // Partition 1's leader is killed twice in a row and the partition acknowledges
        // nothing for 35 s from the first kill: each kill is one the cluster should ride
        // through, so the outage is judged, not excused by the second.
        let mut h = H::new();
        h.nemesis(Kind::Invoke, "kill 1", true);
        h.at(6_000).nemesis(Kind::Ok, "kill 1", true);
        h.at(10_000).nemesis(Kind::Invoke, "kill 2", true);
        h.at(16_000).nemesis(Kind::Ok, "kill 2", true);
        h.at(35_000).ok("p1", 1, "a", 0);
        h.at(70_000).send("p1", 1, "b", -1, true, Kind::Info, None);
        h.final_read(1, 0, &["a"]);
        let c = h.check();
        assert!(!c.verdict("recovery").unwrap().pass);
    }

    #[test]
    fn lost_acknowledged_write_fails() {
        let mut h = H::new();
        h.ok("p1", 0, "a", 0).ok("p1", 0, "b", 1);
        h.final_read(0, 0, &["a"]);
        let c = h.check();
        assert!(!c.pass());
        let lost = c.verdict("lost").expect("lost");
        assert_eq!(lost.violations, 1);
        assert_eq!(lost.counterexamples[0]["value"], "b");
        assert_eq!(lost.counterexamples[0]["offset"], 1);
        assert!(lost.counterexamples[0]["found"].is_null());
        assert_eq!(c.counts.lost, 1);
        assert_eq!(c.counts.acked, 2);
    }

    #[test]
    fn acknowledged_write_at_another_offset_is_lost() {
        let mut h = H::new();
        h.ok("p1", 0, "a", 0).ok("p1", 0, "b", 1);
        h.final_read(0, 0, &["b", "a"]);
        let c = h.check();
        let lost = c.verdict("lost").expect("lost");
        assert_eq!(lost.violations, 2);
        assert_eq!(lost.counterexamples[0]["found"], "b");
        assert_eq!(lost.counterexamples[0]["found_at"], json!([0, 1]));
    }

    #[test]
    fn acks1_loss_is_reported_but_does_not_fail() {
        let mut h = H::new();
        h.ok("p1", 0, "a", 0);
        h.send("p2", 0, "b", 1, false, Kind::Ok, Some(1));
        h.send("p3", 0, "z", 0, false, Kind::Ok, Some(-1));
        h.final_read(0, 0, &["a"]);
        let c = h.check();
        assert!(c.pass(), "{:#?}", c.verdicts);
        let v = c.verdict("lost-acks1").expect("lost-acks1");
        assert!(!v.judged);
        assert!(!v.pass);
        assert_eq!(v.violations, 2);
        assert_eq!(c.counts.lost_acks1, 2);
        assert_eq!(c.counts.acked_acks1, 2);
        assert_eq!(c.counts.lost, 0);
    }

    #[test]
    fn acks0_send_is_found_by_value() {
        let mut h = H::new();
        h.send("p3", 0, "z", 0, false, Kind::Ok, Some(-1));
        h.final_read(0, 0, &["z"]);
        let c = h.check();
        assert!(c.verdict("lost-acks1").is_some_and(|v| v.pass));
    }

    #[test]
    fn two_values_acknowledged_at_one_offset_fail() {
        let mut h = H::new();
        h.ok("p1", 0, "a", 0).ok("p2", 0, "b", 0);
        h.final_read(0, 0, &["a"]);
        let c = h.check();
        let v = c.verdict("one-value-per-offset").expect("verdict");
        assert_eq!(v.violations, 1);
        assert_eq!(v.counterexamples[0]["values"], json!(["a", "b"]));
    }

    #[test]
    fn acks1_offset_reused_by_a_new_leader_is_not_a_fork() {
        let mut h = H::new();
        h.send("p2", 0, "a", 1, false, Kind::Ok, Some(0));
        h.ok("p1", 0, "b", 0);
        h.final_read(0, 0, &["b"]);
        let c = h.check();
        assert!(c.pass(), "{:#?}", c.verdicts);
        assert_eq!(c.counts.lost_acks1, 1);
    }

    #[test]
    fn two_final_records_at_one_offset_fail() {
        let mut h = H::new();
        h.ok("p1", 0, "a", 0);
        h.read(FINAL_PROCESS, 0, 0, "a")
            .read(FINAL_PROCESS, 0, 0, "q")
            .final_hw(0, 1);
        let c = h.check();
        assert_eq!(
            c.verdict("one-value-per-offset").map(|v| v.violations),
            Some(1)
        );
        assert_eq!(c.verdict("duplicates").map(|v| v.violations), Some(0));
    }

    #[test]
    fn duplicate_of_idempotent_value_fails() {
        let mut h = H::new();
        h.ok("p1", 0, "a", 0);
        h.final_read(0, 0, &["a", "a"]);
        let c = h.check();
        assert!(!c.pass());
        let v = c.verdict("duplicates").expect("duplicates");
        assert_eq!(v.violations, 1);
        assert_eq!(v.counterexamples[0]["copies"], 2);
        assert_eq!(v.counterexamples[0]["at"], json!([[0, 0], [0, 1]]));
        assert_eq!(c.counts.duplicates, 1);
    }

    #[test]
    fn duplicate_across_partitions_is_found() {
        let mut h = H::new();
        h.ok("p1", 0, "a", 0);
        h.final_read(0, 0, &["a"]).final_read(1, 0, &["a"]);
        let c = h.check();
        assert_eq!(c.counts.duplicates, 1);
        // Also in the wrong partition.
        assert_eq!(c.verdict("unexpected-reads").map(|v| v.violations), Some(1));
    }

    #[test]
    fn duplicate_of_non_idempotent_value_is_only_reported() {
        let mut h = H::new();
        h.send("p1", 0, "a", -1, false, Kind::Ok, Some(0));
        h.final_read(0, 0, &["a", "a"]);
        let c = h.check();
        assert!(c.pass(), "{:#?}", c.verdicts);
        assert_eq!(c.counts.duplicates, 0);
        assert_eq!(c.counts.duplicates_non_idempotent, 1);
        let v = c.verdict("duplicates-non-idempotent").expect("verdict");
        assert!(!v.judged && !v.pass);
    }

    #[test]
    fn read_of_failed_value_fails() {
        let mut h = H::new();
        h.ok("p1", 0, "a", 0);
        h.send("p1", 0, "x", -1, true, Kind::Fail, None);
        h.read("c1", 0, 1, "x");
        h.final_read(0, 0, &["a", "x"]);
        let c = h.check();
        let v = c.verdict("unexpected-reads").expect("verdict");
        assert_eq!(v.violations, 2, "{v:#?}");
        assert_eq!(v.counterexamples[0]["reason"], "its send failed");
    }

    #[test]
    fn read_of_indeterminate_value_is_fine() {
        let mut h = H::new();
        h.send("p1", 0, "y", -1, true, Kind::Info, None);
        h.read("c1", 0, 0, "y");
        h.final_read(0, 0, &["y"]);
        assert!(h.check().pass());
    }

    #[test]
    fn read_of_value_never_sent_fails() {
        let mut h = H::new();
        h.read("c1", 0, 0, "ghost");
        h.final_hw(0, 0);
        let c = h.check();
        let v = c.verdict("unexpected-reads").expect("verdict");
        assert_eq!(v.counterexamples[0]["reason"], "never sent");
        // Also a read at the final high watermark: dirty.
        assert_eq!(c.verdict("dirty-reads").map(|v| v.violations), Some(1));
    }

    #[test]
    fn read_before_the_send_was_invoked_fails() {
        let mut h = H::new();
        h.at(100).read("c1", 0, 0, "a");
        h.at(200).ok("p1", 0, "a", 0);
        h.final_read(0, 0, &["a"]);
        let v = h
            .check()
            .verdict("unexpected-reads")
            .cloned()
            .expect("verdict");
        assert_eq!(v.violations, 1);
    }

    #[test]
    fn dirty_read_of_truncated_record_fails() {
        let mut h = H::new();
        h.send("p1", 0, "a", -1, true, Kind::Info, None);
        h.ok("p1", 0, "b", 0);
        h.read("c1", 0, 0, "a"); // The old leader's record, truncated later.
        h.final_read(0, 0, &["b"]);
        let c = h.check();
        let v = c.verdict("dirty-reads").expect("verdict");
        assert_eq!(v.violations, 1);
        assert_eq!(v.counterexamples[0]["final_value"], "b");
        assert!(!c.pass());
    }

    #[test]
    fn dirty_read_above_high_watermark_fails() {
        let mut h = H::new();
        h.ok("p1", 0, "a", 0);
        h.send("p1", 0, "b", -1, true, Kind::Info, None);
        h.read("c1", 0, 1, "b");
        h.final_read(0, 0, &["a"]);
        let v = h.check().verdict("dirty-reads").cloned().expect("verdict");
        assert_eq!(v.violations, 1);
        assert_eq!(v.counterexamples[0]["final_hw"], 1);
    }

    #[test]
    fn dirty_reads_skip_partitions_without_final_read() {
        let mut h = H::new();
        h.ok("p1", 0, "a", 0);
        h.read("c1", 0, 5, "a");
        let c = h.check();
        assert_eq!(c.verdict("dirty-reads").map(|v| v.violations), Some(0));
        assert_eq!(c.verdict("final-read").map(|v| v.violations), Some(1));
    }

    #[test]
    fn gap_in_final_read_fails() {
        let mut h = H::new();
        h.send("p1", 0, "a", 1, false, Kind::Ok, Some(0));
        h.send("p1", 0, "c", 1, false, Kind::Ok, Some(2));
        h.read(FINAL_PROCESS, 0, 0, "a")
            .read(FINAL_PROCESS, 0, 2, "c")
            .final_hw(0, 4);
        let c = h.check();
        let v = c.verdict("gaps").expect("gaps");
        assert_eq!(v.violations, 2, "{v:#?}");
        assert_eq!(
            v.counterexamples[0],
            json!({"partition": 0, "missing_from": 1, "missing_to": 1, "hw": 4})
        );
        assert_eq!(v.counterexamples[1]["missing_from"], 3);
        assert!(v.summary.contains("2 offsets missing"));
        assert!(!c.pass());
    }

    #[test]
    fn final_read_may_start_at_the_log_start() {
        let mut h = H::new();
        h.send("p1", 0, "c", 1, false, Kind::Ok, Some(5));
        h.final_read(0, 5, &["c"]);
        assert!(h.check().pass());
    }

    #[test]
    fn out_of_order_idempotent_producer_fails() {
        let mut h = H::new();
        h.ok("p1", 0, "a", 1).ok("p1", 0, "b", 0);
        h.final_read(0, 0, &["b", "a"]);
        let c = h.check();
        let v = c.verdict("producer-order").expect("verdict");
        assert_eq!(v.violations, 1);
        assert_eq!(v.counterexamples[0]["later"]["value"], "b");
    }

    #[test]
    fn non_idempotent_producer_order_is_not_judged() {
        let mut h = H::new();
        h.send("p1", 0, "a", -1, false, Kind::Ok, Some(1));
        h.send("p1", 0, "b", -1, false, Kind::Ok, Some(0));
        h.final_read(0, 0, &["b", "a"]);
        assert!(h.check().pass());
    }

    #[test]
    fn interleaved_producers_are_ordered_separately() {
        let mut h = H::new();
        h.ok("p1", 0, "a", 0)
            .ok("p2", 0, "b", 1)
            .ok("p1", 0, "c", 2)
            .ok("p2", 0, "d", 3);
        h.final_read(0, 0, &["a", "b", "c", "d"]);
        assert!(h.check().pass());
    }

    #[test]
    fn committed_offset_going_backwards_fails() {
        let mut h = H::new();
        h.committed("g", 0, 5)
            .committed("g", 1, 2)
            .committed("g", 0, 3)
            .committed("h", 0, 1);
        let c = h.check();
        let v = c.verdict("committed-offsets-monotonic").expect("verdict");
        assert_eq!(v.violations, 1);
        assert_eq!(v.counterexamples[0]["previous"], 5);
        assert_eq!(v.counterexamples[0]["offset"], 3);
    }

    #[test]
    fn committed_observations_are_ordered_by_time() {
        let mut h = H::new();
        h.at(200).committed("g", 0, 5);
        h.at(100).committed("g", 0, 3);
        assert!(h.check().pass());
    }

    /// A history where acks=all sends keep coming every second until `until`, failing
    /// (info) until `recovered`, ok afterwards; a fault heals at 10 s.
    fn recovery_history(recovered: u64, until: u64, available: Option<bool>) -> H {
        let mut h = H::new();
        h.at(0)
            .nemesis(Kind::Invoke, "isolate 1", available.unwrap_or(false));
        h.at(10_000).nemesis(Kind::Ok, "isolate 1", false);
        let mut t = 10_000;
        let mut n = 0;
        while t < until {
            let value = format!("v{n}");
            h.at(t).invoke("p1", 0, &value, -1, true);
            let kind = if t + 500 >= recovered {
                Kind::Ok
            } else {
                Kind::Info
            };
            h.at(t + 500).complete(
                kind,
                "p1",
                0,
                &value,
                -1,
                true,
                (kind == Kind::Ok).then_some(n),
            );
            if kind == Kind::Ok {
                n += 1;
            }
            t += 1_000;
        }
        h.events.sort_by_key(|e| e.time_ms);
        let values: Vec<String> = (0..n).map(|i| format!("v{i}")).collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        h.at(until + 1_000).final_read(0, 0, &refs);
        h
    }

    #[test]
    fn quick_recovery_passes_and_is_measured() {
        let c = recovery_history(12_000, 60_000, None).check();
        assert!(c.pass(), "{:#?}", c.verdicts);
        assert_eq!(
            c.recovery_ms,
            vec![(10_000, "isolate 1 (healed)".to_string(), Some(2_500))]
        );
    }

    #[test]
    fn no_recovery_within_the_bound_fails() {
        let c = recovery_history(50_000, 60_000, None).check();
        let v = c.verdict("recovery").expect("recovery");
        assert_eq!(v.violations, 1, "{v:#?}");
        assert!(!c.pass());
        assert_eq!(c.recovery_ms[0].2, Some(40_500));
    }

    #[test]
    fn never_recovering_while_still_sending_fails() {
        let c = recovery_history(u64::MAX, 60_000, None).check();
        assert_eq!(c.recovery_ms[0].2, None);
        assert_eq!(c.verdict("recovery").map(|v| v.violations), Some(1));
    }

    #[test]
    fn history_ending_inside_the_window_is_not_a_violation() {
        let c = recovery_history(u64::MAX, 25_000, None).check();
        assert_eq!(c.recovery_ms[0].2, None);
        assert_eq!(c.verdict("recovery").map(|v| v.violations), Some(0));
    }

    #[test]
    fn available_fault_start_is_measured() {
        let c = recovery_history(12_000, 60_000, Some(true)).check();
        assert_eq!(c.recovery_ms.len(), 2);
        assert_eq!(c.recovery_ms[0].1, "isolate 1 (started, available)");
        // From 0 ms the first ok came at 12.5 s: within the bound.
        assert_eq!(c.recovery_ms[0].2, Some(12_500));
        assert!(c.pass());
    }

    #[test]
    fn slow_recovery_under_another_unavailable_fault_is_not_judged() {
        let mut h = recovery_history(50_000, 60_000, None);
        h.at(5_000).nemesis(Kind::Invoke, "kill 2", false);
        h.at(49_000).nemesis(Kind::Ok, "kill 2", false);
        h.events.sort_by_key(|e| e.time_ms);
        let c = h.check();
        assert_eq!(c.recovery_ms.len(), 2);
        // `isolate 1` healed at 10 s while `kill 2` was still on: excused; `kill 2`
        // healed at 49 s and the cluster was back at 50.5 s.
        assert_eq!(
            c.verdict("recovery").map(|v| v.violations),
            Some(0),
            "{:#?}",
            c.verdict("recovery")
        );
    }

    #[test]
    fn two_leaders_in_one_epoch_fail() {
        let mut h = H::new();
        h.leader(0, 3, 1)
            .leader(0, 3, 1)
            .leader(0, 4, 2)
            .leader(0, 3, 2)
            .leader(1, 3, 2)
            .leader(0, 5, -1);
        let c = h.check();
        let v = c.verdict("one-leader-per-epoch").expect("verdict");
        assert_eq!(v.violations, 1);
        assert_eq!(v.counterexamples[0]["leaders"], json!([1, 2]));
        assert!(!c.pass());
    }

    #[test]
    fn missing_final_read_fails() {
        let mut h = H::new();
        h.ok("p1", 0, "a", 0).ok("p1", 1, "b", 0);
        h.final_read(0, 0, &["a"]);
        let c = h.check();
        let v = c.verdict("final-read").expect("verdict");
        assert_eq!(v.violations, 1);
        assert_eq!(v.counterexamples[0]["partition"], 1);
        assert_eq!(v.counterexamples[0]["reason"], "no final read");
        // The unverifiable send is not counted lost.
        assert_eq!(c.counts.lost, 0);
        assert!(!c.pass());
    }

    #[test]
    fn failed_final_read_fails() {
        let mut h = H::new();
        h.ok("p1", 0, "a", 0);
        let mut e = Event::new(0, FINAL_PROCESS, Kind::Fail, Op::FinalRead);
        e.partition = Some(0);
        e.error = Some("NOT_LEADER".to_string());
        h.push(e);
        let mut e = Event::new(0, FINAL_PROCESS, Kind::Fail, Op::FinalRead);
        e.partition = Some(7);
        h.push(e);
        let c = h.check();
        let v = c.verdict("final-read").expect("verdict");
        assert_eq!(v.violations, 2);
        assert_eq!(v.counterexamples[0]["error"], "NOT_LEADER");
        assert_eq!(v.counterexamples[0]["reason"], "final read failed");
    }

    #[test]
    fn completion_without_value_pairs_with_the_process_invocation() {
        let mut h = H::new();
        h.invoke("p1", 0, "a", -1, true);
        let mut e = Event::new(0, "p1", Kind::Ok, Op::Send);
        e.offset = Some(0);
        h.push(e);
        h.final_read(0, 0, &["a"]);
        let c = h.check();
        assert!(c.pass(), "{:#?}", c.verdicts);
        assert_eq!(c.counts.acked, 1);
    }

    #[test]
    fn counterexamples_are_capped_but_counts_are_exact() {
        let mut h = H::new();
        for i in 0..25 {
            h.ok("p1", 0, &format!("v{i}"), i);
        }
        h.final_hw(0, 0);
        let c = h.check();
        let v = c.verdict("lost").expect("lost");
        assert_eq!(v.violations, 25);
        assert_eq!(v.counterexamples.len(), MAX_COUNTEREXAMPLES);
    }

    #[test]
    fn checked_serializes() {
        let c = clean().check();
        let json = serde_json::to_value(&c).expect("serialize");
        assert_eq!(json["counts"]["acked"], 5);
        assert_eq!(json["verdicts"][0]["name"], "lost");
        assert_eq!(json["recovery_ms"][0][1], "kill 1 (healed)");
    }

    #[test]
    fn fault_spans_pair_by_name() {
        let mut h = H::new();
        h.at(0).nemesis(Kind::Invoke, "kill 1", false);
        h.at(5).nemesis(Kind::Invoke, "pause 2", true);
        h.at(7).nemesis(Kind::Ok, "kill 1", false);
        let spans = fault_spans(&h.events);
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].end_ms, Some(7));
        assert!(spans[0].healed_ok);
        assert_eq!(spans[1].end_ms, None);
        assert!(spans[1].available);
    }

    #[test]
    fn large_history_is_checked_quickly() {
        let mut h = H::new();
        let n: i64 = 100_000;
        for i in 0..n {
            h.ok(
                &format!("p{}", i % 8),
                (i % 4) as i32,
                &format!("v{i}"),
                i / 4,
            );
        }
        for p in 0..4 {
            let values: Vec<String> = (0..n / 4).map(|o| format!("v{}", o * 4 + p)).collect();
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            h.final_read(p as i32, 0, &refs);
        }
        let started = std::time::Instant::now();
        let c = h.check();
        assert!(
            c.pass(),
            "{:#?}",
            c.verdicts.iter().filter(|v| !v.pass).collect::<Vec<_>>()
        );
        assert_eq!(c.counts.acked, n as usize);
        assert!(started.elapsed().as_secs() < 20);
    }

    #[test]
    fn a_fault_that_was_not_injected_fails_the_run() {
        assert!(clean()
            .check()
            .verdict("faults-injected")
            .is_some_and(|v| v.pass));
        // A round that failed before injecting anything.
        let mut h = clean();
        let mut e = Event::new(0, "nemesis", Kind::Fail, Op::Nemesis);
        e.fault = Some("kill-leader".to_string());
        e.error = Some("partition 0 has no leader to pick".to_string());
        h.push(e);
        let v = h.check();
        let v = v.verdict("faults-injected").unwrap();
        assert!(v.judged && !v.pass && v.violations == 1, "{v:?}");
        // A fault started but never completed.
        let mut h = clean();
        h.nemesis(Kind::Invoke, "power cut 2", true);
        let c = h.check();
        assert!(!c.verdict("faults-injected").unwrap().pass);
    }
}
