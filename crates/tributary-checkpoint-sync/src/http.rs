//! What `/metrics`, `/healthz` (the sync loop is running) and `/readyz` (a round has
//! completed with the checkpoint topics read to their end) answer.

use std::sync::atomic::{AtomicBool, Ordering};

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
