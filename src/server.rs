//! `spate server`: a node started from a configuration file, environment variables and
//! flags (see `docs/configuration.md`). Until the multi-role `Node` lands, the validated
//! config is mapped onto today's combined single-voter node by [`node_config`], which
//! refuses — rather than ignores — what that node cannot do.
use std::path::PathBuf;
use std::time::Instant;

use spate_broker::node::{Node, NodeConfig};

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
    #[command(flatten)]
    flags: ConfigFlags,
}

/// Something the configuration asks for that this build's `Node` cannot do yet.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(String);

/// Keys that are parsed and validated but not yet passed to the node.
const NOT_ACTED_ON: &[&str] = &[
    "broker.rack",
    "broker.session.timeout.ms",
    "broker.heartbeat.interval.ms",
    "socket.request.max.bytes",
    "admin.listener",
];

/// Runs until SIGINT or SIGTERM, then shuts down cleanly.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    crate::logging::init(&args.log_format, "info,openraft=warn,sled=warn");
    let config = ServerConfig::load(args.config.as_deref(), &crate::config::spate_env(), &args.flags)?;
    for (key, value, source) in config.effective() {
        tracing::info!("config {key} = {value} ({source})");
    }
    let node_config = node_config(&config)?;
    for key in not_acted_on(&config) {
        tracing::warn!("{key} is set but not acted on by this build yet");
    }
    let started = Instant::now();
    let node = Node::start(node_config).await?;
    println!(
        "spate server ready: node={} roles={} kafka={} controller={} data={} ({} ms)",
        config.node_id.0,
        config.roles,
        config.advertised_listener,
        config.controller_listener,
        config.data_dir.display(),
        started.elapsed().as_millis()
    );
    crate::wait_for_shutdown_signal().await?;
    tracing::info!("shutting down");
    node.shutdown().await;
    Ok(())
}

/// Maps the configuration onto what `NodeConfig` can express today: one combined
/// broker+controller node that is the only voter.
fn node_config(c: &ServerConfig) -> Result<NodeConfig, Unsupported> {
    if !(c.roles.broker && c.roles.controller) {
        return Err(Unsupported(format!(
            "process.roles = '{}': a node with a single role is not supported by this build yet; use broker,controller",
            c.roles
        )));
    }
    if c.voters.len() > 1 {
        return Err(Unsupported(format!(
            "controller.quorum.voters lists {} voters: multi-node quorums are not supported by this build yet; list only this node",
            c.voters.len()
        )));
    }
    if c.default_replication_factor > 1 {
        return Err(Unsupported(format!(
            "default.replication.factor = {} needs that many brokers: multi-node clusters are not supported by this build yet",
            c.default_replication_factor
        )));
    }
    // The node advertises its bound Kafka port; only the host can be chosen.
    let port = c.listener.port();
    if port != 0 && c.advertised_listener.port != port {
        return Err(Unsupported(format!(
            "advertised.listeners port {} differs from the listeners port {port}: advertising another port is not supported by this build yet",
            c.advertised_listener.port
        )));
    }
    Ok(NodeConfig {
        node_id: c.node_id.0,
        data_dir: c.data_dir.clone(),
        kafka_addr: c.listener,
        controller_addr: c.controller_listener,
        advertised_host: Some(c.advertised_listener.host.clone()),
        num_partitions: c.num_partitions,
        auto_create_topics: c.auto_create_topics,
        // Fields added to `NodeConfig` since keep their single-node defaults.
        ..NodeConfig::ephemeral(&c.data_dir)
    })
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
        let n = node_config(&c).unwrap();
        assert_eq!(n.node_id, 1);
        assert_eq!(n.kafka_addr, "0.0.0.0:9092".parse().unwrap());
        assert_eq!(n.controller_addr, "127.0.0.1:9093".parse().unwrap());
        assert_eq!(n.advertised_host.as_deref(), Some("127.0.0.1"));
        assert_eq!(n.data_dir, PathBuf::from("./spate-data"));
        assert_eq!(n.num_partitions, 3);
        assert!(!n.auto_create_topics);
    }

    #[test]
    fn multi_node_quorum_is_refused() {
        let c = config(
            "node.id = 1\ncontroller.quorum.voters = '1@a:9093,2@b:9093,3@c:9093'\nadvertised.listeners = 'a:9092'\n",
        );
        let e = node_config(&c).unwrap_err().to_string();
        assert!(e.contains("multi-node quorums are not supported by this build yet"), "{e}");
    }

    #[test]
    fn single_role_is_refused() {
        let c = config(
            "node.id = 1\nprocess.roles = ['controller']\ncontroller.quorum.voters = '1@a:9093'\n",
        );
        let e = node_config(&c).unwrap_err().to_string();
        assert!(e.starts_with("process.roles = 'controller'"), "{e}");
    }

    #[test]
    fn replication_factor_above_one_is_refused() {
        let c = config(
            "node.id = 1\ncontroller.quorum.voters = '1@a:9093'\ndefault.replication.factor = 3\n",
        );
        let e = node_config(&c).unwrap_err().to_string();
        assert!(e.starts_with("default.replication.factor = 3"), "{e}");
    }

    #[test]
    fn advertised_port_other_than_listener_port_is_refused() {
        let c = config(
            "node.id = 1\ncontroller.quorum.voters = '1@a:9093'\nadvertised.listeners = 'PLAINTEXT://kafka:19092'\n",
        );
        let e = node_config(&c).unwrap_err().to_string();
        assert!(e.contains("port 19092 differs from the listeners port 9092"), "{e}");
    }

    #[test]
    fn keys_not_acted_on_are_reported_only_when_set() {
        let c = config("node.id = 1\ncontroller.quorum.voters = '1@a:9093'\n");
        assert!(not_acted_on(&c).is_empty());
        let c = config(
            "node.id = 1\ncontroller.quorum.voters = '1@a:9093'\nbroker.rack = 'eu-1a'\nadmin.listener = '127.0.0.1:9095'\n",
        );
        assert_eq!(not_acted_on(&c), ["broker.rack", "admin.listener"]);
    }
}
