//! The workload: clients that write unique values and read them back while the nemesis
//! works, every operation recorded in the history.
//!
//! - idempotent acks=all producers (`idem<K>.<lane>`), judged: nothing acknowledged may be
//!   lost or duplicated, and each lane's acknowledged offsets rise;
//! - acks=1 producers (`acks1.<lane>`), reported only (an acks=1 write is allowed to be
//!   lost when its leader dies);
//! - group consumers (`group<K>`) that commit as they go, and an observer that fetches
//!   the committed offsets (they must never go backwards);
//! - a reader of every partition from the start (`reader`);
//! - an observer polling each broker's Metadata for (partition, epoch, leader);
//! - optionally librdkafka (confluent-kafka, a Python process) as a third-party producer.
//!
//! Each lane is one "process" of the history: it sends one value, waits for the outcome,
//! then sends the next, so its invocations and completions pair up.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use spate_client::admin::groups::fetch_committed;
use spate_client::{
    Acks, Admin, ClientConfig, Cluster, Consumer, ConsumerConfig, GroupConsumer,
    GroupConsumerConfig, Producer, ProducerConfig, StartOffset, TopicPartition,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::history::{Event, Kind, Op, Recorder};

/// Which client library writes the judged (idempotent acks=all) values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientKind {
    /// Spate's own Rust client.
    Rust,
    /// librdkafka through confluent-kafka (Python), a third-party client.
    Rdkafka,
}

/// Workload settings.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Topic written and read.
    pub topic: String,
    /// Its partitions.
    pub partitions: i32,
    /// Idempotent acks=all producers.
    pub idempotent_producers: usize,
    /// Concurrent sends per producer.
    pub lanes: usize,
    /// acks=1 producers (reported, not judged).
    pub acks1_producers: usize,
    /// Group consumers in one group.
    pub group_consumers: usize,
    /// Which client writes the judged values.
    pub client: ClientKind,
    /// Python with confluent-kafka (for `ClientKind::Rdkafka`).
    pub python: PathBuf,
    /// Where the run writes files (the rdkafka worker script goes here).
    pub out_dir: PathBuf,
    /// Pause between a lane's sends (bounds the load, so the history stays checkable).
    pub pace: Duration,
}

/// The group the consumers join.
pub const GROUP: &str = "chaos-group";

/// The running workload.
pub struct Workload {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    worker: Option<tokio::process::Child>,
}

fn client_config(bootstrap: &str, name: &str) -> ClientConfig {
    let mut c = ClientConfig::new(bootstrap.to_string());
    c.client_id = format!("chaos-{name}");
    c.request_timeout = Duration::from_secs(10);
    c
}

/// Creates the topic (replication factor `rf`, min.insync.replicas 2 when rf >= 2) and
/// waits until every partition has a leader and a full ISR.
pub async fn create_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    rf: i16,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = async {
            let admin = Admin::connect(client_config(bootstrap, "admin")).await?;
            let min_insync = if rf >= 2 { "2" } else { "1" };
            let new = spate_client::admin::topics::NewTopic::new(topic, partitions, rf)
                .config("min.insync.replicas", min_insync);
            match admin.create_topic(new).await {
                Ok(()) => Ok(()),
                Err(e)
                    if e.kafka_code() == Some(spate_client::ResponseError::TopicAlreadyExists) =>
                {
                    Ok(())
                }
                Err(e) => Err(e),
            }
        };
        match attempt.await {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                tracing::info!(error = %e, "topic not created yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(anyhow::anyhow!("cannot create topic {topic}: {e}")),
        }
    }
    while Instant::now() < deadline {
        if let Ok(cluster) = Cluster::connect(client_config(bootstrap, "admin")).await {
            let names = [topic.to_string()];
            if let Ok(m) = cluster.refresh(Some(&names)).await {
                let ready = m.topics.get(topic).is_some_and(|t| {
                    t.partitions.len() == partitions as usize
                        && t.partitions
                            .iter()
                            .all(|p| p.leader.is_some() && p.isr.len() == rf as usize)
                });
                cluster.close();
                if ready {
                    return Ok(());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("topic {topic} has no leader with a full ISR on every partition after 60 s")
}

impl Workload {
    /// Starts every client.
    pub async fn start(
        config: &WorkloadConfig,
        bootstrap: &str,
        kafka_addrs: &[(u32, String)],
        recorder: &Recorder,
    ) -> anyhow::Result<Workload> {
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut worker = None;
        match config.client {
            ClientKind::Rust => {
                for k in 0..config.idempotent_producers {
                    let producer = ProducerSlot::new(bootstrap, &format!("idem{k}"), true).await?;
                    for lane in 0..config.lanes {
                        tasks.push(tokio::spawn(send_lane(
                            producer.clone(),
                            config.clone(),
                            format!("idem{k}.{lane}"),
                            true,
                            recorder.clone(),
                            stop_rx.clone(),
                        )));
                    }
                }
            }
            ClientKind::Rdkafka => {
                worker = Some(crate::rdkafka::spawn(
                    config,
                    bootstrap,
                    recorder,
                    stop_rx.clone(),
                )?);
            }
        }
        for k in 0..config.acks1_producers {
            let producer = ProducerSlot::new(bootstrap, &format!("acks1-{k}"), false).await?;
            for lane in 0..config.lanes.div_ceil(2) {
                tasks.push(tokio::spawn(send_lane(
                    producer.clone(),
                    config.clone(),
                    format!("acks1-{k}.{lane}"),
                    false,
                    recorder.clone(),
                    stop_rx.clone(),
                )));
            }
        }
        for k in 0..config.group_consumers {
            tasks.push(tokio::spawn(group_member(
                bootstrap.to_string(),
                config.topic.clone(),
                format!("group{k}"),
                recorder.clone(),
                stop_rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(reader(
            bootstrap.to_string(),
            config.topic.clone(),
            config.partitions,
            recorder.clone(),
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(observe_leaders(
            kafka_addrs.to_vec(),
            config.topic.clone(),
            recorder.clone(),
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(observe_commits(
            bootstrap.to_string(),
            config.topic.clone(),
            config.partitions,
            recorder.clone(),
            stop_rx,
        )));
        Ok(Workload {
            stop,
            tasks,
            worker,
        })
    }

    /// Stops every client and waits (bounded) for outstanding operations to complete.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            if tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .is_err()
            {
                tracing::warn!("a workload task did not stop within 60 s");
            }
        }
        if let Some(mut worker) = self.worker.take() {
            crate::rdkafka::finish(&mut worker).await;
        }
    }
}

/// A producer shared by the lanes of one client, replaced when its idempotent state is
/// broken for good (a sequence error reached the application), as an application would
/// restart one. The client bumps its epoch itself after a batch fails (KIP-360), so this
/// is a last resort that a healthy run should not need.
#[derive(Clone)]
struct ProducerSlot {
    bootstrap: String,
    name: String,
    idempotent: bool,
    current: Arc<tokio::sync::RwLock<(u64, Producer)>>,
}

impl ProducerSlot {
    async fn new(bootstrap: &str, name: &str, idempotent: bool) -> anyhow::Result<ProducerSlot> {
        let p = producer(bootstrap, name, idempotent).await?;
        Ok(ProducerSlot {
            bootstrap: bootstrap.to_string(),
            name: name.to_string(),
            idempotent,
            current: Arc::new(tokio::sync::RwLock::new((0, p))),
        })
    }

    async fn get(&self) -> (u64, Producer) {
        let guard = self.current.read().await;
        (guard.0, guard.1.clone())
    }

    /// Replaces generation `seen` (once, whichever lane gets here first).
    async fn replace(&self, seen: u64) {
        let mut guard = self.current.write().await;
        if guard.0 != seen {
            return;
        }
        match producer(&self.bootstrap, &self.name, self.idempotent).await {
            Ok(p) => {
                tracing::info!(producer = %self.name, "idempotent state broken; new producer");
                let old = std::mem::replace(&mut guard.1, p);
                guard.0 += 1;
                drop(guard);
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(30), old.close()).await;
                });
            }
            Err(e) => {
                tracing::warn!(producer = %self.name, error = %e, "cannot make a new producer yet")
            }
        }
    }
}

/// Errors after which an idempotent producer cannot go on for that partition.
fn breaks_idempotence(e: &spate_client::Error) -> bool {
    use spate_client::ResponseError as R;
    matches!(
        e.kafka_code(),
        Some(R::OutOfOrderSequenceNumber | R::UnknownProducerId | R::InvalidProducerEpoch)
    )
}

async fn producer(bootstrap: &str, name: &str, idempotent: bool) -> anyhow::Result<Producer> {
    let mut config = ProducerConfig::new(bootstrap.to_string());
    config.client = client_config(bootstrap, name);
    config.client.allow_auto_topic_creation = false;
    config.acks = if idempotent { Acks::All } else { Acks::Leader };
    config.enable_idempotence = idempotent;
    config.linger = Duration::from_millis(1);
    config.delivery_timeout = Duration::from_secs(20);
    config.produce_timeout = Duration::from_secs(10);
    config.metadata_max_age = Duration::from_secs(2);
    Ok(Producer::connect(config).await?)
}

/// One lane: sends `<lane>-<n>` to its own partition (`lane % partitions`), one at a time.
/// A lane per partition keeps one unavailable partition from stalling the others.
async fn send_lane(
    slot: ProducerSlot,
    config: WorkloadConfig,
    process: String,
    idempotent: bool,
    recorder: Recorder,
    mut stop: watch::Receiver<bool>,
) {
    let acks: i16 = if idempotent { -1 } else { 1 };
    let lane: i32 = process
        .rsplit('.')
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let partition = lane % config.partitions.max(1);
    let mut n: u64 = 0;
    while !*stop.borrow() {
        let value = format!("{process}-{n}");
        n += 1;
        let mut invoke = Event::new(recorder.now_ms(), &process, Kind::Invoke, Op::Send);
        invoke.partition = Some(partition);
        invoke.value = Some(value.clone());
        invoke.acks = Some(acks);
        invoke.idempotent = idempotent;
        recorder.record(invoke.clone());
        let started = Instant::now();
        let (generation, producer) = slot.get().await;
        let sent = producer
            .send(
                &config.topic,
                Some(partition),
                None,
                Some(Bytes::from(value.clone())),
                Vec::new(),
            )
            .await;
        let outcome = match sent {
            Ok(delivery) => delivery.await,
            Err(e) => Err(e),
        };
        let mut done = invoke;
        done.time_ms = recorder.now_ms();
        done.latency_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
        match outcome {
            Ok(meta) => {
                done.kind = Kind::Ok;
                done.offset = Some(meta.offset);
            }
            Err(e) => {
                if breaks_idempotence(&e) {
                    slot.replace(generation).await;
                }
                // A refusal before sending (bad argument, closed producer) certainly wrote
                // nothing; anything that reached a broker may have been written.
                done.kind = match e {
                    spate_client::Error::InvalidArgument(_) | spate_client::Error::Closed => {
                        Kind::Fail
                    }
                    _ => Kind::Info,
                };
                done.error = Some(e.to_string());
            }
        }
        let failed = done.kind != Kind::Ok;
        recorder.record(done);
        let pause = if failed {
            Duration::from_millis(100)
        } else {
            config.pace
        };
        if !pause.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

fn read_event(recorder: &Recorder, process: &str, r: &spate_client::ConsumerRecord) -> Event {
    let mut e = Event::new(recorder.now_ms(), process, Kind::Ok, Op::Read);
    e.partition = Some(r.partition);
    e.offset = Some(r.offset);
    e.value = r
        .value
        .as_ref()
        .map(|v| String::from_utf8_lossy(v).into_owned());
    e
}

/// A group member: polls, records reads, commits every second; rejoins after errors.
async fn group_member(
    bootstrap: String,
    topic: String,
    process: String,
    recorder: Recorder,
    stop: watch::Receiver<bool>,
) {
    let mut membership = Memberships::default();
    while !*stop.borrow() {
        let mut config = GroupConsumerConfig::new(bootstrap.clone(), GROUP);
        config.consumer.client = client_config(&bootstrap, &process);
        config.consumer.offset_reset = spate_client::OffsetReset::Earliest;
        config.auto_commit_interval = None;
        let consumer = match GroupConsumer::connect(config, std::slice::from_ref(&topic)).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(%process, error = %e, "group consumer cannot join; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        run_member(consumer, &process, &recorder, &stop, &mut membership).await;
    }
}

/// Numbers one process's group memberships: a new one whenever its member id or
/// generation changes. A coordinator that lost the group hands out generation 1 again to
/// a new member id, so the generation alone does not tell memberships apart.
#[derive(Debug, Default)]
struct Memberships {
    current: Option<(String, i32)>,
    count: i32,
}

impl Memberships {
    fn of(&mut self, consumer: &GroupConsumer) -> i32 {
        let now = (consumer.member_id().to_string(), consumer.generation_id());
        if self.current.as_ref() != Some(&now) {
            self.current = Some(now);
            self.count += 1;
        }
        self.count
    }
}

async fn run_member(
    mut consumer: GroupConsumer,
    process: &str,
    recorder: &Recorder,
    stop: &watch::Receiver<bool>,
    membership: &mut Memberships,
) {
    let mut last_commit = Instant::now();
    while !*stop.borrow() {
        match consumer.poll(Duration::from_millis(500)).await {
            Ok(records) => {
                let generation = membership.of(&consumer);
                for r in &records {
                    let mut e = read_event(recorder, process, r);
                    e.generation = Some(generation);
                    recorder.record(e);
                }
            }
            Err(e) => {
                tracing::debug!(%process, error = %e, "poll failed; rejoining");
                let _ = consumer.close().await;
                return;
            }
        }
        if last_commit.elapsed() >= Duration::from_secs(1) {
            last_commit = Instant::now();
            let positions: Vec<(i32, i64)> = consumer
                .assignment()
                .iter()
                .filter_map(|tp| consumer.position(tp).map(|o| (tp.partition, o)))
                .collect();
            if consumer.commit().await.is_ok() {
                for (partition, offset) in positions {
                    let mut e = Event::new(recorder.now_ms(), process, Kind::Ok, Op::Commit);
                    e.partition = Some(partition);
                    e.offset = Some(offset);
                    e.group = Some(GROUP.to_string());
                    recorder.record(e);
                }
            }
        }
    }
    let _ = consumer.close().await;
}

/// Reads every partition from the start for the whole run.
async fn reader(
    bootstrap: String,
    topic: String,
    partitions: i32,
    recorder: Recorder,
    stop: watch::Receiver<bool>,
) {
    let mut positions: BTreeMap<i32, i64> = (0..partitions).map(|p| (p, 0)).collect();
    while !*stop.borrow() {
        let mut config = ConsumerConfig::new(bootstrap.clone());
        config.client = client_config(&bootstrap, "reader");
        config.max_wait = Duration::from_millis(300);
        let Ok(mut consumer) = Consumer::connect(config).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let tps: Vec<TopicPartition> = positions
            .keys()
            .map(|p| TopicPartition::new(topic.as_str(), *p))
            .collect();
        if consumer.assign(&tps, StartOffset::Earliest).await.is_err() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        for tp in &tps {
            consumer.seek(tp, positions[&tp.partition]);
        }
        while !*stop.borrow() {
            match tokio::time::timeout(Duration::from_secs(5), consumer.poll()).await {
                Ok(Ok(records)) => {
                    for r in &records {
                        recorder.record(read_event(&recorder, "reader", r));
                        positions.insert(r.partition, r.offset + 1);
                    }
                }
                Ok(Err(_)) | Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    break;
                }
            }
        }
    }
}

/// Every 500 ms, asks each broker which replica leads each partition in which epoch.
async fn observe_leaders(
    kafka_addrs: Vec<(u32, String)>,
    topic: String,
    recorder: Recorder,
    mut stop: watch::Receiver<bool>,
) {
    let names = [topic.clone()];
    let mut seen: BTreeMap<(i32, i32), i32> = BTreeMap::new();
    while !*stop.borrow() {
        for (_, addr) in &kafka_addrs {
            let probe = async {
                let cluster = Cluster::connect(client_config(addr, "observer"))
                    .await
                    .ok()?;
                let m = cluster.refresh(Some(&names)).await.ok();
                cluster.close();
                m
            };
            let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(2), probe).await else {
                continue;
            };
            let Some(t) = m.topics.get(&topic) else {
                continue;
            };
            for p in &t.partitions {
                let Some(leader) = p.leader else { continue };
                let key = (p.partition, p.leader_epoch.0);
                // Record each (partition, epoch, leader) once, and every disagreement.
                if seen.get(&key) == Some(&leader.0) {
                    continue;
                }
                seen.insert(key, leader.0);
                let mut e = Event::new(
                    recorder.now_ms(),
                    format!("observer@{addr}"),
                    Kind::Ok,
                    Op::Leader,
                );
                e.partition = Some(p.partition);
                e.leader = Some(leader.0);
                e.leader_epoch = Some(p.leader_epoch.0);
                recorder.record(e);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Every second, fetches the group's committed offsets.
async fn observe_commits(
    bootstrap: String,
    topic: String,
    partitions: i32,
    recorder: Recorder,
    mut stop: watch::Receiver<bool>,
) {
    let tps: Vec<TopicPartition> = (0..partitions)
        .map(|p| TopicPartition::new(topic.as_str(), p))
        .collect();
    let mut cluster: Option<Arc<Cluster>> = None;
    while !*stop.borrow() {
        if cluster.is_none() {
            cluster = Cluster::connect(client_config(&bootstrap, "commits"))
                .await
                .ok();
        }
        if let Some(c) = &cluster {
            let fetched = tokio::time::timeout(
                Duration::from_secs(5),
                fetch_committed(c, GROUP, Some(&tps)),
            )
            .await;
            match fetched {
                Ok(Ok(offsets)) => {
                    // "No committed offset" (-1) is recorded too: a commit that
                    // vanished shows as a committed offset going backwards.
                    for (tp, offset) in offsets {
                        let mut e =
                            Event::new(recorder.now_ms(), "commits", Kind::Ok, Op::Committed);
                        e.partition = Some(tp.partition);
                        e.offset = Some(offset);
                        e.group = Some(GROUP.to_string());
                        recorder.record(e);
                    }
                }
                _ => {
                    if let Some(c) = cluster.take() {
                        c.close();
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => {}
        }
    }
}

/// After healing: reads every partition from its log start to its high watermark and
/// records it (`final` reads and one `final-read` event per partition).
pub async fn final_read(bootstrap: &str, topic: &str, partitions: i32, recorder: &Recorder) {
    for p in 0..partitions {
        let mut done = Event::new(recorder.now_ms(), "final", Kind::Ok, Op::FinalRead);
        done.partition = Some(p);
        match read_partition(bootstrap, topic, p, recorder).await {
            Ok(hw) => done.offset = Some(hw),
            Err(e) => {
                done.kind = Kind::Fail;
                done.error = Some(e.to_string());
            }
        }
        done.time_ms = recorder.now_ms();
        recorder.record(done);
    }
}

async fn read_partition(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    recorder: &Recorder,
) -> anyhow::Result<i64> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut config = ConsumerConfig::new(bootstrap.to_string());
    config.client = client_config(bootstrap, "final");
    config.max_wait = Duration::from_millis(200);
    let mut consumer = Consumer::connect(config).await?;
    let tp = TopicPartition::new(topic, partition);
    consumer
        .assign(std::slice::from_ref(&tp), StartOffset::Earliest)
        .await?;
    let admin = Admin::with_cluster(consumer.cluster().clone());
    let hw = admin
        .list_offsets(&[(tp.clone(), spate_client::admin::offsets::OffsetSpec::Latest)])
        .await?
        .into_iter()
        .next()
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow::anyhow!("no high watermark for {topic}-{partition}"))??
        .offset;
    let mut records: Vec<Event> = Vec::new();
    while consumer.position(&tp).unwrap_or(0) < hw {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{topic}-{partition}: final read stuck at {:?} of {hw}",
            consumer.position(&tp)
        );
        match consumer.poll().await {
            Ok(batch) => {
                for r in batch.iter().filter(|r| r.offset < hw) {
                    records.push(read_event(recorder, "final", r));
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "final read poll failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    for e in records {
        recorder.record(e);
    }
    Ok(hw)
}
