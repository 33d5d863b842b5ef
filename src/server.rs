//! `spate server`: a node started from a configuration file, environment variables and
//! flags (see `docs/configuration.md`): a controller voter, a broker, or both.
use std::path::PathBuf;
use std::time::Instant;

use spate::node::{ExtraListener, Node, NodeConfig, Roles};

use crate::config::{ConfigFlags, ServerConfig, Source};

/// Flags of `spate server`.
#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// TOML configuration file; environment variables and flags override its keys.
    #[arg(long, value_name = "PATH", env = "SPATE_CONFIG")]
    config: Option<PathBuf>,
    /// Log output format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Test builds only (feature `fault-injection`): keep the broker's data on a
    /// simulated storage that the admin port can cut the power of.
    #[arg(long, hide = true)]
    simulated_storage: bool,
    #[command(flatten)]
    flags: ConfigFlags,
}

/// Keys that are parsed and validated but not yet acted on (none at present).
const NOT_ACTED_ON: &[&str] = &[];

/// Runs until SIGINT or SIGTERM, then shuts down cleanly.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    crate::logging::init(&args.log_format, "info,openraft=warn,sled=warn");
    if cfg!(feature = "unsafe-ack-before-hw") {
        tracing::error!(
            "THIS BUILD IS DELIBERATELY UNSAFE (feature unsafe-ack-before-hw): acks=all is acknowledged before replication; it exists only for the chaos self-test"
        );
    }
    let config = ServerConfig::load(
        args.config.as_deref(),
        &crate::config::spate_env(),
        &args.flags,
    )?;
    for (var, hint) in crate::config::unknown_env(&crate::config::spate_env()) {
        tracing::warn!("{var} is not a configuration key; ignored{hint}");
    }
    for (key, value, source) in config.effective() {
        tracing::info!("config {key} = {value} ({source})");
    }
    #[allow(unused_mut)]
    let mut node_config = node_config(&config);
    if args.simulated_storage {
        #[cfg(feature = "fault-injection")]
        {
            tracing::error!("SIMULATED STORAGE (test build): data is not fsynced to the disk; the admin port can cut its power");
            node_config.storage =
                spate::fault_injection::simulated_storage(config.data_dir.clone());
        }
        #[cfg(not(feature = "fault-injection"))]
        anyhow::bail!(
            "--simulated-storage needs a build with the fault-injection feature (test builds only)"
        );
    }
    for key in not_acted_on(&config) {
        tracing::warn!("{key} is set but not acted on by this build yet");
    }
    if let Some(ip) = config.outbound_source_ip {
        spate_controller_client::source::set_source_ip(ip).map_err(anyhow::Error::msg)?;
    }
    let started = Instant::now();
    let node = Node::start(node_config).await?;
    println!(
        "spate server ready: node={} roles={} kafka={} controller={} admin={} data={} ({} ms)",
        config.node_id.0,
        config.roles,
        config
            .listeners
            .iter()
            .map(|l| format!("{}://{}", l.name, l.advertised))
            .collect::<Vec<_>>()
            .join(","),
        config.controller_listener,
        node.admin_addr.map(|a| a.to_string()).unwrap_or_default(),
        config.data_dir.display(),
        started.elapsed().as_millis()
    );
    crate::wait_for_shutdown_signal().await?;
    if !config.controlled_shutdown_timeout.is_zero() {
        // Leadership moves to other in-sync replicas first, so clients switch over at once
        // and no acks=all write waits on a broker that is going away.
        node.controlled_shutdown(config.controlled_shutdown_timeout)
            .await;
    }
    tracing::info!("shutting down");
    node.shutdown().await;
    Ok(())
}

/// Maps the validated configuration onto the node's settings.
fn node_config(c: &ServerConfig) -> NodeConfig {
    // Validation guarantees at least one listener; the inter-broker one is first.
    let inter = &c.listeners[0];
    NodeConfig {
        node_id: c.node_id.0,
        data_dir: c.data_dir.clone(),
        storage: spate_broker::storage::LocalFs::shared(),
        kafka_addr: inter.bind,
        listener_name: inter.name.clone(),
        extra_listeners: c.listeners[1..]
            .iter()
            .map(|l| ExtraListener {
                name: l.name.clone(),
                addr: l.bind,
                advertised_host: Some(l.advertised.host.clone()),
                advertised_port: Some(l.advertised.port),
            })
            .collect(),
        controller_addr: c.controller_listener,
        replication_addr: c.replication_listener,
        admin_addr: Some(c.admin_listener),
        replica_lag_time_max: c.replica_lag_time_max,
        leader_imbalance_check_interval: c.leader_imbalance_check_interval,
        log_retention_check_interval: c.log_retention_check_interval,
        log_cleaner: c.log_cleaner.clone(),
        topic_defaults: c.topic_defaults.clone(),
        groups: c.groups.clone(),
        cluster_id: c.cluster_id.clone(),
        replication_advertised: c
            .replication_advertised
            .as_ref()
            .map(|hp| (hp.host.clone(), hp.port)),
        offsets_topic_partitions: c.offsets_topic_partitions,
        advertised_host: Some(inter.advertised.host.clone()),
        advertised_port: Some(inter.advertised.port),
        num_partitions: c.num_partitions,
        default_replication_factor: c.default_replication_factor as i32,
        auto_create_topics: c.auto_create_topics,
        roles: Roles {
            controller: c.roles.controller,
            broker: c.roles.broker,
        },
        voters: c
            .voters
            .iter()
            .map(|v| (v.id.0 as u64, v.addr.to_string()))
            .collect(),
        rack: c.rack.clone(),
        session_timeout: c.session_timeout,
        heartbeat_interval: c.heartbeat_interval,
        max_request_bytes: c.socket_request_max_bytes.max(0) as usize,
        fetch_max_bytes: c.fetch_max_bytes.max(1) as usize,
        replica_fetch_response_max_bytes: c.replica_fetch_response_max_bytes.max(1) as usize,
        connection_limits: c.connection_limits.clone(),
        // Nodes of a cluster start independently; readiness comes when the quorum forms.
        wait_ready: None,
    }
}

/// Keys a user set that this build parses but does not act on, to warn about them.
fn not_acted_on(c: &ServerConfig) -> Vec<&'static str> {
    NOT_ACTED_ON
        .iter()
        .copied()
        .filter(|k| c.sources.get(k).is_some_and(|s| *s != Source::Default))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;
    use crate::config::resolve;

    fn config(toml: &str) -> ServerConfig {
        resolve(
            Some((Path::new("spate.toml"), toml)),
            &BTreeMap::new(),
            &ConfigFlags::default(),
        )
        .unwrap()
    }

    #[test]
    fn single_combined_node_maps_onto_node_config() {
        let c = config(
            "node.id = 1\ncontroller.quorum.voters = '1@localhost:9093'\nlisteners = 'PLAINTEXT://0.0.0.0:9092'\nnum.partitions = 3\nauto.create.topics.enable = false\n",
        );
        let n = node_config(&c);
        assert_eq!(n.node_id, 1);
        assert_eq!(n.kafka_addr, "0.0.0.0:9092".parse().unwrap());
        assert_eq!(n.controller_addr, "127.0.0.1:9093".parse().unwrap());
        assert_eq!(n.advertised_host.as_deref(), Some("127.0.0.1"));
        assert_eq!(n.advertised_port, Some(9092));
        assert_eq!(n.data_dir, PathBuf::from("./spate-data"));
        assert_eq!(n.num_partitions, 3);
        assert!(!n.auto_create_topics);
        assert_eq!(n.roles, Roles::COMBINED);
        assert_eq!(n.admin_addr, Some("127.0.0.1:9095".parse().unwrap()));
    }

    #[test]
    fn a_three_voter_broker_only_node_maps_every_setting() {
        let c = config(
            "node.id = 4\nprocess.roles = ['broker']\ncontroller.quorum.voters = '1@a:9093,2@b:9093,3@c:9093'\nadvertised.listeners = 'PLAINTEXT://b:19092'\nbroker.rack = 'eu-1a'\ndefault.replication.factor = 3\nbroker.session.timeout.ms = 6000\nbroker.heartbeat.interval.ms = 500\nsocket.request.max.bytes = 1048576\n",
        );
        let n = node_config(&c);
        assert_eq!(
            n.roles,
            Roles {
                controller: false,
                broker: true
            }
        );
        assert_eq!(
            n.voters,
            vec![
                (1, "a:9093".to_string()),
                (2, "b:9093".to_string()),
                (3, "c:9093".to_string())
            ]
        );
        assert_eq!(n.advertised_host.as_deref(), Some("b"));
        assert_eq!(n.advertised_port, Some(19092));
        assert_eq!(n.rack.as_deref(), Some("eu-1a"));
        assert_eq!(n.default_replication_factor, 3);
        assert_eq!(n.session_timeout, std::time::Duration::from_millis(6000));
        assert_eq!(n.heartbeat_interval, std::time::Duration::from_millis(500));
        assert_eq!(n.max_request_bytes, 1048576);
        assert_eq!(n.wait_ready, None);
    }

    #[test]
    fn keys_not_acted_on_are_reported_only_when_set() {
        let c =
            config("node.id = 1\ncontroller.quorum.voters = '1@a:9093'\nbroker.rack = 'eu-1a'\n");
        assert!(not_acted_on(&c).is_empty());
        let c = config(
            "node.id = 1\ncontroller.quorum.voters = '1@a:9093'\nadmin.listener = '127.0.0.1:9095'\n",
        );
        // admin.listener is served now (the HTTP admin port).
        assert!(not_acted_on(&c).is_empty());
    }
}
