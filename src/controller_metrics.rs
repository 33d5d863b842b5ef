//! The controller's gauges on `/metrics`, built at scrape time in a registry of their own
//! (a controller-only node has no broker state): `controller_raft_role{role}`,
//! `controller_raft_term`, `controller_raft_commit_index`, `controller_raft_apply_lag`,
//! `controller_registered_brokers`, `controller_fenced_brokers`.
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use spate_controller::ControllerHandle;

/// Roles an openraft node can be in, as `controller_raft_role` labels them.
const RAFT_ROLES: [&str; 5] = ["leader", "follower", "candidate", "learner", "shutdown"];

/// `role`.
#[derive(EncodeLabelSet, Clone, Hash, PartialEq, Eq, Debug)]
struct RoleLabels {
    role: String,
}

/// Appends the controller's gauges to `out`.
pub fn encode(controller: &ControllerHandle, out: &mut String) {
    let mut registry = Registry::with_prefix("spate");
    let quorum = controller.describe_quorum();
    let role = format!("{:?}", controller.raft().metrics().borrow().state).to_lowercase();
    let roles: Family<RoleLabels, Gauge> = Family::default();
    for r in RAFT_ROLES {
        roles
            .get_or_create(&RoleLabels {
                role: r.to_string(),
            })
            .set((r == role) as i64);
    }
    let gauge = |v: u64| {
        let g: Gauge = Gauge::default();
        g.set(v.min(i64::MAX as u64) as i64);
        g
    };
    let image = controller.image();
    let fenced = image.brokers().values().filter(|b| b.fenced).count() as u64;
    registry.register(
        "controller_raft_role",
        "1 for this controller's current Raft role",
        roles,
    );
    registry.register(
        "controller_raft_term",
        "Current Raft term",
        gauge(quorum.term),
    );
    registry.register(
        "controller_raft_commit_index",
        "Raft commit index",
        gauge(quorum.commit_index),
    );
    registry.register(
        "controller_raft_apply_lag",
        "Committed Raft entries not yet applied to the metadata state machine",
        gauge(quorum.commit_index.saturating_sub(quorum.applied_index)),
    );
    registry.register(
        "controller_registered_brokers",
        "Brokers registered in the metadata image",
        gauge(image.brokers().len() as u64),
    );
    registry.register(
        "controller_fenced_brokers",
        "Registered brokers currently fenced",
        gauge(fenced),
    );
    if let Err(e) = prometheus_client::encoding::text::encode_registry(out, &registry) {
        tracing::warn!(error = %e, "cannot encode controller metrics");
    }
}
