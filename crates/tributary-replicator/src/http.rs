//! What `/metrics`, `/healthz` (the process is serving) and `/readyz` (both clusters reached and
//! partitions assigned in the current copy session).

use std::sync::atomic::{AtomicBool, Ordering};

use crate::metrics::Metrics;

pub struct Health {
    pub metrics: Metrics,
    pub ready: AtomicBool,
    pub alive: AtomicBool,
}

impl tributary_runtime::Endpoints for Health {
    fn metrics(&self) -> String {
        self.metrics.encode()
    }

    fn healthz(&self) -> Result<(), String> {
        if self.alive.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("copier stopped".into())
        }
    }

    fn readyz(&self) -> Result<(), String> {
        if self.ready.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("not ready: clusters not reached or partitions not assigned yet".into())
        }
    }
}
