//! What the destination acknowledged: the destination producer (both modes) and its
//! delivery ledger, filled by delivery reports. What follows from an acknowledgement is
//! the delivery mode's (`mode`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, DeliveryResult, ProducerContext};
use tracing::warn;
use tributary_kafka::{KafkaError, classify};

use crate::http::Health;

use super::clients::forward_log;
use super::{REQUEST_TIMEOUT, RouteReplicator, now_ms};

impl RouteReplicator {
    /// The destination producer; exactly-once: transactional, with `transactional_id`
    /// (one of `RouteConfig::transactional_ids`).
    pub(super) fn create_producer(
        &self,
        ledger: Arc<DeliveryLedger>,
        transactional_id: Option<&str>,
    ) -> Result<RouteProducer, KafkaError> {
        let cfg = &self.config;
        let mut config = cfg.dest.client_config()?;
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", cfg.linger_ms.to_string())
            .set("batch.size", cfg.batch_bytes.to_string())
            .set(
                "message.max.bytes",
                cfg.batch_bytes.max(1_000_000).to_string(),
            )
            .set("compression.type", cfg.compression)
            .set("queue.buffering.max.messages", "500000")
            .set(
                "queue.buffering.max.kbytes",
                cfg.producer_buffer_kbytes.to_string(),
            )
            .set("statistics.interval.ms", "0");
        if config.get("socket.timeout.ms").is_none() {
            // librdkafka's transactional calls wait for their request whatever their own
            // timeout: with the default (60 s) a destination that stops answering held
            // `send_offsets_to_transaction`, and a SIGTERM, past the pod's grace period.
            config.set("socket.timeout.ms", REQUEST_TIMEOUT.as_millis().to_string());
        }
        if let Some(id) = transactional_id {
            config
                .set("transactional.id", id)
                .set("transaction.timeout.ms", "60000");
        }
        config
            .create_with_context(LedgerContext(ledger))
            .map_err(|e| classify(&cfg.dest.name, "creating the producer", None, e))
    }
}

/// What delivery reports told us about one partition.
#[derive(Clone, Copy, Debug)]
pub(super) struct Acked {
    pub(super) delivered: u64,
    pub(super) copied_bytes: u64,
    /// Last acknowledged source offset and where it landed (-1: none yet).
    pub(super) source: i64,
    pub(super) dest: i64,
    /// The acknowledged source offset before `source` in this session.
    pub(super) previous_source: Option<i64>,
    /// The first record acknowledged in this session (source, destination).
    pub(super) first: Option<(i64, i64)>,
}

impl Default for Acked {
    fn default() -> Self {
        Self {
            delivered: 0,
            copied_bytes: 0,
            source: -1,
            dest: -1,
            previous_source: None,
            first: None,
        }
    }
}

pub(super) struct LedgerState {
    pub(super) slots: Vec<Acked>,
    pub(super) failure: Option<KafkaError>,
}

/// Shared with the producer's delivery callback (which runs inside `poll`/`flush` on the
/// copy thread, so the lock is uncontended).
pub(super) struct DeliveryLedger {
    pub(super) cluster: String,
    pub(super) by_dest: HashMap<String, usize>,
    pub(super) state: Mutex<LedgerState>,
    pub(super) health: Arc<Health>,
    /// Delivery reports served so far (tells [`serve_deliveries`] when to stop).
    pub(super) reports: std::sync::atomic::AtomicU64,
}

impl DeliveryLedger {
    pub(super) fn lock(&self) -> MutexGuard<'_, LedgerState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub(super) struct LedgerContext(Arc<DeliveryLedger>);

/// Serves every pending delivery report (`poll(0)` serves at most one event, and reports
/// left unserved keep counting against the producer's queue limits). True if any was.
pub(super) fn serve_deliveries(producer: &RouteProducer, ledger: &DeliveryLedger) -> bool {
    let mut served = false;
    loop {
        let before = ledger.reports.load(Ordering::Relaxed);
        producer.poll(Duration::ZERO);
        if ledger.reports.load(Ordering::Relaxed) == before {
            return served;
        }
        served = true;
    }
}

/// `BaseProducer<LedgerContext>` under a shorter name.
pub(super) type RouteProducer = BaseProducer<LedgerContext>;

impl ClientContext for LedgerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        forward_log(&self.0.cluster, level, fac, message);
    }
    fn error(&self, error: RdError, reason: &str) {
        warn!(cluster = %self.0.cluster, "producer: {error}: {reason}");
    }
}

impl ProducerContext for LedgerContext {
    /// The source offset of the record.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, source_offset: usize) {
        let ledger = &self.0;
        ledger.reports.fetch_add(1, Ordering::Relaxed);
        let (message, error) = match result {
            Ok(m) => (m, None),
            Err((e, m)) => (m, Some(e)),
        };
        let Some(&base) = ledger.by_dest.get(message.topic()) else {
            return;
        };
        let index = base + message.partition().max(0) as usize;
        let mut state = ledger.lock();
        if let Some(e) = error {
            if state.failure.is_none() {
                state.failure = Some(classify(
                    &ledger.cluster,
                    &format!(
                        "writing {}/{} (source offset {source_offset})",
                        message.topic(),
                        message.partition()
                    ),
                    Some(message.topic()),
                    e.clone(),
                ));
            }
            return;
        }
        let Some(slot) = state.slots.get_mut(index) else {
            return;
        };
        slot.delivered += 1;
        slot.copied_bytes += (message.payload_len() + message.key().map_or(0, <[u8]>::len)) as u64;
        if slot.source >= 0 {
            slot.previous_source = Some(slot.source);
        }
        slot.source = source_offset as i64;
        slot.dest = message.offset();
        if slot.first.is_none() {
            slot.first = Some((slot.source, slot.dest));
        }
        drop(state);
        // A sample is enough for the histogram, and reading the clock per record is not free.
        if ledger.reports.load(Ordering::Relaxed).is_multiple_of(16)
            && let Some(ts) = message.timestamp().to_millis()
        {
            let latency = (now_ms() - ts).max(0) as f64 / 1000.0;
            ledger
                .health
                .metrics
                .replication_latency_seconds
                .observe(latency);
        }
    }
}
