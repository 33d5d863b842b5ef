//! The `chaos` command line (`list`, `run`, `matrix`, `selftest`, `check`), shared with
//! `spate verify`.
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::nemesis::SCENARIOS;
use crate::runner::{self, BackendKind, RunConfig};
use crate::workload::ClientKind;

/// Spate chaos runner.
#[derive(clap::Parser, Debug)]
#[command(
    name = "chaos",
    about = "Kill, pause and partition Spate brokers and check that nothing acknowledged is lost"
)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// Name the scenarios.
    List,
    /// Run one scenario; exit 0 only if every check passes.
    Run(RunArgs),
    /// Run scenarios x seeds one after another; exit 0 only if all pass.
    Matrix(MatrixArgs),
    /// Prove the checker can fail: a deliberately unsafe broker build (acks=all answered
    /// before the high watermark) under isolate-leader must be caught losing writes.
    Selftest(SelftestArgs),
    /// Judge a recorded run again (its `history.jsonl`) with this checker, e.g. after the
    /// checks changed; exit 0 only if every check passes.
    Check(CheckArgs),
}

#[derive(clap::Args, Debug)]
struct CheckArgs {
    /// The run's directory (its `history.jsonl`, and `summary.json` for its scenario,
    /// backend, seed and duration).
    #[arg(long)]
    run: PathBuf,
    /// Where to write the new summary.json and report.html.
    #[arg(long)]
    out: PathBuf,
    /// Longest time after a fault (or its healing) until an acks=all write succeeds.
    #[arg(long, default_value_t = 30_000)]
    recovery_bound_ms: u64,
}

/// Settings shared by `run`, `matrix` and `selftest`.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Where the cluster runs.
    #[arg(long, value_enum, default_value = "process")]
    backend: BackendKind,
    /// Seconds of workload and faults.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// The spate binary (default: $SPATE_BIN, else a release build made now).
    #[arg(long)]
    spate_bin: Option<PathBuf>,
    /// Compose file of the docker backend.
    #[arg(long)]
    compose_file: Option<PathBuf>,
    /// Image tag of the docker backend (built from the spate binary).
    #[arg(long, default_value = "spate:chaos")]
    image: String,
    /// Client writing the judged idempotent acks=all values.
    #[arg(long, value_enum, default_value = "rust")]
    client: ClientKind,
    /// Python with confluent-kafka, for --client rdkafka.
    #[arg(long, default_value = "python3")]
    python: PathBuf,
    /// Longest time after a fault (or its healing) until an acks=all write succeeds.
    #[arg(long, default_value_t = 30_000)]
    recovery_bound_ms: u64,
    /// Leave the cluster running afterwards.
    #[arg(long)]
    keep: bool,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Scenario (`chaos list`).
    #[arg(long)]
    scenario: String,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output directory (summary.json, report.html, history.jsonl, logs/).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args, Debug)]
struct MatrixArgs {
    /// Scenarios, comma separated (default: every scenario the backend supports).
    #[arg(long)]
    scenarios: Option<String>,
    /// Seeds, comma separated.
    #[arg(long, default_value = "1,2")]
    seeds: String,
    /// Output directory: one subdirectory per run, matrix.json and matrix.md.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args, Debug)]
struct SelftestArgs {
    /// The unsafe spate binary (default: built now with --features unsafe-ack-before-hw
    /// into target/chaos-unsafe).
    #[arg(long)]
    unsafe_bin: Option<PathBuf>,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    common: Common,
}

/// The repository this chaos binary was built from (for default paths).
fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// `cargo build --bin spate` in the repository with extra arguments; the binary's path.
fn cargo_build_spate(
    extra: &[&str],
    target_dir: Option<&Path>,
    release: bool,
) -> anyhow::Result<PathBuf> {
    let root = repo_root();
    let mut cmd =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&root)
        .args(["build", "--bin", "spate"])
        .args(extra);
    if release {
        cmd.arg("--release");
    }
    if let Some(dir) = target_dir {
        cmd.arg("--target-dir").arg(dir);
    }
    tracing::info!(?cmd, "building spate");
    let status = cmd.status().context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build of spate failed");
    }
    let dir = target_dir.map_or_else(|| root.join("target"), Path::to_path_buf);
    Ok(dir
        .join(if release { "release" } else { "debug" })
        .join("spate"))
}

/// The `fault-injection` build for scenarios that cut power or fail disks:
/// $SPATE_FAULT_BIN, else a release build made now into target/chaos-faults.
fn fault_bin() -> anyhow::Result<PathBuf> {
    if let Ok(bin) = std::env::var("SPATE_FAULT_BIN") {
        return Ok(PathBuf::from(bin));
    }
    cargo_build_spate(
        &["--features", "fault-injection"],
        Some(&repo_root().join("target/chaos-faults")),
        true,
    )
}

/// Whether `scenario` runs on the `fault-injection` build.
fn needs_fault_build(scenario: &str) -> bool {
    crate::nemesis::needs(scenario).contains(&crate::backend::Capability::StorageFaults)
}

fn spate_bin(common: &Common) -> anyhow::Result<PathBuf> {
    if let Some(bin) = &common.spate_bin {
        return Ok(bin.clone());
    }
    if let Ok(bin) = std::env::var("SPATE_BIN") {
        return Ok(PathBuf::from(bin));
    }
    cargo_build_spate(&[], None, true)
}

/// Builds the image the docker backend runs, from `bin`.
fn build_image(bin: &Path, image: &str) -> anyhow::Result<()> {
    let script = repo_root().join("deploy/docker/build-image.sh");
    let status = std::process::Command::new("bash")
        .arg(&script)
        .env("SPATE_BIN", bin)
        .env("SPATE_IMAGE", image)
        .status()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !status.success() {
        bail!("{} failed", script.display());
    }
    Ok(())
}

fn run_config(common: &Common, scenario: &str, seed: u64, out: PathBuf, bin: PathBuf) -> RunConfig {
    RunConfig {
        backend: Some(common.backend),
        bootstrap: None,
        scenario: scenario.to_string(),
        duration: Duration::from_secs(common.duration),
        seed,
        out,
        spate_bin: bin,
        compose_file: common
            .compose_file
            .clone()
            .unwrap_or_else(|| repo_root().join("deploy/docker/compose.yaml")),
        image: common.image.clone(),
        client: common.client,
        python: common.python.clone(),
        recovery_bound: Duration::from_millis(common.recovery_bound_ms),
        keep: common.keep,
    }
}

fn prepare(common: &Common) -> anyhow::Result<PathBuf> {
    let bin = spate_bin(common)?;
    if common.backend == BackendKind::Docker {
        build_image(&bin, &common.image)?;
    }
    Ok(bin)
}

fn print_summary(out: &Path, s: &crate::report::Summary) {
    println!(
        "{} {} seed {}: {} (acked {}, lost {}, duplicates {}) -> {}",
        s.backend,
        s.scenario,
        s.seed,
        s.verdict.to_uppercase(),
        s.acked,
        s.lost,
        s.duplicates,
        out.join("report.html").display()
    );
    for c in s.checks.iter().filter(|c| c.judged && !c.pass) {
        println!("  FAILED {}: {}", c.name, c.summary);
    }
}

/// Runs the command; `Ok(true)` when it passed.
pub async fn main(cli: Cli) -> anyhow::Result<bool> {
    match cli.cmd {
        Cmd::List => {
            for (name, what) in SCENARIOS {
                println!("{name:<18} {what}");
            }
            Ok(true)
        }
        Cmd::Run(args) => {
            let bin = if needs_fault_build(&args.scenario) {
                fault_bin()?
            } else {
                prepare(&args.common)?
            };
            let config = run_config(
                &args.common,
                &args.scenario,
                args.seed,
                args.out.clone(),
                bin,
            );
            let summary = runner::run(&config).await?;
            print_summary(&args.out, &summary);
            Ok(summary.verdict == "pass")
        }
        Cmd::Matrix(args) => matrix(args).await,
        Cmd::Selftest(args) => selftest(args).await,
        Cmd::Check(args) => recheck(&args),
    }
}

/// `chaos check`: the recorded history judged again.
fn recheck(args: &CheckArgs) -> anyhow::Result<bool> {
    let events = crate::history::read_jsonl(&args.run.join("history.jsonl"))
        .with_context(|| format!("reading {}", args.run.join("history.jsonl").display()))?;
    let old: serde_json::Value = std::fs::read_to_string(args.run.join("summary.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let text = |k: &str| old[k].as_str().unwrap_or("unknown").to_string();
    let number = |k: &str| old[k].as_u64().unwrap_or(0);
    let checked = crate::checker::check(
        &events,
        &crate::checker::CheckConfig {
            recovery_bound_ms: args.recovery_bound_ms,
        },
    );
    let summary = crate::report::summarize(
        &text("scenario"),
        &text("backend"),
        number("seed"),
        number("duration_s"),
        &events,
        checked,
        vec![format!("re-judged from {}", args.run.display())],
    );
    crate::report::write(&args.out, &summary, &events)?;
    print_summary(&args.out, &summary);
    Ok(summary.verdict == "pass")
}

async fn matrix(args: MatrixArgs) -> anyhow::Result<bool> {
    let bin = prepare(&args.common)?;
    let scenarios: Vec<String> = match &args.scenarios {
        Some(list) => list.split(',').map(|s| s.trim().to_string()).collect(),
        None => SCENARIOS
            .iter()
            .map(|(n, _)| n.to_string())
            .filter(|n| {
                args.common.backend == BackendKind::Process
                    || (n != "slow-followers" && !needs_fault_build(n))
            })
            .collect(),
    };
    let fault_bin = if scenarios.iter().any(|s| needs_fault_build(s)) {
        Some(fault_bin()?)
    } else {
        None
    };
    let seeds: Vec<u64> = args
        .seeds
        .split(',')
        .map(|s| s.trim().parse().with_context(|| format!("bad seed '{s}'")))
        .collect::<anyhow::Result<_>>()?;
    std::fs::create_dir_all(&args.out)?;
    let mut rows = Vec::new();
    let mut all_pass = true;
    let started = std::time::Instant::now();
    for scenario in &scenarios {
        for seed in &seeds {
            let out = args.out.join(format!("{scenario}-{seed}"));
            let scenario_bin = match &fault_bin {
                Some(fault) if needs_fault_build(scenario) => fault.clone(),
                _ => bin.clone(),
            };
            let config = run_config(&args.common, scenario, *seed, out.clone(), scenario_bin);
            let row = match runner::run(&config).await {
                Ok(s) => {
                    print_summary(&out, &s);
                    all_pass &= s.verdict == "pass";
                    serde_json::json!({
                        "scenario": scenario, "seed": seed, "verdict": s.verdict,
                        "acked": s.acked, "lost": s.lost, "duplicates": s.duplicates,
                        "acked_acks1": s.counts.acked_acks1, "lost_acks1": s.counts.lost_acks1,
                        "indeterminate": s.counts.indeterminate,
                        "throughput_per_s": s.throughput_per_s,
                        "p99_ms": s.latency_ms.p99,
                        "failed_checks": s.checks.iter().filter(|c| c.judged && !c.pass).map(|c| c.name).collect::<Vec<_>>(),
                    })
                }
                Err(e) => {
                    all_pass = false;
                    println!("{scenario} seed {seed}: ERROR {e:#}");
                    serde_json::json!({"scenario": scenario, "seed": seed, "verdict": "error", "error": format!("{e:#}")})
                }
            };
            rows.push(row);
        }
    }
    let elapsed = started.elapsed().as_secs();
    std::fs::write(
        args.out.join("matrix.json"),
        serde_json::to_string_pretty(&serde_json::json!({"elapsed_s": elapsed, "runs": rows}))?,
    )?;
    let mut md = String::from("| scenario | seed | verdict | acked | lost | duplicates | acks=1 acked / lost | indeterminate | acked/s | p99 ms |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} / {} | {} | {:.0} | {:.1} |\n",
            r["scenario"].as_str().unwrap_or(""),
            r["seed"],
            r["verdict"].as_str().unwrap_or(""),
            r["acked"],
            r["lost"],
            r["duplicates"],
            r["acked_acks1"],
            r["lost_acks1"],
            r["indeterminate"],
            r["throughput_per_s"].as_f64().unwrap_or(0.0),
            r["p99_ms"].as_f64().unwrap_or(0.0),
        ));
    }
    md.push_str(&format!("\n{} runs in {elapsed} s\n", rows.len()));
    std::fs::write(args.out.join("matrix.md"), &md)?;
    println!("{md}");
    Ok(all_pass)
}

async fn selftest(args: SelftestArgs) -> anyhow::Result<bool> {
    let unsafe_bin = match &args.unsafe_bin {
        Some(b) => b.clone(),
        None => cargo_build_spate(
            &["--features", "unsafe-ack-before-hw"],
            Some(&repo_root().join("target/chaos-unsafe")),
            false,
        )?,
    };
    let mut common = args.common.clone();
    common.spate_bin = Some(unsafe_bin.clone());
    let bin = prepare(&common)?;
    let config = run_config(&common, "isolate-leader", args.seed, args.out.clone(), bin);
    let summary = runner::run(&config).await?;
    print_summary(&args.out, &summary);
    let caught = summary.verdict == "fail" && summary.lost > 0;
    if caught {
        println!(
            "selftest: the unsafe build was caught: {} acknowledged writes lost",
            summary.lost
        );
    } else {
        println!("selftest: FAILED: the checker did not catch the unsafe build losing acknowledged writes");
    }
    Ok(caught)
}
