//! One chaos run: start the cluster, create the topic, run the workload while the nemesis
//! injects the scenario's faults, heal, read everything back, check the history and write
//! the report. Every wait is bounded; the run ends by itself.
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::SeedableRng;

use crate::backend::{Backend, Capability, DockerCluster, External, ProcessCluster};
use crate::checker::{self, CheckConfig};
use crate::history::Recorder;
use crate::nemesis::{self, Target};
use crate::report::{self, Summary};
use crate::workload::{self, ClientKind, Workload, WorkloadConfig};

/// Which backend runs the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// Local `spate server` processes behind the harness's link-fault proxies.
    Process,
    /// The compose cluster (`deploy/docker/compose.yaml`).
    Docker,
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Backend, or `None` for a cluster at `bootstrap` the harness does not run.
    pub backend: Option<BackendKind>,
    /// Bootstrap of an external cluster.
    pub bootstrap: Option<String>,
    /// Scenario name.
    pub scenario: String,
    /// How long the workload and the nemesis run.
    pub duration: Duration,
    /// Seed of every random choice.
    pub seed: u64,
    /// Output directory.
    pub out: PathBuf,
    /// The `spate` binary (process backend).
    pub spate_bin: PathBuf,
    /// Compose file and image (docker backend).
    pub compose_file: PathBuf,
    /// Image tag (docker backend).
    pub image: String,
    /// Which client writes the judged values.
    pub client: ClientKind,
    /// Python with confluent-kafka (rdkafka client).
    pub python: PathBuf,
    /// Recovery bound of the checker.
    pub recovery_bound: Duration,
    /// Keep the cluster running afterwards (debugging).
    pub keep: bool,
}

/// Runs one scenario and writes `out/summary.json`, `out/report.html`,
/// `out/history.jsonl` and the nodes' log tails.
pub async fn run(config: &RunConfig) -> anyhow::Result<Summary> {
    if !nemesis::exists(&config.scenario) {
        bail!(
            "unknown scenario '{}'; `chaos list` names them",
            config.scenario
        );
    }
    std::fs::create_dir_all(&config.out)
        .with_context(|| format!("cannot create {}", config.out.display()))?;
    let recorder = Recorder::new(Some(&config.out.join("history.jsonl")))?;
    let backend = start_backend(config).await?;
    for needed in nemesis::needs(&config.scenario) {
        if !backend.can(needed) {
            let name = backend.name();
            backend.teardown().await;
            bail!(
                "scenario {} needs {needed:?}, which the {name} backend cannot do",
                config.scenario
            );
        }
    }
    let outcome = run_on(config, &backend, &recorder).await;
    recorder.flush();
    let logs = config.out.join("logs");
    let _ = std::fs::create_dir_all(&logs);
    for (id, tail) in backend.log_tails(400).await {
        let _ = std::fs::write(logs.join(format!("node{id}.log")), tail);
    }
    if config.keep {
        tracing::warn!(bootstrap = %backend.bootstrap(), "--keep: leaving the cluster running");
        std::mem::forget(backend);
    } else {
        backend.teardown().await;
    }
    let notes = outcome?;
    let events = recorder.events();
    let checked = checker::check(
        &events,
        &CheckConfig {
            recovery_bound_ms: config.recovery_bound.as_millis() as u64,
        },
    );
    let summary = report::summarize(
        &config.scenario,
        match config.backend {
            Some(BackendKind::Process) => "process",
            Some(BackendKind::Docker) => "docker",
            None => "external",
        },
        config.seed,
        config.duration.as_secs(),
        &events,
        checked,
        notes,
    );
    report::write(&config.out, &summary, &events)?;
    Ok(summary)
}

async fn start_backend(config: &RunConfig) -> anyhow::Result<Backend> {
    Ok(match (config.backend, &config.bootstrap) {
        (Some(BackendKind::Process), _) => Backend::Process(
            ProcessCluster::start(
                &config.spate_bin,
                &config.out.join("cluster"),
                nemesis::needs(&config.scenario).contains(&Capability::StorageFaults),
            )
            .await?,
        ),
        (Some(BackendKind::Docker), _) => Backend::Docker(
            DockerCluster::start(&config.compose_file, &config.image, config.seed).await?,
        ),
        (None, Some(bootstrap)) => Backend::External(External {
            bootstrap: bootstrap.clone(),
        }),
        (None, None) => bail!("no backend and no bootstrap: nothing to test"),
    })
}

/// How many brokers the cluster lists (0 if it does not answer).
async fn broker_count(bootstrap: &str) -> usize {
    let mut c = spate_client::ClientConfig::new(bootstrap.to_string());
    c.client_id = "chaos-runner".to_string();
    match spate_client::Cluster::connect(c).await {
        Ok(cluster) => {
            let n = cluster.metadata().brokers.len();
            cluster.close();
            n
        }
        Err(_) => 0,
    }
}

/// Waits until a broker lists `want` brokers (bounded).
async fn wait_brokers(bootstrap: &str, want: usize, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = broker_count(bootstrap).await;
        if seen >= want {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("the cluster lists {seen} brokers, not {want}, after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn run_on(
    config: &RunConfig,
    backend: &Backend,
    recorder: &Recorder,
) -> anyhow::Result<Vec<String>> {
    let mut notes = Vec::new();
    let bootstrap = backend.bootstrap();
    let nodes = backend.node_ids().len().max(1);
    wait_brokers(&bootstrap, nodes, Duration::from_secs(120)).await?;
    // A cluster the harness does not run may have fewer than 3 brokers.
    let rf = broker_count(&bootstrap).await.clamp(1, 3) as i16;
    let topic = format!("chaos-{}-{}", config.seed, std::process::id());
    let partitions = 3;
    workload::create_topic(&bootstrap, &topic, partitions, rf).await?;
    notes.push(format!(
        "topic {topic}: {partitions} partitions, replication factor {rf}"
    ));
    let workload_config = WorkloadConfig {
        topic: topic.clone(),
        partitions,
        idempotent_producers: 2,
        // Two lanes per partition and producer.
        lanes: 2 * partitions as usize,
        acks1_producers: 1,
        group_consumers: 2,
        client: config.client,
        python: config.python.clone(),
        out_dir: config.out.clone(),
        pace: Duration::from_millis(2),
    };
    let workload = Workload::start(
        &workload_config,
        &bootstrap,
        &backend.kafka_addrs(),
        recorder,
    )
    .await?;
    let deadline = Instant::now() + config.duration;
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
    let target = Target {
        backend,
        topic: &topic,
        partitions,
        recorder,
    };
    if let Err(e) = nemesis::run(&config.scenario, &target, deadline, &mut rng).await {
        notes.push(format!("nemesis stopped early: {e}"));
    }
    tokio::time::sleep_until(deadline.into()).await;
    nemesis::heal_all(&target).await;
    // The cluster must be whole again before the final read: a bounded wait, and a note
    // (the recovery check judges availability) if it is not.
    if backend.node_ids().is_empty()
        || wait_brokers(&bootstrap, nodes, Duration::from_secs(90))
            .await
            .is_ok()
    {
        tokio::time::sleep(Duration::from_secs(2)).await;
    } else {
        notes.push("not every broker was back 90 s after healing".to_string());
    }
    workload.stop().await;
    workload::final_read(&bootstrap, &topic, partitions, recorder).await;
    Ok(notes)
}
