//! The wiring of a Spate node, shared by the `spate` binary and the in-process test
//! clusters: it is the only place that links the controller (openraft, sled) and the
//! broker together.
//!
//! Layout:
//! - [`node`]: start a node's roles (controller quorum member, broker, or both), the broker
//!   reaching the controller over loopback gRPC like any remote broker.
//! - [`admin_http`]: the HTTP admin port (health, readiness, metrics, JSON views, drain).
//! - `controller_metrics`: the controller's gauges on `/metrics`.
//! - `fault_injection` (feature `fault-injection`, test builds only): simulated power
//!   cuts and disk errors for the chaos runner.
//!
//! The binary (`main.rs`) adds the CLI, configuration files and logging on top.
#![forbid(unsafe_code)]

pub mod admin_http;
mod controller_metrics;
#[cfg(feature = "fault-injection")]
pub mod fault_injection;
pub mod node;
