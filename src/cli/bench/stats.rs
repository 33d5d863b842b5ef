//! Measurements shared by the benchmarks: a lock-free progress window and latency summaries.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Counters since the last progress line; writers add, the reporter swaps them to zero.
#[derive(Default)]
pub struct Window {
    records: AtomicU64,
    bytes: AtomicU64,
    latency_sum_us: AtomicU64,
    latency_max_us: AtomicU64,
}

/// One progress interval's numbers.
pub struct WindowSnapshot {
    /// Records completed in the window.
    pub records: u64,
    /// Payload bytes completed in the window.
    pub bytes: u64,
    /// Mean latency in ms (0 without records or latencies).
    pub avg_ms: f64,
    /// Largest latency in ms.
    pub max_ms: f64,
}

impl Window {
    /// Counts one completed record; `latency_us` is 0 when latency is not measured.
    pub fn record(&self, bytes: u64, latency_us: u64) {
        self.records.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(latency_us, Ordering::Relaxed);
        self.latency_max_us.fetch_max(latency_us, Ordering::Relaxed);
    }

    /// Counts several records at once (consumer side, no latency).
    pub fn add(&self, records: u64, bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Takes the window's numbers and starts a new window.
    pub fn take(&self) -> WindowSnapshot {
        let records = self.records.swap(0, Ordering::Relaxed);
        let bytes = self.bytes.swap(0, Ordering::Relaxed);
        let sum = self.latency_sum_us.swap(0, Ordering::Relaxed);
        let max = self.latency_max_us.swap(0, Ordering::Relaxed);
        let avg_ms = if records == 0 {
            0.0
        } else {
            sum as f64 / records as f64 / 1000.0
        };
        WindowSnapshot {
            records,
            bytes,
            avg_ms,
            max_ms: max as f64 / 1000.0,
        }
    }
}

/// A new latency histogram in microseconds: 1 µs to one hour, 3 significant digits.
pub fn latency_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 3_600_000_000, 3)?)
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySummary {
    /// Mean.
    pub avg: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl LatencySummary {
    /// As a JSON object.
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "avg": self.avg, "p50": self.p50, "p95": self.p95,
            "p99": self.p99, "p999": self.p999, "max": self.max,
        })
    }
}

/// Summarises a microsecond histogram in milliseconds.
pub fn summarize(h: &Histogram<u64>) -> LatencySummary {
    let ms = |us: u64| us as f64 / 1000.0;
    LatencySummary {
        avg: h.mean() / 1000.0,
        p50: ms(h.value_at_quantile(0.50)),
        p95: ms(h.value_at_quantile(0.95)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
    }
}

/// Records per second and MiB per second over `elapsed`.
pub fn rates(records: u64, bytes: u64, elapsed: Duration) -> (f64, f64) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    (
        records as f64 / secs,
        bytes as f64 / (1024.0 * 1024.0) / secs,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_swaps_to_zero() {
        let w = Window::default();
        w.record(100, 2000);
        w.record(100, 4000);
        let s = w.take();
        assert_eq!((s.records, s.bytes), (2, 200));
        assert!((s.avg_ms - 3.0).abs() < 1e-9);
        assert!((s.max_ms - 4.0).abs() < 1e-9);
        assert_eq!(w.take().records, 0);
    }

    #[test]
    fn percentiles_in_ms() {
        let mut h = latency_histogram().unwrap();
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        let s = summarize(&h);
        assert!((s.p50 - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.p99 - 990.0).abs() < 1.0, "{s:?}");
        assert!((s.max - 1000.0).abs() < 1.0, "{s:?}");
        let (rps, mibps) = rates(1000, 1024 * 1024, Duration::from_secs(2));
        assert!((rps - 500.0).abs() < 1e-9 && (mibps - 0.5).abs() < 1e-9);
    }
}
