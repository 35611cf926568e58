//! The delivery mode of a session, one type: [`DeliveryMode`] owns the destination
//! producer(s) and answers, with one match per event, what the copy loop's events mean —
//! a batch copied, the keepalive due, the drain, an error. The copy loop itself has no
//! mode branches. Each mode's own module says what becomes of a record in it:
//! `at_least_once` (positions committed to the source for acknowledged records) and
//! `exactly_once` (records and positions committed together in transactions on the
//! destination).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::BaseConsumer;
use tributary_kafka::KafkaError;

use crate::config::{Delivery, RouteConfig};

use super::at_least_once::AtLeastOnce;
use super::clients::LoggingContext;
use super::delivery::{Acked, DeliveryLedger, RouteProducer};
use super::exactly_once::TransactionPipeline;
use super::fault::TestFault;
use super::session::Session;
use super::slot::{Slot, TopicRoute};
use super::{REQUEST_TIMEOUT, RouteReplicator};

/// How the session's copies become durable, with the producer(s) that write them.
pub(super) enum DeliveryMode {
    AtLeastOnce(AtLeastOnce),
    ExactlyOnce(Box<TransactionPipeline>),
}

/// The clients of a delivery mode before the start positions are read: exactly-once's
/// `init_transactions` must have fenced older instances first, so that the position read
/// from the destination group is final.
pub(super) enum PreparedDelivery {
    AtLeastOnce(RouteProducer),
    /// The route's two transactional producers (`init_transactions` done) and the
    /// destination group the transactions commit positions to.
    ExactlyOnce {
        producers: [RouteProducer; 2],
        dest_group: BaseConsumer<LoggingContext>,
    },
}

/// What a delivery mode works on: the session's partitions and clients, borrowed apart
/// from the mode itself.
pub(super) struct DeliveryContext<'s> {
    pub(super) replicator: &'s RouteReplicator,
    pub(super) routes: &'s [TopicRoute],
    pub(super) slots: &'s mut [Slot],
    pub(super) ledger: &'s DeliveryLedger,
    pub(super) consumer: &'s BaseConsumer<LoggingContext>,
}

impl DeliveryContext<'_> {
    pub(super) fn cfg(&self) -> &RouteConfig {
        &self.replicator.config
    }
}

/// How the drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Drained {
    /// Every copy is durable and its position stored: the final checkpoints follow.
    Complete,
    /// The destination did not acknowledge everything in time: only what it did counts,
    /// and the final checkpoints (which could not land) are skipped.
    Acknowledged,
}

impl RouteReplicator {
    /// The destination clients of the configured mode (exactly-once: fencing any other
    /// instance of the route, see `exactly_once`).
    pub(super) fn prepare_delivery(
        &self,
        ledger: &Arc<DeliveryLedger>,
    ) -> Result<PreparedDelivery, KafkaError> {
        match self.config.delivery {
            Delivery::AtLeastOnce => Ok(PreparedDelivery::AtLeastOnce(
                self.create_producer(ledger.clone(), None)?,
            )),
            Delivery::ExactlyOnce => {
                let [first, second] = self.config.transactional_ids();
                let producers = [
                    self.transactional_producer(ledger, &first)?,
                    self.transactional_producer(ledger, &second)?,
                ];
                Ok(PreparedDelivery::ExactlyOnce {
                    producers,
                    dest_group: self.create_dest_group_consumer()?,
                })
            }
        }
    }
}

impl PreparedDelivery {
    /// Where the stored positions are read from: the destination group in exactly-once,
    /// `None` for the source consumer's own group.
    pub(super) fn dest_group(&self) -> Option<&BaseConsumer<LoggingContext>> {
        match self {
            Self::AtLeastOnce(_) => None,
            Self::ExactlyOnce { dest_group, .. } => Some(dest_group),
        }
    }

    /// Starts the mode once every slot has its stored position.
    pub(super) fn start(self, slots: &[Slot]) -> Result<DeliveryMode, KafkaError> {
        match self {
            Self::AtLeastOnce(producer) => {
                Ok(DeliveryMode::AtLeastOnce(AtLeastOnce::new(producer)))
            }
            Self::ExactlyOnce {
                producers,
                dest_group,
            } => {
                let committed = slots.iter().map(|s| s.committed).collect();
                let fail_commit = TestFault::from_env().fail_commit;
                Ok(DeliveryMode::ExactlyOnce(Box::new(
                    TransactionPipeline::start(producers, dest_group, committed, fail_commit)?,
                )))
            }
        }
    }
}

impl DeliveryMode {
    /// The producer the copy loop writes into (exactly-once: the current one of two).
    pub(super) fn producer(&self) -> &RouteProducer {
        match self {
            Self::AtLeastOnce(alo) => alo.producer(),
            Self::ExactlyOnce(eos) => eos.producer(),
        }
    }

    /// Before each batch of the copy loop.
    pub(super) fn before_batch(&mut self, cx: &mut DeliveryContext<'_>) -> Result<(), KafkaError> {
        match self {
            Self::AtLeastOnce(_) => Ok(()),
            Self::ExactlyOnce(eos) => eos.begin_if_idle(cx),
        }
    }

    /// After each batch of the copy loop (`copied` records handed to the producer): what
    /// the destination acknowledged becomes a stored position when due.
    pub(super) fn after_batch(
        &mut self,
        copied: u64,
        cx: &mut DeliveryContext<'_>,
    ) -> Result<(), KafkaError> {
        match self {
            Self::AtLeastOnce(alo) => alo.commit_if_due(cx),
            Self::ExactlyOnce(eos) => eos.upkeep(copied, cx),
        }
    }

    /// Positions that did not move are committed again, or Kafka expires them
    /// (`offsets.retention.minutes` after their last commit).
    pub(super) fn keep_positions_alive(&mut self, cx: &mut DeliveryContext<'_>) {
        match self {
            Self::AtLeastOnce(_) => AtLeastOnce::keep_positions_alive(cx),
            Self::ExactlyOnce(eos) => eos.refresh_positions(),
        }
    }

    /// The drain, within `timeout`: everything in flight lands and its position is stored.
    /// `consumer_stalled`: the source consumer does not reach its coordinator.
    pub(super) fn drain(
        &mut self,
        timeout: Duration,
        consumer_stalled: bool,
        cx: &mut DeliveryContext<'_>,
    ) -> Result<Drained, KafkaError> {
        match self {
            Self::AtLeastOnce(alo) => alo.drain(timeout, consumer_stalled, cx),
            Self::ExactlyOnce(eos) => eos.finish(timeout, cx).map(|()| Drained::Complete),
        }
    }

    /// The session ended with an error: let go of what is open, within the stop's
    /// patience (the next instance ends what is left).
    pub(super) fn abandon(&mut self, stopping: bool, cx: &DeliveryContext<'_>) {
        match self {
            Self::AtLeastOnce(_) => {}
            Self::ExactlyOnce(eos) => {
                // Stopping: keep within the drain; the next instance's `init_transactions`
                // (or `transaction.timeout.ms`) aborts what is left open.
                let timeout = if stopping {
                    Duration::from_secs(1)
                } else {
                    Duration::from_secs(5)
                };
                eos.abandon(timeout, cx);
            }
        }
    }

    /// A producer of the route fenced by another instance: the session's error then,
    /// whatever call saw it first.
    pub(super) fn fenced(&self, cx: &DeliveryContext<'_>) -> Option<KafkaError> {
        match self {
            Self::AtLeastOnce(_) => None,
            Self::ExactlyOnce(eos) => eos.fenced(cx),
        }
    }

    /// Brings each slot's durable copy (what checkpoints may name) up to date: in
    /// at-least-once every acknowledged record; in exactly-once it moves only when a
    /// transaction commits.
    pub(super) fn note_durable(&self, cx: &mut DeliveryContext<'_>) {
        match self {
            Self::AtLeastOnce(_) => AtLeastOnce::note_durable(cx),
            Self::ExactlyOnce(_) => {}
        }
    }

    /// Everything handed to the producer for `slot` is durable (`acked`: the ledger's).
    pub(super) fn settled(&self, slot: &Slot) -> bool {
        let acknowledged = slot.durable.delivered == slot.produced;
        match self {
            Self::AtLeastOnce(_) => acknowledged,
            Self::ExactlyOnce(_) => acknowledged && slot.committed >= slot.next_offset,
        }
    }

    /// What the copy metrics count for `slot`: acknowledged (at-least-once) or committed
    /// (exactly-once) records.
    pub(super) fn counted(&self, slot: &Slot, acked: Acked) -> Acked {
        match self {
            Self::AtLeastOnce(_) => acked,
            Self::ExactlyOnce(_) => slot.durable,
        }
    }
}

impl RouteReplicator {
    fn transactional_producer(
        &self,
        ledger: &Arc<DeliveryLedger>,
        id: &str,
    ) -> Result<RouteProducer, KafkaError> {
        use rdkafka::producer::Producer;
        let producer = self.create_producer(ledger.clone(), Some(id))?;
        producer.init_transactions(REQUEST_TIMEOUT).map_err(|e| {
            tributary_kafka::classify(
                &self.config.dest.name,
                &format!("initialising transactions (transactional id {id})"),
                None,
                e,
            )
        })?;
        Ok(producer)
    }
}

impl<'a> Session<'a> {
    /// The delivery mode and what it works on, borrowed apart.
    pub(super) fn delivery_parts(&mut self) -> (&mut DeliveryMode, DeliveryContext<'_>) {
        (
            &mut self.delivery,
            DeliveryContext {
                replicator: self.replicator,
                routes: &self.routes,
                slots: &mut self.slots,
                ledger: &self.ledger,
                consumer: &self.consumer,
            },
        )
    }
}
