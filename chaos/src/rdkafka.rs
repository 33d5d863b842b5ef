//! The third-party workload: librdkafka (through confluent-kafka in a Python process)
//! writing the judged idempotent acks=all values. The worker prints history events as
//! JSON lines; they are re-stamped with the run's clock as they arrive (the pipe adds
//! microseconds) and recorded like the Rust lanes' events.
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::history::{Event, Recorder};
use crate::workload::WorkloadConfig;

const WORKER: &str = include_str!("../workers/rdkafka_producer.py");

/// Starts the worker; it stops producing when `stop` turns true (its stdin closes).
pub fn spawn(
    config: &WorkloadConfig,
    bootstrap: &str,
    recorder: &Recorder,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Child> {
    std::fs::create_dir_all(&config.out_dir)?;
    let script = config.out_dir.join("rdkafka_producer.py");
    std::fs::write(&script, WORKER)?;
    let in_flight = (config.idempotent_producers.max(1) * config.lanes).to_string();
    let mut child = Command::new(&config.python)
        .arg(&script)
        .args([
            bootstrap,
            &config.topic,
            &config.partitions.to_string(),
            &in_flight,
            &config.pace.as_millis().to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (needs confluent-kafka)",
                config.python.display()
            )
        })?;
    let stdout = child.stdout.take().context("worker has no stdout")?;
    let stdin = child.stdin.take();
    let recorder = recorder.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<Event>(&line) {
                Ok(mut event) => {
                    event.time_ms = recorder.now_ms();
                    recorder.record(event);
                }
                Err(e) => tracing::warn!(error = %e, %line, "bad line from the rdkafka worker"),
            }
        }
    });
    tokio::spawn(async move {
        let _ = stop.wait_for(|s| *s).await;
        drop(stdin);
    });
    Ok(child)
}

/// Waits for the worker to flush and exit (bounded), then kills it.
pub async fn finish(child: &mut Child) {
    match tokio::time::timeout(Duration::from_secs(90), child.wait()).await {
        Ok(Ok(status)) if !status.success() => tracing::warn!(%status, "rdkafka worker failed"),
        Ok(_) => {}
        Err(_) => {
            tracing::warn!("rdkafka worker did not exit; killing it");
            let _ = child.kill().await;
        }
    }
    // Let the reader task drain the last lines.
    tokio::time::sleep(Duration::from_millis(200)).await;
}
