//! What `/metrics`, `/healthz` (the process serves and its copy loop is not wedged) and
//! `/readyz` (both clusters reached and partitions assigned in the current copy session).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::metrics::Metrics;

pub struct Health {
    pub metrics: Metrics,
    pub ready: AtomicBool,
    pub alive: AtomicBool,
    pub progress: CopyProgress,
}

/// Whether the copy thread gets anywhere: a heartbeat it beats on every loop iteration and
/// in every wait (backoff, a full producer queue), and the stalls a copy worker found
/// (records waiting in an answering source, none copied for the stall timeout). Both fail
/// `/healthz`, so a wedged replicator is restarted; a cluster that does not answer never
/// stops the heartbeat and is never a stall (restarting would not help).
pub struct CopyProgress {
    stall_timeout: Duration,
    /// ms since the epoch of the last beat.
    beat_ms: AtomicI64,
    /// Per copy worker: why it is stalled.
    stalled: Mutex<BTreeMap<usize, String>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl CopyProgress {
    pub fn new(stall_timeout: Duration) -> Self {
        Self {
            stall_timeout,
            beat_ms: AtomicI64::new(now_ms()),
            stalled: Mutex::default(),
        }
    }

    pub fn stall_timeout(&self) -> Duration {
        self.stall_timeout
    }

    /// The copy thread is getting somewhere (or waiting legitimately).
    pub fn beat(&self) {
        self.beat_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Worker `worker` is stalled (`Some(why)`) or not (`None`).
    pub fn set_stalled(&self, worker: usize, why: Option<String>) {
        let mut stalled = self
            .stalled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match why {
            Some(why) => stalled.insert(worker, why),
            None => stalled.remove(&worker),
        };
    }

    fn check(&self) -> Result<(), String> {
        let silent = Duration::from_millis(
            now_ms()
                .saturating_sub(self.beat_ms.load(Ordering::Relaxed))
                .max(0) as u64,
        );
        if silent > self.stall_timeout {
            return Err(format!(
                "copy loop wedged: it has not run for {}s (--stall-timeout {:?})",
                silent.as_secs(),
                self.stall_timeout
            ));
        }
        let stalled = self
            .stalled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match stalled.values().next() {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }
}

impl tributary_runtime::Endpoints for Health {
    fn metrics(&self) -> String {
        self.metrics.encode()
    }

    fn healthz(&self) -> Result<(), String> {
        if !self.alive.load(Ordering::Relaxed) {
            return Err("copier stopped".into());
        }
        self.progress.check()
    }

    fn readyz(&self) -> Result<(), String> {
        if self.ready.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("not ready: clusters not reached or partitions not assigned yet".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stalled_worker_fails_health_until_it_recovers() {
        let progress = CopyProgress::new(Duration::from_secs(60));
        assert!(progress.check().is_ok());
        progress.set_stalled(1, Some("stalled".into()));
        assert_eq!(progress.check(), Err("stalled".into()));
        progress.set_stalled(1, None);
        assert!(progress.check().is_ok());
    }

    #[test]
    fn a_silent_copy_loop_fails_health() {
        let progress = CopyProgress::new(Duration::from_secs(20));
        progress.beat_ms.store(now_ms() - 21_000, Ordering::Relaxed);
        assert!(progress.check().is_err_and(|e| e.contains("wedged")));
        progress.beat();
        assert!(progress.check().is_ok());
    }
}
