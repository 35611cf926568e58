//! The one HTTP server of every long-running subcommand: `/metrics` (OpenMetrics text),
//! `/healthz` (the process works) and `/readyz` (it does its job now). Each subcommand says
//! what those mean by implementing [`Endpoints`].

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

/// What a subcommand answers on its three endpoints.
pub trait Endpoints: Send + Sync + 'static {
    /// The metrics in OpenMetrics text format (see [`encode_registry`]).
    fn metrics(&self) -> String;
    /// `Ok` while the process works; `Err(why)` makes `/healthz` answer 503 with `why`.
    fn healthz(&self) -> Result<(), String>;
    /// `Ok` while the process does its job; `Err(why)` makes `/readyz` answer 503 with `why`.
    fn readyz(&self) -> Result<(), String>;
}

/// Encodes a registry as OpenMetrics text.
pub fn encode_registry(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// Serves the endpoints on `listener` until `shutdown` resolves.
pub async fn serve<E: Endpoints>(
    listener: tokio::net::TcpListener,
    endpoints: Arc<E>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, endpoints, Router::new(), shutdown).await
}

/// [`serve`], plus a subcommand's own routes (which must not use the three paths).
pub async fn serve_with<E: Endpoints>(
    listener: tokio::net::TcpListener,
    endpoints: Arc<E>,
    extra: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics::<E>))
        .route("/healthz", get(healthz::<E>))
        .route("/readyz", get(readyz::<E>))
        .with_state(endpoints)
        .merge(extra);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics<E: Endpoints>(State(e): State<Arc<E>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        e.metrics(),
    )
}

fn answer(result: Result<(), String>, ok: &'static str) -> (StatusCode, String) {
    match result {
        Ok(()) => (StatusCode::OK, format!("{ok}\n")),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

async fn healthz<E: Endpoints>(State(e): State<Arc<E>>) -> impl IntoResponse {
    answer(e.healthz(), "ok")
}

async fn readyz<E: Endpoints>(State(e): State<Arc<E>>) -> impl IntoResponse {
    answer(e.readyz(), "ready")
}
