//! The producer: `send` appends to per-partition batches and returns a future; a background
//! sender ships batches (linger, batch size, in-flight limit) and completes the futures.
//!
//! - [`partitioner`]: explicit / murmur2(key) / sticky choice of partition.
//! - [`batch`]: one partition's batch, its encoding and its shared completion.
//! - [`accumulator`]: the queues and the "what goes out now" rules (pure).
//! - [`idempotence`]: producer id, sequence numbers and retry ordering (pure).
//! - `sender`: the background task and response handling.

pub mod accumulator;
pub mod batch;
pub mod idempotence;
pub mod partitioner;
mod sender;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{watch, Notify, Semaphore, TryAcquireError};
use tokio::task::JoinHandle;

pub use batch::{DeliveryFuture, RecordMetadata};

use crate::cluster::Cluster;
use crate::config::ProducerConfig;
use crate::error::{Error, Result};
use crate::types::{Header, NodeId};
use accumulator::{Accumulator, Limits};

/// A Kafka producer. Cheap to clone; all clones share batches and connections. Dropping the
/// last clone lets the background sender finish pending batches and stop.
#[derive(Clone)]
pub struct Producer {
    handle: Arc<Handle>,
}

struct Handle {
    inner: Arc<Inner>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.inner.begin_close();
    }
}

/// State shared by `send`, the sender task and request tasks.
pub(crate) struct Inner {
    cluster: Arc<Cluster>,
    config: ProducerConfig,
    state: Mutex<State>,
    wake: Notify,
    /// Buffer memory in bytes: `send` takes, completion gives back (backpressure).
    memory: Semaphore,
    /// Batches opened and not yet completed; flush waits for zero.
    outstanding: watch::Sender<usize>,
    refreshing: AtomicBool,
    /// An InitProducerId task is running (idempotent producer).
    initializing: AtomicBool,
}

struct State {
    acc: Accumulator,
    in_flight: HashMap<NodeId, usize>,
    flushing: usize,
    closing: bool,
}

impl Inner {
    fn begin_close(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.closing = true;
        }
        self.wake.notify_one();
    }
}

impl Producer {
    /// Connects to the cluster and starts the sender.
    pub async fn connect(config: ProducerConfig) -> Result<Producer> {
        config.validate()?;
        let cluster = Cluster::connect(config.client.clone()).await?;
        Ok(Self::with_cluster(cluster, config))
    }

    /// A producer over an existing cluster handle (shares its connections). With
    /// `enable_idempotence` it forces acks=all and at most 5 requests in flight per broker
    /// (`connect` refuses other acks instead).
    pub fn with_cluster(cluster: Arc<Cluster>, mut config: ProducerConfig) -> Producer {
        if config.enable_idempotence {
            config.acks = crate::types::Acks::All;
            config.client.max_in_flight =
                config.client.max_in_flight.min(idempotence::MAX_IN_FLIGHT);
        }
        let limits = Limits {
            batch_size: config.batch_size.max(1),
            linger: config.linger,
            max_request_size: config.max_request_size,
            delivery_timeout: config.delivery_timeout,
        };
        let memory = config.buffer_memory.clamp(1, u32::MAX as usize);
        let inner = Arc::new(Inner {
            cluster,
            state: Mutex::new(State {
                acc: if config.enable_idempotence {
                    Accumulator::idempotent(limits)
                } else {
                    Accumulator::new(limits)
                },
                in_flight: HashMap::new(),
                flushing: 0,
                closing: false,
            }),
            wake: Notify::new(),
            memory: Semaphore::new(memory),
            outstanding: watch::channel(0).0,
            refreshing: AtomicBool::new(false),
            initializing: AtomicBool::new(false),
            config,
        });
        let task = tokio::spawn(sender::run(inner.clone()));
        Producer {
            handle: Arc::new(Handle {
                inner,
                task: Mutex::new(Some(task)),
            }),
        }
    }

    /// The cluster handle (metadata, connections).
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.handle.inner.cluster
    }

    /// Queues a record and returns a future for its (partition, offset). Waits only when the
    /// buffer is full or the topic's metadata is not known yet.
    ///
    /// Partition: `partition` if given; else murmur2 of the key like the Java client; else a
    /// sticky partition that changes once a batch's worth went to it.
    pub async fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: Vec<Header>,
    ) -> Result<DeliveryFuture> {
        let inner = &self.handle.inner;
        let num_partitions = match inner.cluster.metadata().partition_count(topic) {
            Ok(n) => n,
            Err(_) => inner.cluster.partition_count(topic).await?,
        };
        if let Some(p) = partition {
            if p < 0 || p as usize >= num_partitions {
                return Err(Error::InvalidArgument(format!(
                    "topic '{topic}' has {num_partitions} partitions; partition {p} does not exist"
                )));
            }
        }
        let size = batch::record_size(key.as_ref(), value.as_ref(), &headers);
        if size > inner.config.max_request_size || size > inner.config.buffer_memory {
            return Err(Error::InvalidArgument(format!(
                "record of {size} bytes exceeds max_request_size {} or buffer_memory {}",
                inner.config.max_request_size, inner.config.buffer_memory
            )));
        }
        self.reserve_memory(size).await?;
        let timestamp = now_ms();
        let appended = {
            let mut st = inner.state.lock().map_err(|_| Error::Closed)?;
            if st.closing {
                drop(st);
                inner.memory.add_permits(size);
                return Err(Error::Closed);
            }
            let partition = match (partition, key.as_deref()) {
                (Some(p), _) => p,
                (None, Some(k)) => partitioner::partition_for_key(k, num_partitions),
                (None, None) => st.acc.sticky_partition(topic, num_partitions, size),
            };
            let appended = st.acc.append(
                topic,
                partition,
                key,
                value,
                headers,
                timestamp,
                size,
                Instant::now(),
            );
            if appended.opened {
                // Counted under the lock: the batch cannot complete (and be subtracted)
                // before it is counted, or flush would wait forever.
                inner.outstanding.send_modify(|n| *n += 1);
            }
            appended
        };
        if appended.wake_sender {
            inner.wake.notify_one();
        }
        Ok(appended.future)
    }

    /// Sends and waits for the acknowledgement.
    pub async fn send_and_wait(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: Vec<Header>,
    ) -> Result<RecordMetadata> {
        self.send(topic, partition, key, value, headers)
            .await?
            .await
    }

    /// Sends everything buffered now and waits until every batch is acknowledged or failed.
    pub async fn flush(&self) -> Result<()> {
        let inner = &self.handle.inner;
        let mut rx = inner.outstanding.subscribe();
        if let Ok(mut st) = inner.state.lock() {
            st.flushing += 1;
        }
        inner.wake.notify_one();
        let waited = rx
            .wait_for(|n| *n == 0)
            .await
            .map(|_| ())
            .map_err(|_| Error::Closed);
        if let Ok(mut st) = inner.state.lock() {
            st.flushing = st.flushing.saturating_sub(1);
        }
        waited
    }

    /// Flushes, then stops the sender. Other clones can no longer send.
    pub async fn close(&self) -> Result<()> {
        let flushed = self.flush().await;
        self.handle.inner.begin_close();
        let task = self.handle.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            // A panicked sender task is a bug; report it as closed rather than propagate.
            let _ = task.await;
        }
        flushed
    }

    async fn reserve_memory(&self, size: usize) -> Result<()> {
        let memory = &self.handle.inner.memory;
        let n = u32::try_from(size)
            .map_err(|_| Error::InvalidArgument(format!("record of {size} bytes is too large")))?;
        match memory.try_acquire_many(n) {
            // The permits go back when the batch completes (sender::finish), not on drop.
            Ok(p) => p.forget(),
            Err(TryAcquireError::NoPermits) => memory
                .acquire_many(n)
                .await
                .map_err(|_| Error::Closed)?
                .forget(),
            Err(TryAcquireError::Closed) => return Err(Error::Closed),
        }
        Ok(())
    }
}

/// Milliseconds since the Unix epoch (Kafka's timestamp unit).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
