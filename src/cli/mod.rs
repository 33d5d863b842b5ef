//! The command-line tools, built on `spate-client` (the Kafka protocol).
//!
//! - `topic`: create, list, describe, delete topics, alter configs, add partitions.
//! - `produce` / `consume`: stdin lines to records, records to stdout (`--group` joins a
//!   consumer group).
//! - `group`: list, describe (offsets and lag), reset offsets, delete consumer groups.
//! - `bench`: producer and consumer throughput/latency runs in the spirit of Kafka's
//!   `kafka-producer-perf-test` and `kafka-consumer-perf-test`.
pub mod bench;
pub mod cluster;
pub mod consume;
pub mod group;
pub mod node;
pub mod produce;
pub mod topic;
pub mod verify;

use spate_client::{Acks, ClientConfig, Compression, StartOffset};

/// Where the cluster is; every command takes it.
#[derive(clap::Args, Debug, Clone)]
pub struct Conn {
    /// Kafka bootstrap servers, host:port[,host:port].
    #[arg(
        long,
        env = "SPATE_BOOTSTRAP",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    pub bootstrap: String,
}

impl Conn {
    /// Client settings for this bootstrap list.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new(self.bootstrap.clone());
        c.client_id = "spate-cli".to_string();
        c
    }
}

/// Quiet logging for CLI commands: warnings and errors to stderr unless `RUST_LOG` says more.
pub fn init_logging() {
    crate::logging::init("text", "warn");
}

/// Parses `key=value`.
pub fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected key=value, got '{s}'")),
    }
}

/// Parses `--acks 0|1|all`.
pub fn parse_acks(s: &str) -> Result<Acks, String> {
    s.parse()
}

/// Parses `--compression none|gzip|snappy|lz4|zstd`.
pub fn parse_compression(s: &str) -> Result<Compression, String> {
    s.parse()
}

/// Parses `--from beginning|end|offset:N|timestamp:MS`.
pub fn parse_start(s: &str) -> Result<StartOffset, String> {
    match s {
        "beginning" | "earliest" => Ok(StartOffset::Earliest),
        "end" | "latest" => Ok(StartOffset::Latest),
        _ => {
            let bad = || format!("expected beginning, end, offset:N or timestamp:MS, got '{s}'");
            match s.split_once(':') {
                Some(("offset", n)) => n.parse().map(StartOffset::Offset).map_err(|_| bad()),
                Some(("timestamp", t)) => t.parse().map(StartOffset::Timestamp).map_err(|_| bad()),
                _ => Err(bad()),
            }
        }
    }
}

/// Writes to stdout; a closed pipe (`| head`) ends the command quietly instead of failing.
pub fn is_broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        assert_eq!(parse_kv("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_kv("=x").is_err());
        assert!(parse_kv("novalue").is_err());
        assert_eq!(parse_start("beginning"), Ok(StartOffset::Earliest));
        assert_eq!(parse_start("end"), Ok(StartOffset::Latest));
        assert_eq!(parse_start("offset:42"), Ok(StartOffset::Offset(42)));
        assert_eq!(
            parse_start("timestamp:1700000000000"),
            Ok(StartOffset::Timestamp(1_700_000_000_000))
        );
        assert!(parse_start("offset:x").is_err());
        assert!(parse_start("middle").is_err());
        assert_eq!(parse_acks("all"), Ok(Acks::All));
        assert_eq!(parse_acks("0"), Ok(Acks::None));
        assert!(parse_acks("2").is_err());
        assert_eq!(parse_compression("ZSTD"), Ok(Compression::Zstd));
    }
}
