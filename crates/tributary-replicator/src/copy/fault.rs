//! Test faults (debug builds only).

use std::sync::atomic::{AtomicBool, Ordering};

/// `pause-fetch` tripped in this process: later sessions pause from their start.
static FETCH_PAUSED: AtomicBool = AtomicBool::new(false);
/// `fail-commit` tripped in this process (it fails one commit, not one per session).
static COMMIT_FAILED: AtomicBool = AtomicBool::new(false);
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use tracing::warn;

use super::clients::LoggingContext;

/// Faults the tests inject (debug builds only, `TRIBUTARY_TEST_FAULT`) to reproduce what
/// real clusters do rarely: `pause-fetch:N` stops fetching after N records, and every later
/// session's consumer from its start, as a process whose consumers never regain their fetch
/// (issue 13, the stall after a region came back); `wedge:N` blocks the copy thread after N
/// records until SIGTERM; `fail-commit:N` makes the Nth exactly-once transaction commit of
/// the process fail (aborted on the commit thread after 300 ms, while the copy loop fills
/// the next transaction).
#[derive(Default)]
pub(super) struct TestFault {
    pub(super) pause_fetch_after: Option<u64>,
    pub(super) wedge_after: Option<u64>,
    pub(super) fail_commit: Option<u64>,
    pub(super) records: u64,
}

impl TestFault {
    pub(super) fn from_env() -> Self {
        if !cfg!(debug_assertions) {
            return Self::default();
        }
        let spec = std::env::var("TRIBUTARY_TEST_FAULT").unwrap_or_default();
        let after = |name: &str| {
            spec.strip_prefix(name)
                .and_then(|n| n.strip_prefix(':'))
                .and_then(|n| n.parse().ok())
        };
        Self {
            pause_fetch_after: after("pause-fetch"),
            wedge_after: after("wedge"),
            fail_commit: after("fail-commit"),
            records: 0,
        }
    }

    /// Whether commit number `commit` (1-based, this session's) is the one to fail.
    pub(super) fn fails_commit(fail_commit: Option<u64>, commit: u64) -> bool {
        fail_commit.is_some_and(|n| commit >= n) && !COMMIT_FAILED.swap(true, Ordering::Relaxed)
    }

    /// At a session's start, once its consumer is assigned.
    pub(super) fn at_session_start(&self, consumer: &BaseConsumer<LoggingContext>) {
        if self.pause_fetch_after.is_some() && FETCH_PAUSED.load(Ordering::Relaxed) {
            warn!("test fault: fetching paused from the session's start");
            if let Ok(assignment) = consumer.assignment() {
                let _ = consumer.pause(&assignment);
            }
        }
    }

    pub(super) fn after_record(
        &mut self,
        consumer: &BaseConsumer<LoggingContext>,
        stop: &AtomicBool,
    ) {
        if self.pause_fetch_after.is_none() && self.wedge_after.is_none() {
            return;
        }
        self.records += 1;
        if self.pause_fetch_after == Some(self.records) {
            warn!("test fault: fetching paused after {} records", self.records);
            FETCH_PAUSED.store(true, Ordering::Relaxed);
            if let Ok(assignment) = consumer.assignment() {
                let _ = consumer.pause(&assignment);
            }
        }
        if self.wedge_after == Some(self.records) {
            warn!(
                "test fault: copy thread wedged after {} records",
                self.records
            );
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}
