//! Fault schedules. Each scenario repeats one kind of fault for the run's duration: it
//! records when the fault starts (and whether the cluster should stay writable during
//! it) and when it is healed, then waits for the cluster to be whole again before the
//! next round, so faults do not pile up beyond what the scenario names.
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::Rng;
use spate_client::{ClientConfig, Cluster};

use crate::backend::{Backend, Capability};
use crate::history::{Event, Kind, Op, Recorder};

/// The scenarios `chaos list` names.
pub const SCENARIOS: &[(&str, &str)] = &[
    ("none", "no faults: the baseline every check must pass"),
    ("kill-leader", "SIGKILL the leader of a random partition, restart it after 6 s; repeat"),
    ("rolling-restart", "SIGTERM (controlled shutdown) and restart each node in turn; repeat"),
    ("pause-leader", "SIGSTOP the leader of a random partition for 12 s (longer than the session timeout), then SIGCONT"),
    ("isolate-leader", "cut the leader of a random partition off from its peers and the controllers for 15 s"),
    ("slow-followers", "add 300 ms to every link of a random partition's followers for 15 s (process backend)"),
    ("kill-controller", "SIGKILL the active controller, restart it after 6 s; every third round two of the three"),
    ("kill-all", "SIGKILL every node, restart them all after 5 s"),
    ("isolate-controller", "cut the active controller off from its peers for 15 s (brokers must move to the new one)"),
    ("corrupt-follower", "SIGKILL a follower, flip bytes in its newest segment of the topic, restart it"),
    ("power-loss-leader", "cut the power of the leader of a random partition (unsynced data dropped or torn), restart it after 6 s (simulated storage)"),
    ("power-loss-all", "cut the power of every node at once, restart them all after 5 s (simulated storage)"),
    ("disk-error", "EIO on the writes or fsyncs of a random partition's log at its leader for 15 s, then restart that node (simulated storage)"),
];

/// Whether `name` is a scenario.
pub fn exists(name: &str) -> bool {
    SCENARIOS.iter().any(|(n, _)| *n == name)
}

/// What a scenario needs from the backend.
pub fn needs(name: &str) -> Vec<Capability> {
    match name {
        "kill-leader" | "rolling-restart" | "kill-controller" | "kill-all" => {
            vec![Capability::Kill]
        }
        "pause-leader" => vec![Capability::Pause],
        "isolate-leader" | "isolate-controller" => vec![Capability::Isolate],
        "slow-followers" => vec![Capability::Slow],
        "corrupt-follower" => vec![Capability::Kill, Capability::Corrupt],
        "power-loss-leader" | "power-loss-all" | "disk-error" => {
            vec![Capability::Kill, Capability::StorageFaults]
        }
        _ => Vec::new(),
    }
}

/// What the nemesis works on.
pub struct Target<'a> {
    /// The cluster.
    pub backend: &'a Backend,
    /// The workload's topic.
    pub topic: &'a str,
    /// Its partitions.
    pub partitions: i32,
    /// The history.
    pub recorder: &'a Recorder,
}

/// How long a fault waits for the partition it picked to have a leader.
const LEADER_WAIT: Duration = Duration::from_secs(15);

impl Target<'_> {
    fn record(&self, kind: Kind, fault: &str, available: bool, error: Option<String>) {
        let mut e = Event::new(self.recorder.now_ms(), "nemesis", kind, Op::Nemesis);
        e.fault = Some(fault.to_string());
        e.available = available;
        e.error = error;
        self.recorder.record(e);
    }

    async fn metadata(&self) -> Option<std::sync::Arc<spate_client::metadata::Metadata>> {
        let bootstrap = self.backend.bootstrap();
        let probe = async {
            let mut config = ClientConfig::new(bootstrap);
            config.client_id = "chaos-nemesis".to_string();
            config.request_timeout = Duration::from_secs(3);
            let cluster = Cluster::connect(config).await.ok()?;
            let names = [self.topic.to_string()];
            let m = cluster.refresh(Some(&names)).await.ok();
            cluster.close();
            m
        };
        tokio::time::timeout(Duration::from_secs(5), probe)
            .await
            .ok()
            .flatten()
    }

    /// (leader, followers) of a partition, waiting up to [`LEADER_WAIT`] while it has none
    /// (an election in progress, or a node that just restarted answering metadata before
    /// its image caught up), so a round is not lost to a moment without a leader.
    async fn replicas_of(&self, partition: i32) -> Option<(u32, Vec<u32>)> {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            if let Some(replicas) = self.replicas_now(partition).await {
                return Some(replicas);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn replicas_now(&self, partition: i32) -> Option<(u32, Vec<u32>)> {
        let m = self.metadata().await?;
        let p = m
            .topics
            .get(self.topic)?
            .partitions
            .iter()
            .find(|p| p.partition == partition)?;
        let leader = p.leader?.0 as u32;
        let followers = p
            .replicas
            .iter()
            .map(|r| r.0 as u32)
            .filter(|r| *r != leader)
            .collect();
        Some((leader, followers))
    }

    /// Waits (bounded) until every partition is led and fully in sync on every node.
    async fn wait_whole(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(m) = self.metadata().await {
                let whole = m.brokers.len() >= self.backend.node_ids().len()
                    && m.topics.get(self.topic).is_some_and(|t| {
                        t.partitions
                            .iter()
                            .all(|p| p.leader.is_some() && p.isr.len() == p.replicas.len())
                    });
                if whole {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        false
    }
}

/// Runs `scenario` until `deadline`, then heals everything.
pub async fn run(
    scenario: &str,
    target: &Target<'_>,
    deadline: Instant,
    rng: &mut StdRng,
) -> anyhow::Result<()> {
    // Let the workload get going before the first fault.
    sleep_until_or(Instant::now() + Duration::from_secs(3), deadline).await;
    let mut round = 0u32;
    while Instant::now() + Duration::from_secs(20) < deadline {
        round += 1;
        let result = match scenario {
            "none" => {
                sleep_until_or(deadline, deadline).await;
                Ok(())
            }
            "kill-leader" => kill_leader(target, rng).await,
            "rolling-restart" => rolling_restart(target).await,
            "pause-leader" => pause_leader(target, rng).await,
            "isolate-leader" => isolate_leader(target, rng).await,
            "slow-followers" => slow_followers(target, rng).await,
            "kill-controller" => kill_controller(target, round).await,
            "kill-all" => kill_all(target).await,
            "isolate-controller" => isolate_controller(target).await,
            "corrupt-follower" => corrupt_follower(target, rng).await,
            "power-loss-leader" => power_loss_leader(target, rng).await,
            "power-loss-all" => power_loss_all(target, rng).await,
            "disk-error" => disk_error(target, rng).await,
            other => anyhow::bail!("unknown scenario {other}"),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "fault round failed; healing and going on");
            target.record(Kind::Fail, scenario, false, Some(e.to_string()));
        }
        heal_all(target).await;
        if !target.wait_whole(Duration::from_secs(60)).await {
            tracing::warn!("the cluster was not whole again within 60 s of healing");
            target.record(
                Kind::Info,
                "wait whole",
                true,
                Some("not every partition was led and fully in sync 60 s after healing".into()),
            );
        }
        let pause = Duration::from_millis(rng.random_range(2_000..5_000));
        sleep_until_or(Instant::now() + pause, deadline).await;
    }
    heal_all(target).await;
    Ok(())
}

async fn sleep_until_or(until: Instant, deadline: Instant) {
    let until = until.min(deadline);
    tokio::time::sleep_until(until.into()).await;
}

/// Every node running, resumed and linked: the state every round ends in.
pub async fn heal_all(target: &Target<'_>) {
    let backend = target.backend;
    if backend.can(Capability::Isolate) {
        let _ = backend.heal().await;
    }
    if backend.can(Capability::Pause) {
        for id in backend.node_ids() {
            let _ = backend.resume(id).await;
        }
    }
    if backend.can(Capability::Kill) {
        for id in backend.node_ids() {
            let _ = backend.start_node(id).await;
        }
    }
    if backend.can(Capability::StorageFaults) {
        for id in backend.node_ids() {
            let _ = backend.clear_disk_errors(id).await;
        }
    }
}

async fn random_leader(target: &Target<'_>, rng: &mut StdRng) -> anyhow::Result<(u32, Vec<u32>)> {
    let partition = rng.random_range(0..target.partitions);
    target
        .replicas_of(partition)
        .await
        .ok_or_else(|| anyhow::anyhow!("partition {partition} has no leader to pick"))
}

async fn kill_leader(target: &Target<'_>, rng: &mut StdRng) -> anyhow::Result<()> {
    let (leader, _) = random_leader(target, rng).await?;
    let fault = format!("kill {leader}");
    target.record(Kind::Invoke, &fault, true, None);
    target.backend.kill(leader).await?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    target.backend.start_node(leader).await?;
    target.record(Kind::Ok, &fault, true, None);
    Ok(())
}

async fn rolling_restart(target: &Target<'_>) -> anyhow::Result<()> {
    for id in target.backend.node_ids() {
        let fault = format!("restart {id}");
        target.record(Kind::Invoke, &fault, true, None);
        target.backend.stop(id, Duration::from_secs(45)).await?;
        target.backend.start_node(id).await?;
        target.record(Kind::Ok, &fault, true, None);
        target.wait_whole(Duration::from_secs(60)).await;
    }
    Ok(())
}

async fn pause_leader(target: &Target<'_>, rng: &mut StdRng) -> anyhow::Result<()> {
    let (leader, _) = random_leader(target, rng).await?;
    let fault = format!("pause {leader}");
    target.record(Kind::Invoke, &fault, true, None);
    target.backend.pause(leader).await?;
    tokio::time::sleep(Duration::from_secs(12)).await;
    target.backend.resume(leader).await?;
    target.record(Kind::Ok, &fault, true, None);
    Ok(())
}

async fn isolate_leader(target: &Target<'_>, rng: &mut StdRng) -> anyhow::Result<()> {
    let (leader, _) = random_leader(target, rng).await?;
    let fault = format!("isolate {leader}");
    target.record(Kind::Invoke, &fault, true, None);
    target.backend.isolate(leader).await?;
    tokio::time::sleep(Duration::from_secs(15)).await;
    target.backend.heal().await?;
    target.record(Kind::Ok, &fault, true, None);
    Ok(())
}

async fn slow_followers(target: &Target<'_>, rng: &mut StdRng) -> anyhow::Result<()> {
    let (_, followers) = random_leader(target, rng).await?;
    let fault = format!("slow {followers:?} by 300 ms");
    target.record(Kind::Invoke, &fault, true, None);
    for f in &followers {
        target.backend.slow(*f, Duration::from_millis(300)).await?;
    }
    tokio::time::sleep(Duration::from_secs(15)).await;
    target.backend.heal().await?;
    target.record(Kind::Ok, &fault, true, None);
    Ok(())
}

async fn kill_controller(target: &Target<'_>, round: u32) -> anyhow::Result<()> {
    let active = target
        .backend
        .active_controller()
        .await
        .ok_or_else(|| anyhow::anyhow!("no active controller to kill"))?;
    let mut victims = vec![active];
    // Every third round, two of three: no quorum, so no metadata change can commit.
    if round.is_multiple_of(3) {
        if let Some(other) = target.backend.node_ids().into_iter().find(|n| *n != active) {
            victims.push(other);
        }
    }
    let available = victims.len() == 1;
    let fault = format!("kill controller {victims:?}");
    target.record(Kind::Invoke, &fault, available, None);
    for v in &victims {
        target.backend.kill(*v).await?;
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    for v in &victims {
        target.backend.start_node(*v).await?;
    }
    target.record(Kind::Ok, &fault, available, None);
    Ok(())
}

async fn isolate_controller(target: &Target<'_>) -> anyhow::Result<()> {
    let active = target
        .backend
        .active_controller()
        .await
        .ok_or_else(|| anyhow::anyhow!("no active controller to isolate"))?;
    let fault = format!("isolate controller {active}");
    target.record(Kind::Invoke, &fault, true, None);
    target.backend.isolate(active).await?;
    tokio::time::sleep(Duration::from_secs(15)).await;
    target.backend.heal().await?;
    target.record(Kind::Ok, &fault, true, None);
    Ok(())
}

async fn kill_all(target: &Target<'_>) -> anyhow::Result<()> {
    let fault = "kill all".to_string();
    target.record(Kind::Invoke, &fault, false, None);
    for id in target.backend.node_ids() {
        target.backend.kill(id).await?;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    for id in target.backend.node_ids() {
        target.backend.start_node(id).await?;
    }
    target.record(Kind::Ok, &fault, false, None);
    Ok(())
}

async fn corrupt_follower(target: &Target<'_>, rng: &mut StdRng) -> anyhow::Result<()> {
    let partition = rng.random_range(0..target.partitions);
    let (_, followers) = target
        .replicas_of(partition)
        .await
        .ok_or_else(|| anyhow::anyhow!("partition {partition} has no leader"))?;
    let victim = *followers
        .get(rng.random_range(0..followers.len().max(1)))
        .ok_or_else(|| anyhow::anyhow!("partition {partition} has no follower"))?;
    let fault = format!("corrupt {victim} ({}-{partition})", target.topic);
    target.record(Kind::Invoke, &fault, true, None);
    target.backend.kill(victim).await?;
    let what = target
        .backend
        .corrupt(victim, target.topic, partition, rng.random())
        .await;
    target.backend.start_node(victim).await?;
    match what {
        Ok(what) => {
            tracing::info!(%what, "corrupted a follower's segment");
            target.record(Kind::Ok, &fault, true, None);
        }
        Err(e) => target.record(Kind::Fail, &fault, true, Some(e.to_string())),
    }
    Ok(())
}

async fn power_loss_leader(target: &Target<'_>, rng: &mut StdRng) -> anyhow::Result<()> {
    let (leader, _) = random_leader(target, rng).await?;
    let fault = format!("power cut {leader}");
    target.record(Kind::Invoke, &fault, true, None);
    let report = target.backend.power_cut(leader, rng.random()).await?;
    tracing::info!(node = leader, %report, "power cut");
    tokio::time::sleep(Duration::from_secs(6)).await;
    target.backend.start_node(leader).await?;
    target.record(Kind::Ok, &fault, true, None);
    Ok(())
}

async fn power_loss_all(target: &Target<'_>, rng: &mut StdRng) -> anyhow::Result<()> {
    let fault = "power cut all".to_string();
    target.record(Kind::Invoke, &fault, false, None);
    for id in target.backend.node_ids() {
        let report = target.backend.power_cut(id, rng.random()).await?;
        tracing::info!(node = id, %report, "power cut");
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    for id in target.backend.node_ids() {
        target.backend.start_node(id).await?;
    }
    target.record(Kind::Ok, &fault, false, None);
    Ok(())
}

async fn disk_error(target: &Target<'_>, rng: &mut StdRng) -> anyhow::Result<()> {
    let partition = rng.random_range(0..target.partitions);
    let (leader, _) = target
        .replicas_of(partition)
        .await
        .ok_or_else(|| anyhow::anyhow!("partition {partition} has no leader"))?;
    let on = if rng.random_bool(0.5) {
        "writes"
    } else {
        "syncs"
    };
    let fault = format!(
        "disk error ({on}) on {leader} ({}-{partition})",
        target.topic
    );
    // The partition moves to another replica: the cluster stays writable.
    target.record(Kind::Invoke, &fault, true, None);
    let under = format!("logs/{}-{partition}", target.topic);
    target.backend.disk_error(leader, &under, on).await?;
    tokio::time::sleep(Duration::from_secs(15)).await;
    // A failed log stays offline until its broker restarts (as Kafka's log directory).
    target.backend.clear_disk_errors(leader).await?;
    target.backend.stop(leader, Duration::from_secs(45)).await?;
    target.backend.start_node(leader).await?;
    target.record(Kind::Ok, &fault, true, None);
    Ok(())
}
