//! `/metrics`, `/healthz` (the sync loop is running) and `/readyz` (a round has completed
//! with the checkpoint topics read to their end).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

pub struct Health {
    pub metrics: Metrics,
    pub ready: AtomicBool,
    pub alive: AtomicBool,
}

impl Health {
    pub fn new() -> Self {
        Self {
            metrics: Metrics::new(),
            ready: AtomicBool::new(false),
            alive: AtomicBool::new(true),
        }
    }
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    health: Arc<Health>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(health);
    let mut shutdown = shutdown;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await?;
    Ok(())
}

async fn metrics(State(health): State<Arc<Health>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        health.metrics.encode(),
    )
}

async fn healthz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    if health.alive.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "sync loop stopped\n")
    }
}

async fn readyz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    if health.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no round has completed with the checkpoint topics read to their end\n",
        )
    }
}
