//! `spate health` and `spate drain`: a node's admin HTTP port from the command line, so a
//! container image without a shell can use them as its HEALTHCHECK and preStop hook.
use std::time::Duration;

use anyhow::{bail, Context};

/// Flags of `spate health`.
#[derive(clap::Args, Debug)]
pub struct HealthArgs {
    /// The node's admin listener, host:port.
    #[arg(long, default_value = "127.0.0.1:9095")]
    admin: String,
    /// Check liveness (`/healthz`: the process serves) instead of readiness (`/readyz`:
    /// registered, unfenced, caught up, in contact with the controller).
    #[arg(long)]
    live: bool,
    /// Give up after this long.
    #[arg(long, default_value_t = 3_000)]
    timeout_ms: u64,
    /// Print nothing; the exit code tells (0 healthy, 1 not).
    #[arg(long, short)]
    quiet: bool,
}

/// Flags of `spate drain`.
#[derive(clap::Args, Debug)]
pub struct DrainArgs {
    /// The node's admin listener, host:port.
    #[arg(long, default_value = "127.0.0.1:9095")]
    admin: String,
    /// How long the node waits for leadership to move away.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
}

/// Exits non-zero unless the node answers its health check with 200.
pub async fn health(args: HealthArgs) -> anyhow::Result<()> {
    let path = if args.live { "/healthz" } else { "/readyz" };
    let response = tokio::time::timeout(
        Duration::from_millis(args.timeout_ms),
        spate_client::http::get(&args.admin, path),
    )
    .await
    .with_context(|| {
        format!(
            "{} did not answer {path} within {} ms",
            args.admin, args.timeout_ms
        )
    })??;
    if !args.quiet {
        println!("{}", response.body.trim_end());
    }
    if response.status != 200 {
        bail!("{} answered {path} with {}", args.admin, response.status);
    }
    Ok(())
}

/// Asks the node to move leadership away and fence itself (controlled shutdown without
/// stopping); exits non-zero if it did not finish in time.
pub async fn drain(args: DrainArgs) -> anyhow::Result<()> {
    let path = format!("/v1/drain?timeout_ms={}", args.timeout_ms);
    let response = tokio::time::timeout(
        Duration::from_millis(args.timeout_ms + 5_000),
        spate_client::http::request(&args.admin, "POST", &path),
    )
    .await
    .with_context(|| format!("{} did not answer the drain in time", args.admin))??;
    println!("{}", response.body.trim_end());
    if response.status != 200 {
        bail!("{} answered the drain with {}", args.admin, response.status);
    }
    Ok(())
}
