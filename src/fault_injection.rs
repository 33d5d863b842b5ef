//! Storage faults for the chaos runner (feature `fault-injection`, never in a release
//! image): `spate server --simulated-storage` keeps the broker's data on
//! `spate_log::power_loss::PowerLossFs`, and the admin port gains
//!
//! - `POST /v1/faults/power-cut?seed=N`: cut the power (everything not yet durable is
//!   dropped or torn, chosen by the seed), answer, and abort the process, as a machine
//!   losing power would;
//! - `POST /v1/faults/disk-error?under=PATH&on=writes|syncs`: fail those operations on
//!   files under `PATH` (relative to the data directory) with EIO;
//! - `DELETE /v1/faults/disk-error`: remove every injected error.
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use spate_log::power_loss::{FaultOn, IoFault, PowerLossFs};

/// The simulated storage of this process and its data directory.
static STORAGE: OnceLock<(Arc<PowerLossFs>, PathBuf)> = OnceLock::new();

/// Puts this process's broker data in `data_dir` on a simulated storage; returns it.
pub fn simulated_storage(data_dir: PathBuf) -> Arc<PowerLossFs> {
    STORAGE
        .get_or_init(|| (PowerLossFs::new(), data_dir))
        .0
        .clone()
}

/// The fault routes of the admin port.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/v1/faults/power-cut", post(power_cut))
        .route(
            "/v1/faults/disk-error",
            post(disk_error).delete(clear_disk_errors),
        )
}

fn not_simulated() -> Response {
    let body =
        json!({"error": "this node does not run on simulated storage (--simulated-storage)"});
    (StatusCode::CONFLICT, Json(body)).into_response()
}

#[derive(serde::Deserialize)]
struct CutParams {
    seed: Option<u64>,
}

async fn power_cut(Query(params): Query<CutParams>) -> Response {
    let Some((fs, _)) = STORAGE.get() else {
        return not_simulated();
    };
    let seed = params.seed.unwrap_or(0);
    match fs.power_cut(seed) {
        Ok(report) => {
            tracing::error!(seed, ?report, "POWER CUT (simulated): aborting the process");
            // Answer first, then die without any shutdown work.
            tokio::spawn(async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                std::process::abort();
            });
            let body = json!({
                "seed": seed,
                "data_changes_undone": report.data_changes_undone,
                "torn_writes": report.torn_writes,
                "entry_changes_undone": report.entry_changes_undone,
            });
            (StatusCode::OK, Json(body)).into_response()
        }
        Err(e) => {
            let body = json!({"error": format!("power cut failed: {e}")});
            (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
        }
    }
}

#[derive(serde::Deserialize)]
struct DiskErrorParams {
    under: String,
    on: String,
}

async fn disk_error(Query(params): Query<DiskErrorParams>) -> Response {
    let Some((fs, data_dir)) = STORAGE.get() else {
        return not_simulated();
    };
    let on = match params.on.as_str() {
        "writes" => FaultOn::Writes,
        "syncs" => FaultOn::Syncs,
        other => {
            let body = json!({"error": format!("on must be writes or syncs, not {other:?}")});
            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
    };
    let relative = PathBuf::from(&params.under);
    if relative.is_absolute() || relative.components().any(|c| c.as_os_str() == "..") {
        let body = json!({"error": "under must be a path inside the data directory"});
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    let under = data_dir.join(relative);
    tracing::error!(under = %under.display(), on = %params.on, "INJECTED DISK ERRORS (simulated)");
    fs.inject(IoFault { under, on });
    (StatusCode::OK, Json(json!({"injected": true}))).into_response()
}

async fn clear_disk_errors() -> Response {
    let Some((fs, _)) = STORAGE.get() else {
        return not_simulated();
    };
    fs.clear_faults();
    (StatusCode::OK, Json(json!({"cleared": true}))).into_response()
}
