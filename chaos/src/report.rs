//! The run's report: `summary.json` for machines (the runner's contract: at least
//! `verdict`, `acked`, `lost`, `duplicates`) and `report.html` for people, one static file
//! with no scripts and no network, so it can be attached to a CI run and opened anywhere.
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::checker::{fault_spans, Checked, Counts, Recovery, Verdict};
use crate::history::{Event, Kind, Op};

/// Percentiles of a set of latencies, milliseconds (0 when there were none).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// A fault the nemesis injected, as drawn on the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultWindow {
    pub fault: String,
    pub start_ms: u64,
    /// `None`: never healed before the history ended.
    pub end_ms: Option<u64>,
}

/// `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `pass` or `fail`: every judged check passed.
    pub verdict: String,
    pub scenario: String,
    pub backend: String,
    pub seed: u64,
    pub duration_s: u64,
    /// Ok sends with acks=all.
    pub acked: usize,
    /// Of those, missing from the final read.
    pub lost: usize,
    /// Values of idempotent producers found more than once.
    pub duplicates: usize,
    pub counts: Counts,
    pub checks: Vec<Verdict>,
    pub recovery_ms: Vec<Recovery>,
    /// Ok acks=all sends per second of the run.
    pub throughput_per_s: f64,
    /// Latency of ok sends.
    pub latency_ms: Percentiles,
    pub faults: Vec<FaultWindow>,
    pub notes: Vec<String>,
}

/// Builds the summary of a checked run.
pub fn summarize(
    scenario: &str,
    backend: &str,
    seed: u64,
    duration_s: u64,
    events: &[Event],
    checked: Checked,
    notes: Vec<String>,
) -> Summary {
    let verdict = if checked.pass() { "pass" } else { "fail" };
    let faults = fault_spans(events)
        .into_iter()
        .map(|s| FaultWindow {
            fault: s.fault,
            start_ms: s.start_ms,
            end_ms: s.end_ms,
        })
        .collect();
    let mut latencies: Vec<f64> = events
        .iter()
        .filter(|e| is_ok_send(e))
        .filter_map(|e| e.latency_ms)
        .collect();
    Summary {
        verdict: verdict.to_string(),
        scenario: scenario.to_string(),
        backend: backend.to_string(),
        seed,
        duration_s,
        acked: checked.counts.acked,
        lost: checked.counts.lost,
        duplicates: checked.counts.duplicates,
        throughput_per_s: throughput(checked.counts.acked, duration_s, events),
        latency_ms: percentiles(&mut latencies),
        counts: checked.counts,
        checks: checked.verdicts,
        recovery_ms: checked.recovery_ms,
        faults,
        notes,
    }
}

/// Writes `dir/summary.json` (pretty) and `dir/report.html`, creating `dir`.
pub fn write(dir: &Path, summary: &Summary, events: &[Event]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_string_pretty(summary).context("serializing the summary")?;
    let path = dir.join("summary.json");
    std::fs::write(&path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    let path = dir.join("report.html");
    std::fs::write(&path, render_html(summary, events))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A send completion that succeeded.
fn is_ok_send(e: &Event) -> bool {
    e.op == Op::Send && e.kind == Kind::Ok
}

/// The acks of a send, acks=all when unsaid (as the checker assumes).
fn is_acks_all(e: &Event) -> bool {
    e.acks.unwrap_or(-1) == -1
}

/// Ok acks=all sends per second: over `duration_s` (the run's configured length), or when
/// that is 0, over the span from the first send invocation to the last send completion.
fn throughput(acked: usize, duration_s: u64, events: &[Event]) -> f64 {
    let seconds = if duration_s > 0 {
        duration_s as f64
    } else {
        let times = events
            .iter()
            .filter(|e| e.op == Op::Send)
            .map(|e| e.time_ms);
        let (lo, hi) = times.fold((u64::MAX, 0), |(lo, hi), t| (lo.min(t), hi.max(t)));
        if hi > lo {
            (hi - lo) as f64 / 1000.0
        } else {
            0.0
        }
    };
    if seconds > 0.0 {
        acked as f64 / seconds
    } else {
        0.0
    }
}

/// Nearest-rank percentiles (non-finite values ignored); sorts `values`.
fn percentiles(values: &mut Vec<f64>) -> Percentiles {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    Percentiles {
        p50: nearest_rank(values, 50.0),
        p99: nearest_rank(values, 99.0),
        max: values.last().copied().unwrap_or(0.0),
    }
}

/// The `p`th percentile of sorted `values` by nearest rank: the smallest value with at
/// least `p`% of the values at or below it (0 for no values).
fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Escapes text for HTML content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// HTML.
// ---------------------------------------------------------------------------------------

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}\
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.3em .6em;\
text-align:left;vertical-align:top}th{background:#f3f3f3}.pass{color:#1a7f37}.fail{color:#c62828}\
.info{color:#666}.verdict{font-size:3em;font-weight:bold;margin:.2em 0}.meta span{margin-right:1.5em}\
pre{background:#f7f7f7;padding:.5em;overflow-x:auto;font-size:.85em}svg{border:1px solid #ddd}";

/// The whole `report.html`.
pub fn render_html(summary: &Summary, events: &[Event]) -> String {
    let mut html = String::new();
    html.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    let _ = writeln!(
        html,
        "<title>Spate chaos: {} {}</title><style>{STYLE}</style></head><body>",
        esc(&summary.scenario),
        esc(&summary.verdict)
    );
    html.push_str(&header_html(summary));
    html.push_str("<h2>Checks</h2>\n");
    html.push_str(&checks_html(&summary.checks));
    html.push_str("<h2>Timeline</h2>\n");
    html.push_str(&timeline_svg(
        &Timeline::build(events, summary.duration_s),
        &summary.faults,
    ));
    html.push_str("<h2>Recovery</h2>\n");
    html.push_str(&recovery_html(&summary.recovery_ms));
    html.push_str("<h2>Faults</h2>\n");
    html.push_str(&faults_html(&summary.faults));
    html.push_str("<h2>Counts</h2>\n");
    html.push_str(&counts_html(&summary.counts));
    html.push_str(&notes_html(&summary.notes));
    html.push_str("</body></html>\n");
    html
}

/// The verdict, big and coloured, then what ran and the key numbers.
fn header_html(s: &Summary) -> String {
    let class = if s.verdict == "pass" { "pass" } else { "fail" };
    let mut h = String::new();
    let _ = write!(
        h,
        "<h1>Spate chaos run</h1>\n<div class=\"verdict {class}\">{}</div>\n",
        esc(&s.verdict.to_uppercase())
    );
    let _ = writeln!(
        h,
        "<p class=\"meta\"><span>scenario <b>{}</b></span><span>backend <b>{}</b></span>\
         <span>seed <b>{}</b></span><span>duration <b>{} s</b></span></p>",
        esc(&s.scenario),
        esc(&s.backend),
        s.seed,
        s.duration_s
    );
    let _ = writeln!(
        h,
        "<p class=\"meta\"><span>acked <b>{}</b></span><span>lost <b>{}</b></span>\
         <span>duplicates <b>{}</b></span><span>throughput <b>{:.1}/s</b></span>\
         <span>latency p50 <b>{:.1} ms</b> p99 <b>{:.1} ms</b> max <b>{:.1} ms</b></span></p>",
        s.acked,
        s.lost,
        s.duplicates,
        s.throughput_per_s,
        s.latency_ms.p50,
        s.latency_ms.p99,
        s.latency_ms.max
    );
    h
}

/// One row per check, counterexamples folded in a `<details>`.
fn checks_html(checks: &[Verdict]) -> String {
    let mut h = String::from("<table><tr><th>check</th><th>judged</th><th>result</th><th>violations</th><th>summary</th></tr>\n");
    for v in checks {
        let (class, result) = match (v.pass, v.judged) {
            (true, _) => ("pass", "pass"),
            (false, true) => ("fail", "FAIL"),
            (false, false) => ("info", "reported"),
        };
        let judged = if v.judged { "yes" } else { "no (reported)" };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{judged}</td><td class=\"{class}\"><b>{result}</b></td><td>{}</td><td>{}{}</td></tr>",
            esc(v.name),
            v.violations,
            esc(&v.summary),
            counterexamples_html(v)
        );
    }
    h.push_str("</table>\n");
    h
}

fn counterexamples_html(v: &Verdict) -> String {
    if v.counterexamples.is_empty() {
        return String::new();
    }
    let lines: Vec<String> = v
        .counterexamples
        .iter()
        .map(|c| esc(&c.to_string()))
        .collect();
    let noun = if lines.len() == 1 {
        "counterexample"
    } else {
        "counterexamples"
    };
    let shown = if v.violations > lines.len() {
        format!("first {} of {} {noun}", lines.len(), v.violations)
    } else {
        format!("{} {noun}", lines.len())
    };
    format!(
        "<details><summary>{shown}</summary><pre>{}</pre></details>",
        lines.join("\n")
    )
}

fn recovery_html(recovery: &[Recovery]) -> String {
    if recovery.is_empty() {
        return "<p>No fault healed: nothing to measure.</p>\n".to_string();
    }
    let mut h = String::from(
        "<table><tr><th>fault</th><th>at (s)</th><th>ms to first ok acks=all send</th></tr>\n",
    );
    for (at, fault, ms) in recovery {
        let ms = ms.map_or_else(|| "none came".to_string(), |m| m.to_string());
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{:.1}</td><td>{ms}</td></tr>",
            esc(fault),
            *at as f64 / 1000.0
        );
    }
    h.push_str("</table>\n");
    h
}

fn faults_html(faults: &[FaultWindow]) -> String {
    if faults.is_empty() {
        return "<p>No faults were injected.</p>\n".to_string();
    }
    let mut h = String::from("<table><tr><th>fault</th><th>start (s)</th><th>end (s)</th></tr>\n");
    for f in faults {
        let end = f.end_ms.map_or_else(
            || "never healed".to_string(),
            |e| format!("{:.1}", e as f64 / 1000.0),
        );
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{:.1}</td><td>{end}</td></tr>",
            esc(&f.fault),
            f.start_ms as f64 / 1000.0
        );
    }
    h.push_str("</table>\n");
    h
}

fn counts_html(counts: &Counts) -> String {
    let mut h = String::from("<table>");
    // Serialized so that a count added to `Counts` shows up without touching this code.
    if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(counts) {
        for (name, value) in map {
            let _ = write!(
                h,
                "<tr><th>{}</th><td>{}</td></tr>",
                esc(&name),
                esc(&value.to_string())
            );
        }
    }
    h.push_str("</table>\n");
    h
}

fn notes_html(notes: &[String]) -> String {
    if notes.is_empty() {
        return String::new();
    }
    let items: String = notes
        .iter()
        .map(|n| format!("<li>{}</li>", esc(n)))
        .collect();
    format!("<h2>Notes</h2>\n<ul>{items}</ul>\n")
}

// ---------------------------------------------------------------------------------------
// The timeline.
// ---------------------------------------------------------------------------------------

/// Per second of the run (by completion time): sends acknowledged with acks=all, sends
/// failed or indeterminate, and the p99 latency of every send completion (failed and
/// timed-out ones included: their latency is what an outage looks like to a client).
#[derive(Debug, Clone, PartialEq)]
struct Timeline {
    ok: Vec<u64>,
    bad: Vec<u64>,
    p99: Vec<Option<f64>>,
}

impl Timeline {
    /// Buckets cover the whole history (at least `duration_s` seconds).
    fn build(events: &[Event], duration_s: u64) -> Timeline {
        let last_s = events.iter().map(|e| e.time_ms / 1000).max().unwrap_or(0);
        let n = usize::try_from(last_s.max(duration_s.saturating_sub(1)) + 1).unwrap_or(1);
        let mut ok = vec![0; n];
        let mut bad = vec![0; n];
        let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); n];
        for e in events.iter().filter(|e| e.op == Op::Send) {
            let Some(i) = usize::try_from(e.time_ms / 1000).ok().filter(|&i| i < n) else {
                continue;
            };
            match e.kind {
                Kind::Invoke => continue,
                Kind::Ok if is_acks_all(e) => ok[i] += 1,
                Kind::Ok => {}
                Kind::Fail | Kind::Info => bad[i] += 1,
            }
            if let Some(l) = e.latency_ms {
                latencies[i].push(l);
            }
        }
        let p99 = latencies
            .into_iter()
            .map(|mut l| {
                (!l.is_empty())
                    .then(|| percentiles(&mut l).p99)
                    .filter(|&v| v > 0.0)
            })
            .collect();
        Timeline { ok, bad, p99 }
    }

    fn seconds(&self) -> usize {
        self.ok.len()
    }
}

const W: f64 = 1000.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const RATE_TOP: f64 = 34.0;
const RATE_H: f64 = 140.0;
const LAT_TOP: f64 = 196.0;
const LAT_H: f64 = 70.0;
const H: f64 = 300.0;
const OK_COLOUR: &str = "#1a7f37";
const BAD_COLOUR: &str = "#c62828";
const LAT_COLOUR: &str = "#1d4ed8";
const FAULT_COLOUR: &str = "#f59e0b";

/// Maps a time in seconds to an x coordinate.
struct XAxis {
    seconds: f64,
}

impl XAxis {
    fn x(&self, s: f64) -> f64 {
        LEFT + (s / self.seconds).clamp(0.0, 1.0) * (W - LEFT - RIGHT)
    }
}

/// The timeline as inline SVG: rates on top, p99 latency (log scale) below, faults shaded
/// across both panels.
fn timeline_svg(t: &Timeline, faults: &[FaultWindow]) -> String {
    let axis = XAxis {
        seconds: t.seconds().max(1) as f64,
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" \
         font-size=\"11\" font-family=\"sans-serif\">\n"
    );
    svg.push_str(&faults_svg(&axis, faults));
    svg.push_str(&rate_panel_svg(&axis, t));
    svg.push_str(&latency_panel_svg(&axis, &t.p99));
    svg.push_str(&x_ticks_svg(&axis));
    svg.push_str(&legend_svg());
    svg.push_str("</svg>\n");
    svg
}

/// Translucent rectangles over both panels, each labelled with its fault.
fn faults_svg(axis: &XAxis, faults: &[FaultWindow]) -> String {
    let mut svg = String::new();
    for (i, f) in faults.iter().enumerate() {
        let x0 = axis.x(f.start_ms as f64 / 1000.0);
        let x1 = f
            .end_ms
            .map_or(W - RIGHT, |e| axis.x(e as f64 / 1000.0))
            .max(x0 + 1.0);
        let _ = writeln!(
            svg,
            "<rect x=\"{x0:.1}\" y=\"{RATE_TOP}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{FAULT_COLOUR}\" \
             fill-opacity=\"0.18\"><title>{}</title></rect>",
            x1 - x0,
            LAT_TOP + LAT_H - RATE_TOP,
            esc(&f.fault)
        );
        let y = RATE_TOP + 11.0 + (i % 3) as f64 * 12.0;
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{y}\" fill=\"#92400e\">{}</text>",
            x0 + 2.0,
            esc(&f.fault)
        );
    }
    svg
}

/// The top panel: ok acks=all sends/s and failed+indeterminate sends/s, with its y axis.
fn rate_panel_svg(axis: &XAxis, t: &Timeline) -> String {
    let max = t.ok.iter().chain(&t.bad).copied().max().unwrap_or(0).max(1) as f64;
    let (top, step) = nice_scale(max);
    let y = |v: f64| RATE_TOP + RATE_H - v / top * RATE_H;
    let mut svg = frame_svg(RATE_TOP, RATE_H);
    let mut v = 0.0;
    while v <= top + step / 2.0 {
        svg.push_str(&y_tick_svg(y(v), &format_number(v)));
        v += step;
    }
    svg.push_str(&axis_title_svg(RATE_TOP + RATE_H / 2.0, "records/s"));
    let series = |values: &[u64]| -> Vec<Option<(f64, f64)>> {
        values
            .iter()
            .enumerate()
            .map(|(i, &c)| Some((axis.x(i as f64 + 0.5), y(c as f64))))
            .collect()
    };
    svg.push_str(&path_svg(&series(&t.bad), BAD_COLOUR));
    svg.push_str(&path_svg(&series(&t.ok), OK_COLOUR));
    svg
}

/// The bottom panel: p99 send latency per second on a log scale.
fn latency_panel_svg(axis: &XAxis, p99: &[Option<f64>]) -> String {
    let mut svg = frame_svg(LAT_TOP, LAT_H);
    svg.push_str(&axis_title_svg(LAT_TOP + LAT_H / 2.0, "p99 ms"));
    let present = p99.iter().flatten().copied();
    let (lo, hi) = present.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" fill=\"#888\">no latency data</text>",
            W / 2.0 - 40.0,
            LAT_TOP + LAT_H / 2.0
        );
        return svg;
    }
    let lo_dec = lo.log10().floor().max(-2.0);
    let hi_dec = hi.log10().ceil().max(lo_dec + 1.0);
    let y = |v: f64| {
        let f = (v.max(10f64.powf(lo_dec)).log10() - lo_dec) / (hi_dec - lo_dec);
        LAT_TOP + LAT_H - f * LAT_H
    };
    let mut dec = lo_dec;
    while dec <= hi_dec {
        svg.push_str(&y_tick_svg(
            y(10f64.powf(dec)),
            &format_number(10f64.powf(dec)),
        ));
        dec += 1.0;
    }
    let points: Vec<Option<(f64, f64)>> = p99
        .iter()
        .enumerate()
        .map(|(i, v)| v.map(|v| (axis.x(i as f64 + 0.5), y(v))))
        .collect();
    svg.push_str(&path_svg(&points, LAT_COLOUR));
    svg
}

/// A y axis' title, vertical, left of its tick labels, centred on `y`.
fn axis_title_svg(y: f64, title: &str) -> String {
    format!(
        "<text x=\"14\" y=\"{y:.1}\" transform=\"rotate(-90 14 {y:.1})\" text-anchor=\"middle\" \
         fill=\"#444\">{}</text>\n",
        esc(title)
    )
}

/// A panel's frame (left and bottom axes).
fn frame_svg(top: f64, height: f64) -> String {
    let bottom = top + height;
    format!(
        "<path d=\"M{LEFT} {top} V{bottom} H{}\" fill=\"none\" stroke=\"#888\"/>\n",
        W - RIGHT
    )
}

/// A y tick: a faint grid line and its label left of the axis.
fn y_tick_svg(y: f64, label: &str) -> String {
    format!(
        "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
         <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#444\">{}</text>\n",
        W - RIGHT,
        LEFT - 4.0,
        y + 4.0,
        esc(label)
    )
}

/// Seconds along the bottom.
fn x_ticks_svg(axis: &XAxis) -> String {
    // About eight ticks, whole seconds.
    let step = nice_step(axis.seconds / 8.0).max(1.0);
    let bottom = LAT_TOP + LAT_H;
    let mut svg = String::new();
    let mut s = 0.0;
    while s <= axis.seconds + 1e-9 {
        let x = axis.x(s);
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{bottom}\" y2=\"{}\" stroke=\"#888\"/>\
             <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"#444\">{}</text>",
            bottom + 4.0,
            bottom + 16.0,
            format_number(s)
        );
        s += step;
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#444\">seconds</text>",
        W - RIGHT,
        bottom + 30.0
    );
    svg
}

fn legend_svg() -> String {
    let items = [
        (OK_COLOUR, "1", "ok acks=all sends/s"),
        (BAD_COLOUR, "1", "failed + indeterminate sends/s"),
        (LAT_COLOUR, "1", "p99 send latency (ms, log scale)"),
        (FAULT_COLOUR, "0.35", "fault window"),
    ];
    let mut svg = String::new();
    let mut x = LEFT;
    for (colour, opacity, label) in items {
        let _ = write!(
            svg,
            "<rect x=\"{x}\" y=\"6\" width=\"14\" height=\"10\" fill=\"{colour}\" fill-opacity=\"{opacity}\"/>\
             <text x=\"{}\" y=\"15\" fill=\"#222\">{}</text>",
            x + 18.0,
            esc(label)
        );
        x += 28.0 + label.len() as f64 * 6.0;
    }
    svg.push('\n');
    svg
}

/// A polyline through the points, broken where a point is missing.
fn path_svg(points: &[Option<(f64, f64)>], colour: &str) -> String {
    let mut d = String::new();
    let mut pen_down = false;
    for p in points {
        match p {
            Some((x, y)) => {
                let _ = write!(d, "{}{x:.1} {y:.1} ", if pen_down { "L" } else { "M" });
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    if d.is_empty() {
        return String::new();
    }
    format!(
        "<path d=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\"/>\n",
        d.trim_end()
    )
}

/// A round axis top at or above `max` and a step dividing it in about four ticks
/// (1, 2 or 5 times a power of ten).
fn nice_scale(max: f64) -> (f64, f64) {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let step = nice_step(max / 4.0);
    ((max / step).ceil() * step, step)
}

/// The smallest of 1, 2, 5 times a power of ten at or above `raw` (> 0).
fn nice_step(raw: f64) -> f64 {
    let raw = if raw.is_finite() && raw > 0.0 {
        raw
    } else {
        1.0
    };
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// A tick label: integers without decimals, small numbers with what they need.
fn format_number(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::{check, CheckConfig};

    fn send(t: u64, kind: Kind, value: &str, offset: Option<i64>, latency: Option<f64>) -> Event {
        let mut e = Event::new(t, "p1", kind, Op::Send);
        e.partition = Some(0);
        e.value = Some(value.to_string());
        e.acks = Some(-1);
        e.idempotent = true;
        e.offset = offset;
        e.latency_ms = latency;
        e
    }

    /// Ten ok sends over ten seconds (latencies 1..=10 ms), one failed, a fault, a final read.
    fn history() -> Vec<Event> {
        let mut events = Vec::new();
        let mut nemesis = Event::new(2_000, "nemesis", Kind::Invoke, Op::Nemesis);
        nemesis.fault = Some("kill <1> & \"friends\"".to_string());
        events.push(nemesis.clone());
        for i in 0..10u64 {
            let value = format!("v{i}");
            events.push(send(i * 1000, Kind::Invoke, &value, None, None));
            events.push(send(
                i * 1000 + 5,
                Kind::Ok,
                &value,
                Some(i as i64),
                Some((i + 1) as f64),
            ));
        }
        events.push(send(9_500, Kind::Invoke, "x", None, None));
        events.push(send(9_600, Kind::Fail, "x", None, Some(100.0)));
        nemesis.time_ms = 4_000;
        nemesis.kind = Kind::Ok;
        events.push(nemesis);
        for i in 0..10i64 {
            let mut e = Event::new(10_000, "final", Kind::Ok, Op::Read);
            e.partition = Some(0);
            e.offset = Some(i);
            e.value = Some(format!("v{i}"));
            events.push(e);
        }
        let mut e = Event::new(10_000, "final", Kind::Ok, Op::FinalRead);
        e.partition = Some(0);
        e.offset = Some(10);
        events.push(e);
        events.sort_by_key(|e| e.time_ms);
        events
    }

    fn summary(events: &[Event], duration_s: u64) -> Summary {
        let checked = check(events, &CheckConfig::default());
        summarize(
            "kill-leader",
            "local",
            42,
            duration_s,
            events,
            checked,
            vec!["a <note>".to_string()],
        )
    }

    #[test]
    fn summarize_computes_throughput_and_percentiles() {
        let events = history();
        let s = summary(&events, 5);
        assert_eq!(s.verdict, "pass", "{:#?}", s.checks);
        assert_eq!(s.acked, 10);
        assert_eq!(s.lost, 0);
        assert_eq!(s.duplicates, 0);
        assert!((s.throughput_per_s - 2.0).abs() < 1e-9);
        // Latencies of ok sends only: 1..=10.
        assert_eq!(
            s.latency_ms,
            Percentiles {
                p50: 5.0,
                p99: 10.0,
                max: 10.0
            }
        );
        assert_eq!(
            s.faults,
            vec![FaultWindow {
                fault: "kill <1> & \"friends\"".into(),
                start_ms: 2_000,
                end_ms: Some(4_000)
            }]
        );
        assert_eq!(s.recovery_ms.len(), 1);
        assert_eq!(s.counts.failed, 1);
    }

    #[test]
    fn throughput_without_duration_uses_the_send_span() {
        let events = history();
        let s = summary(&events, 0);
        // Sends span 0 ms .. 9600 ms.
        assert!((s.throughput_per_s - 10.0 / 9.6).abs() < 1e-9);
    }

    #[test]
    fn failing_run_says_fail() {
        let mut events = history();
        events.retain(|e| !(e.process == "final" && e.offset == Some(3) && e.op == Op::Read));
        let s = summary(&events, 10);
        assert_eq!(s.verdict, "fail");
        assert_eq!(s.lost, 1);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        v.push(f64::NAN);
        assert_eq!(
            percentiles(&mut v),
            Percentiles {
                p50: 50.0,
                p99: 99.0,
                max: 100.0
            }
        );
        assert_eq!(
            percentiles(&mut Vec::new()),
            Percentiles {
                p50: 0.0,
                p99: 0.0,
                max: 0.0
            }
        );
        assert_eq!(
            percentiles(&mut vec![7.0]),
            Percentiles {
                p50: 7.0,
                p99: 7.0,
                max: 7.0
            }
        );
    }

    #[test]
    fn write_produces_json_and_html() {
        let events = history();
        let s = summary(&events, 10);
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("run");
        write(&out, &s, &events).expect("write");
        let text = std::fs::read_to_string(out.join("summary.json")).expect("summary.json");
        let json: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(json["verdict"], "pass");
        assert_eq!(json["acked"], 10);
        assert_eq!(json["lost"], 0);
        assert_eq!(json["duplicates"], 0);
        assert_eq!(json["seed"], 42);
        assert!(json["checks"].as_array().is_some_and(|c| c.len() == 18));
        assert_eq!(json["latency_ms"]["p99"], 10.0);
        assert_eq!(json["faults"][0]["end_ms"], 4_000);

        let html = std::fs::read_to_string(out.join("report.html")).expect("report.html");
        assert!(html.contains("<svg"));
        assert!(html.contains("PASS"));
        assert!(html.contains("kill-leader"));
        assert!(html.contains("kill &lt;1&gt; &amp; &quot;friends&quot;"));
        assert!(!html.contains("kill <1>"));
        assert!(html.contains("a &lt;note&gt;"));
        assert!(!html.contains("<script"));
        assert!(html.contains("records/s") && html.contains("seconds"));
    }

    #[test]
    fn html_of_a_failing_run_shows_counterexamples() {
        let mut events = history();
        events.retain(|e| !(e.process == "final" && e.offset == Some(3) && e.op == Op::Read));
        let s = summary(&events, 10);
        let html = render_html(&s, &events);
        assert!(html.contains("FAIL"));
        assert!(html.contains("<details>"));
        assert!(html.contains("&quot;value&quot;:&quot;v3&quot;"));
    }

    #[test]
    fn timeline_buckets_per_second() {
        let t = Timeline::build(&history(), 12);
        assert_eq!(t.seconds(), 12);
        assert_eq!(t.ok[..10], [1; 10]);
        assert_eq!(t.bad[9], 1);
        assert_eq!(t.p99[0], Some(1.0));
        // Second 9: an ok send (10 ms) and a failed one (100 ms).
        assert_eq!(t.p99[9], Some(100.0));
        assert_eq!(t.p99[11], None);
    }

    #[test]
    fn empty_history_renders() {
        let s = summary(&[], 0);
        let html = render_html(&s, &[]);
        assert!(html.contains("<svg") && html.contains("no latency data"));
        assert_eq!(s.throughput_per_s, 0.0);
    }

    #[test]
    fn escape_and_scales() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(nice_scale(7.0), (8.0, 2.0));
        assert_eq!(nice_scale(1000.0), (1000.0, 500.0));
        assert_eq!(nice_step(12.5), 20.0);
        assert_eq!(nice_scale(0.0), (1.0, 0.5));
        assert_eq!(format_number(0.1), "0.1");
        assert_eq!(format_number(20.0), "20");
    }
}
