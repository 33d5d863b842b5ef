//! Our group consumer against a real broker: a member that keeps a partition through a
//! rebalance goes on from where it was. Before, every rejoin went back to the last
//! committed offset, so a member re-read what it already had whenever the group
//! rebalanced or its coordinator moved (the chaos checker's nonmonotonic-poll).
use std::time::Duration;

use spate_client::{Acks, GroupConsumer, GroupConsumerConfig, Producer, ProducerConfig};
use spate_tests::TestNode;

const TOPIC: &str = "kept";
const PER_PARTITION: i64 = 10;

fn member_config(bootstrap: &str) -> GroupConsumerConfig {
    let mut config = GroupConsumerConfig::new(bootstrap, "keepers");
    config.consumer.offset_reset = spate_client::OffsetReset::Earliest;
    config.consumer.max_wait = Duration::from_millis(100);
    // Nothing is committed: a rejoin that went back would start over at offset 0.
    config.auto_commit_interval = None;
    config.heartbeat_interval = Duration::from_millis(200);
    config.session_timeout = Duration::from_secs(10);
    config.rebalance_timeout = Duration::from_secs(20);
    config
}

async fn produce(producer: &Producer, partition: i32, value: &str) {
    producer
        .send_and_wait(
            TOPIC,
            Some(partition),
            None,
            Some(value.as_bytes().to_vec().into()),
            Vec::new(),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_keeps_its_position_in_the_partitions_it_keeps_across_a_rebalance() {
    let node = TestNode::start().await.unwrap();
    let bootstrap = node.bootstrap();
    let admin = spate_client::Admin::connect(spate_client::ClientConfig::new(bootstrap.clone()))
        .await
        .unwrap();
    admin
        .create_topic(spate_client::admin::NewTopic::new(TOPIC, 2, 1))
        .await
        .unwrap();
    let mut pc = ProducerConfig::new(bootstrap.clone());
    pc.acks = Acks::All;
    let producer = Producer::connect(pc).await.unwrap();
    for p in 0..2 {
        for i in 0..PER_PARTITION {
            produce(&producer, p, &format!("p{p}-{i}")).await;
        }
    }

    // A alone reads both partitions to their end.
    let mut a = GroupConsumer::connect(member_config(&bootstrap), &[TOPIC.to_string()])
        .await
        .unwrap();
    let mut read = 0;
    for _ in 0..100 {
        read += a.poll(Duration::from_millis(200)).await.unwrap().len() as i64;
        if read == 2 * PER_PARTITION {
            break;
        }
    }
    assert_eq!(read, 2 * PER_PARTITION);
    let generation = a.generation_id();

    // B joins: A rejoins while it polls, and keeps one of the two partitions.
    let b_bootstrap = bootstrap.clone();
    let b = tokio::spawn(async move {
        GroupConsumer::connect(member_config(&b_bootstrap), &[TOPIC.to_string()]).await
    });
    let mut rebalanced = false;
    for _ in 0..200 {
        let records = a.poll(Duration::from_millis(100)).await.unwrap();
        assert!(
            records.is_empty(),
            "re-read after the rebalance: {records:?}"
        );
        if a.generation_id() > generation && a.assignment().len() == 1 && b.is_finished() {
            rebalanced = true;
            break;
        }
    }
    assert!(rebalanced, "the group did not rebalance to two members");
    let b = b.await.unwrap().unwrap();
    let kept = a.assignment()[0].clone();
    assert_eq!(a.position(&kept), Some(PER_PARTITION));

    // A new record on the kept partition is the next thing A reads.
    produce(&producer, kept.partition, "after").await;
    let mut next = Vec::new();
    for _ in 0..50 {
        next = a.poll(Duration::from_millis(200)).await.unwrap();
        if !next.is_empty() {
            break;
        }
    }
    let offsets: Vec<i64> = next.iter().map(|r| r.offset).collect();
    assert_eq!(
        offsets,
        vec![PER_PARTITION],
        "A went back instead of going on"
    );
    let _ = b.close().await;
    let _ = a.close().await;
    let _ = producer.close().await;
    node.stop().await;
}
