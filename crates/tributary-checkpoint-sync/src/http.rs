//! What `/metrics`, `/healthz` (the sync loop is running) and `/readyz` (a round has
//! completed with the checkpoint topics read to their end) answer, and the standby's two
//! routes for the operator:
//! - `GET /plan`: the plan of the last round that committed (JSON; 404 before the first), the
//!   watermarks of an unplanned failover (the active region is gone, nothing newer exists);
//! - `POST /final?epoch=<e>`: run the final round of a planned move now, answered with its
//!   plan once its commit was read back. `e` must be this sync's epoch (409 otherwise): a
//!   request meant for another move never commits here;
//! - `GET /status`: the zombie commits this sync has seen (`tributary_core::commit_epoch::ZombieReport`,
//!   JSON): their total and the partitions held by one now.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tributary_core::TranslationPlan;
use tributary_core::commit_epoch::ZombieReport;

use crate::metrics::Metrics;

pub struct Health {
    pub metrics: Metrics,
    pub ready: AtomicBool,
    pub alive: AtomicBool,
    /// The plan of the last round that committed.
    pub last_plan: Mutex<Option<Arc<TranslationPlan>>>,
    /// Zombie commits seen (`GET /status`).
    pub zombies: Mutex<ZombieReport>,
}

impl Health {
    pub fn new() -> Self {
        Self {
            metrics: Metrics::new(),
            ready: AtomicBool::new(false),
            alive: AtomicBool::new(true),
            last_plan: Mutex::new(None),
            zombies: Mutex::new(ZombieReport::default()),
        }
    }
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl tributary_runtime::Endpoints for Health {
    fn metrics(&self) -> String {
        self.metrics.encode()
    }

    fn healthz(&self) -> Result<(), String> {
        if self.alive.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("sync loop stopped".into())
        }
    }

    fn readyz(&self) -> Result<(), String> {
        if self.ready.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(
                "not ready: no round has completed with the checkpoint topics read to their end"
                    .into(),
            )
        }
    }
}

/// A request for the final round, handed to the sync loop (rounds run on its thread).
pub struct FinalRequest {
    pub epoch: u64,
    pub reply: tokio::sync::oneshot::Sender<FinalReply>,
}

/// The sync loop's answer to a [`FinalRequest`].
#[derive(Debug)]
pub enum FinalReply {
    /// Committed and read back: the plan.
    Committed(Arc<TranslationPlan>),
    /// Not for this sync (another epoch), or not now (the group has members in B).
    Refused(String),
    /// The round failed; nothing, or not everything, was committed.
    Failed(String),
}

#[derive(Clone)]
struct Control {
    health: Arc<Health>,
    requests: std::sync::mpsc::SyncSender<FinalRequest>,
}

/// How long `POST /final` waits for the loop: its current round, then the final one.
const FINAL_WAIT: Duration = Duration::from_secs(120);

/// The standby's routes (see the module docs).
pub fn control_routes(
    health: Arc<Health>,
    requests: std::sync::mpsc::SyncSender<FinalRequest>,
) -> Router {
    Router::new()
        .route("/plan", get(last_plan))
        .route("/status", get(status))
        .route("/final", post(final_round))
        .with_state(Control { health, requests })
}

fn json(plan: &TranslationPlan) -> Response {
    match serde_json::to_string(plan) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn last_plan(State(c): State<Control>) -> Response {
    let plan = c.health.last_plan.lock().ok().and_then(|p| p.clone());
    match plan {
        Some(plan) => json(&plan),
        None => (StatusCode::NOT_FOUND, "no round has committed yet\n").into_response(),
    }
}

async fn status(State(c): State<Control>) -> Response {
    let report = c
        .health
        .zombies
        .lock()
        .map(|z| z.clone())
        .unwrap_or_default();
    match serde_json::to_string(&report) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

#[derive(serde::Deserialize)]
struct FinalQuery {
    epoch: u64,
}

async fn final_round(State(c): State<Control>, Query(q): Query<FinalQuery>) -> Response {
    let (reply, answer) = tokio::sync::oneshot::channel();
    if c.requests
        .try_send(FinalRequest {
            epoch: q.epoch,
            reply,
        })
        .is_err()
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "a final round is already queued, or the sync loop stopped\n",
        )
            .into_response();
    }
    match tokio::time::timeout(FINAL_WAIT, answer).await {
        Ok(Ok(FinalReply::Committed(plan))) => json(&plan),
        Ok(Ok(FinalReply::Refused(why))) => {
            (StatusCode::CONFLICT, format!("{why}\n")).into_response()
        }
        Ok(Ok(FinalReply::Failed(why))) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{why}\n")).into_response()
        }
        Ok(Err(_)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the sync loop stopped before the final round\n",
        )
            .into_response(),
        Err(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            format!("no answer from the sync loop within {FINAL_WAIT:?}\n"),
        )
            .into_response(),
    }
}
