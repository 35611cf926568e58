//! `tributary replicate`: serves one route — copies a source region's regional cluster
//! topics into one region's aggregate cluster, partition `p` → `p`, in order, with
//! provenance headers, at-least-once or exactly-once, writing exact checkpoints.
//!
//! [`config`] owns the flags, [`copy`] the copy loop, [`metrics`] and [`http`] the
//! Prometheus/health endpoints. [`run`] wires them: the copy loop runs on its own thread
//! (librdkafka calls block), the HTTP server and signal handling on a small tokio runtime.

pub mod config;
pub mod copy;
pub mod http;
pub mod metrics;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tracing::info;

pub use config::{ReplicateArgs, RouteConfig};
pub use copy::RouteReplicator;

use crate::http::{CopyProgress, Health};
use crate::metrics::Metrics;

/// Runs `tributary replicate` until SIGTERM/SIGINT, then drains and returns.
pub fn run(args: ReplicateArgs) -> anyhow::Result<()> {
    tributary_runtime::init_logging(args.log_format);
    let config = RouteConfig::from_args(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(4)
        .enable_all()
        .thread_name("tributary-replicate")
        .build()
        .context("starting the async runtime")?;
    let health = Arc::new(Health {
        metrics: Metrics::new(),
        ready: AtomicBool::new(false),
        alive: AtomicBool::new(true),
        progress: CopyProgress::new(config.stall_timeout),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let (http_stop, http_stop_rx) = tokio::sync::watch::channel(false);

    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(args.listen))
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
    let mut http_stop_rx = http_stop_rx;
    let server = runtime.spawn(tributary_runtime::serve(
        listener,
        health.clone(),
        async move {
            let _ = http_stop_rx.wait_for(|stop| *stop).await;
        },
    ));
    let signal_stop = stop.clone();
    runtime.spawn(async move {
        tributary_runtime::termination().await;
        info!("termination requested: stop fetching, drain, commit, checkpoint");
        signal_stop.store(true, Ordering::Relaxed);
    });

    info!(
        route = %config.name,
        source = %config.source.name,
        dest = %config.dest.name,
        listen = %args.listen,
        "tributary replicate starting"
    );
    let replicator = RouteReplicator::new(config, health.clone(), stop, runtime.handle().clone());
    let copier = std::thread::Builder::new()
        .name("copy".into())
        .spawn(move || replicator.run())
        .context("starting the copy thread")?;
    let joined = copier.join();
    health.alive.store(false, Ordering::Relaxed);
    let _ = http_stop.send(true);
    let _ = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(2), server).await });
    runtime.shutdown_timeout(Duration::from_secs(1));
    if joined.is_err() {
        anyhow::bail!("the copy thread panicked");
    }
    info!("tributary replicate stopped");
    Ok(())
}
