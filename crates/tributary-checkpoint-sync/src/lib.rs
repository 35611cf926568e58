//! `tributary checkpoint-sync`: keeps one consumer group's position warm in a standby
//! region's aggregate cluster (B), translated from the active region's (A), and does the
//! final, authoritative translation at a failover.
//!
//! [`config`] owns the flags, [`sync`] a round's Kafka I/O around `tributary_core::translate`,
//! [`metrics`] and [`http`] the Prometheus/health endpoints. [`run`] wires them: rounds run
//! on the calling thread (librdkafka calls block), the HTTP server and signal handling on a
//! small tokio runtime.
//!
//! A standby also answers the operator's `POST /final` (the final round of a planned move, run
//! by this warm process instead of a new one) and `GET /plan` (see [`http`]).
//!
//! Exit status: 0 when stopped by a signal or when the epoch file shows a later epoch
//! (superseded); non-zero for bad flags and, with `--once`, for any failed round (the plan is
//! printed only after its commit was read back from B).

pub mod config;
pub mod http;
pub mod metrics;
pub mod sync;

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tracing::{info, warn};

pub use config::{CheckpointSyncArgs, Mode, SyncConfig};
pub use sync::{CheckpointSync, RoundOutcome, RoundReport, SyncError};

use crate::http::{FinalReply, FinalRequest, Health};

/// Runs `tributary checkpoint-sync`.
pub fn run(args: CheckpointSyncArgs) -> anyhow::Result<()> {
    tributary_runtime::init_logging(args.log_format);
    let cfg = SyncConfig::from_args(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(4)
        .enable_all()
        .thread_name("tributary-checkpoint-sync")
        .build()
        .context("starting the async runtime")?;
    let health = Arc::new(Health::new());
    if let Some(epoch) = cfg.epoch {
        health.metrics.epoch.set(epoch.min(i64::MAX as u64) as i64);
    }
    if let Ok(mut zombies) = health.zombies.lock() {
        zombies.epoch = cfg.epoch;
    }
    let mode = cfg.mode;
    let plan_file = cfg.plan_file.clone();
    info!(
        group = %cfg.group,
        from = %cfg.from.name,
        to = %cfg.to.name,
        mode = ?mode,
        epoch = ?cfg.epoch,
        "tributary checkpoint-sync starting"
    );
    let mut sync = CheckpointSync::new(cfg, health.clone(), runtime.handle().clone())?;

    if mode != Mode::Standby {
        let report = sync.round().map_err(|e| {
            anyhow::anyhow!(
                "checkpoint-sync {}: {e} (category {})",
                if mode == Mode::Final {
                    "--once --final failed, nothing to resume from"
                } else {
                    "--once failed"
                },
                e.category()
            )
        })?;
        if let RoundOutcome::SkippedGroupActive { members } = report.outcome {
            // Nothing was committed: no plan is printed or written that could be taken for
            // the group's position.
            anyhow::bail!(
                "checkpoint-sync --once: not committed, the group has {members} active member(s) in {} (stop its consumers there first); no plan written",
                sync.config().to.name
            );
        }
        let json = serde_json::to_string_pretty(&report.plan).context("encoding the plan")?;
        if let Some(path) = &plan_file {
            write_atomically(path, json.as_bytes())
                .with_context(|| format!("writing the plan to {} (--plan-file)", path.display()))?;
        }
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{json}").context("printing the plan")?;
        info!(
            checkpoint_records_read = health.metrics.checkpoint_records_read.get(),
            checkpoint_window_widenings = health.metrics.checkpoint_window_widenings.get(),
            resume = %sync::describe_resume(&report.plan),
            "plan committed"
        );
        return Ok(());
    }

    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(args.listen))
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
    let (http_stop, http_stop_rx) = tokio::sync::watch::channel(false);
    let mut http_stop_rx = http_stop_rx;
    let (final_requests, final_rx) = std::sync::mpsc::sync_channel::<FinalRequest>(1);
    let server = runtime.spawn(tributary_runtime::serve_with(
        listener,
        health.clone(),
        http::control_routes(health.clone(), final_requests),
        async move {
            let _ = http_stop_rx.wait_for(|stop| *stop).await;
        },
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let signal_stop = stop.clone();
    runtime.spawn(async move {
        tributary_runtime::termination().await;
        info!("termination requested: stopping after the current round");
        signal_stop.store(true, Ordering::Relaxed);
    });

    let interval = sync.config().interval;
    let mut result = Ok(());
    while !stop.load(Ordering::Relaxed) {
        // A waiting final round goes first: rounds that outlast the interval must not starve it.
        if let Ok(request) = final_rx.try_recv() {
            answer_final(&mut sync, &health, request);
        }
        let started = Instant::now();
        match sync.round() {
            Ok(report) => {
                if report.checkpoints_caught_up {
                    health.ready.store(true, Ordering::Relaxed);
                }
            }
            Err(SyncError::Superseded { ours, current, .. }) => {
                info!(
                    ours,
                    current, "epoch superseded: this standby sync is done, exiting"
                );
                break;
            }
            Err(e) => {
                health.metrics.error(e.category());
                warn!(category = e.category(), "round failed: {e}");
                if let SyncError::Kafka(k) = &e
                    && k.category() == "Config"
                {
                    result = Err(anyhow::anyhow!("{e}"));
                    break;
                }
            }
        }
        health
            .metrics
            .sync_age_seconds
            .set(sync.sync_age().as_secs_f64());
        while !stop.load(Ordering::Relaxed) && started.elapsed() < interval {
            if let Ok(request) = final_rx.try_recv() {
                answer_final(&mut sync, &health, request);
                continue;
            }
            std::thread::sleep(Duration::from_millis(20).min(interval));
        }
    }
    health.alive.store(false, Ordering::Relaxed);
    let _ = http_stop.send(true);
    let _ = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(2), server).await });
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// Runs the final round a planned move asked for, if it is meant for this sync's epoch.
fn answer_final(sync: &mut CheckpointSync, health: &Health, request: FinalRequest) {
    let ours = sync.config().epoch;
    let reply = if ours != Some(request.epoch) {
        FinalReply::Refused(format!(
            "this sync acts for epoch {}, the request is for epoch {}",
            ours.map_or("(none)".to_string(), |e| e.to_string()),
            request.epoch
        ))
    } else {
        let started = Instant::now();
        match sync.final_round() {
            Ok(report) => {
                info!(
                    epoch = request.epoch,
                    took_ms = started.elapsed().as_millis() as u64,
                    exact = report.plan.exact,
                    resume = %sync::describe_resume(&report.plan),
                    "final round committed"
                );
                FinalReply::Committed(std::sync::Arc::new(report.plan))
            }
            Err(e) => {
                health.metrics.error(e.category());
                warn!(category = e.category(), "final round failed: {e}");
                match e {
                    SyncError::GroupActive { .. } | SyncError::Superseded { .. } => {
                        FinalReply::Refused(e.to_string())
                    }
                    _ => FinalReply::Failed(e.to_string()),
                }
            }
        }
    };
    let _ = request.reply.send(reply);
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader never sees a
/// partial plan.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
