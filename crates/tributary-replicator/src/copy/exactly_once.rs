//! Exactly-once delivery (`DeliveryMode::ExactlyOnce`): records and the source position commit together in transactions
//! on the destination, pipelined over the route's two transactional producers so that the
//! copy loop goes on copying while the previous transaction commits.
//!
//! What becomes of a batch in exactly-once, in order (all of it is here):
//! 1. The copy loop produces it into the open transaction of the *current* producer.
//! 2. After `TRANSACTION_INTERVAL`, once the other producer's commit has ended, the loop
//!    waits until the destination acknowledged every record produced so far — the next
//!    transaction's records of a partition must land after these, and two producers do not
//!    keep each other's order — then notes each partition's position and what was
//!    acknowledged, hands the transaction to the commit thread (position into it, commit)
//!    and copies on into the other producer, whose previous transaction has committed.
//! 3. The commit thread's success makes the positions committed and the records durable
//!    (metrics, checkpoints). Its failure ends the session: the open transaction is aborted
//!    and the next session starts from the positions of the last committed transaction
//!    (read back after `init_transactions` of both ids has ended what is left open).
//!
//! At most one transaction commits at a time and a transaction is handed over only after
//! the one before it committed, so positions are committed in order and none is committed
//! without every record below it. Both transactional ids belong to the route (see
//! `RouteConfig::transactional_ids`): a new instance's `init_transactions` fences both of
//! an older one's producers, whatever partitions they wrote.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, ConsumerGroupMetadata};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use tracing::warn;
use tributary_kafka::{KafkaError, classify};

use rdkafka::consumer::BaseConsumer;

use super::clients::LoggingContext;
use super::delivery::{Acked, RouteProducer, serve_deliveries};
use super::fault::TestFault;
use super::mode::DeliveryContext;
use super::{REQUEST_TIMEOUT, TRANSACTION_INTERVAL};

/// The route's two transactional producers, the open transaction and the committing one.
pub(super) struct TransactionPipeline {
    /// Initialised producers, transactional ids `RouteConfig::transactional_ids`.
    producers: [Arc<RouteProducer>; 2],
    /// The producer the copy loop writes into.
    current: usize,
    /// The current producer has begun a transaction.
    open: bool,
    started: Instant,
    /// Records produced into the open transaction.
    records: u64,
    /// The transaction on the commit thread (the other producer's), if any.
    committing: Option<Handover>,
    /// Per slot: the position of the last transaction handed over (-1: none).
    handed_over: Vec<i64>,
    /// The next transaction commits every position, moved or not (keepalive).
    refresh_positions: bool,
    /// The destination group the transactions commit positions to.
    dest_group: BaseConsumer<LoggingContext>,
    jobs: Option<Sender<CommitJob>>,
    outcomes: Receiver<Result<(), KafkaError>>,
}

/// What a transaction handed to the commit thread carried: applied when it committed.
struct Handover {
    /// (slot, position) of every position in it.
    positions: Vec<(usize, i64)>,
    /// The ledger when it was handed over: every record in it, acknowledged.
    acked: Vec<Acked>,
}

struct CommitJob {
    producer: Arc<RouteProducer>,
    positions: TopicPartitionList,
    group: ConsumerGroupMetadata,
    cluster: String,
}

impl TransactionPipeline {
    /// `producers` have had `init_transactions`; `committed` is each slot's stored position.
    /// `fail_commit`: the test fault `fail-commit:N` ([`TestFault`]).
    pub(super) fn start(
        producers: [RouteProducer; 2],
        dest_group: BaseConsumer<LoggingContext>,
        committed: Vec<i64>,
        fail_commit: Option<u64>,
    ) -> Result<Self, KafkaError> {
        let (jobs, job_queue) = mpsc::channel::<CommitJob>();
        let (outcome_sender, outcomes) = mpsc::channel();
        // Ends when the pipeline drops its sender; a commit under way then still ends
        // (within its timeout) on its own, and what it commits is consistent either way.
        std::thread::Builder::new()
            .name("transaction-commit".into())
            .spawn(move || {
                let mut commits = 0;
                while let Ok(job) = job_queue.recv() {
                    commits += 1;
                    if TestFault::fails_commit(fail_commit, commits) {
                        warn!("test fault: transaction commit {commits} fails (aborted)");
                        std::thread::sleep(Duration::from_millis(300));
                        let _ = job.producer.abort_transaction(REQUEST_TIMEOUT);
                        let failed = Err(KafkaError::Kafka {
                            cluster: job.cluster.clone(),
                            operation: "committing a transaction".into(),
                            detail: "test fault fail-commit".into(),
                        });
                        if outcome_sender.send(failed).is_err() {
                            break;
                        }
                        continue;
                    }
                    let result = commit(
                        &job.producer,
                        &job.positions,
                        &job.group,
                        &job.cluster,
                        REQUEST_TIMEOUT,
                    );
                    drop(job);
                    if outcome_sender.send(result).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| KafkaError::Config {
                cluster: "this process".into(),
                detail: format!("could not start the transaction commit thread: {e}"),
            })?;
        let [a, b] = producers;
        Ok(Self {
            producers: [Arc::new(a), Arc::new(b)],
            current: 0,
            open: false,
            started: Instant::now(),
            records: 0,
            committing: None,
            handed_over: committed,
            refresh_positions: false,
            dest_group,
            jobs: Some(jobs),
            outcomes,
        })
    }

    /// The producer the copy loop writes into.
    pub(super) fn producer(&self) -> &RouteProducer {
        &self.producers[self.current]
    }

    /// The keepalive is due: the next transaction commits every position.
    pub(super) fn refresh_positions(&mut self) {
        self.refresh_positions = true;
    }
}

/// The transaction's position, then its commit (which finds every record acknowledged:
/// the hand-over waited for that), within `timeout`.
fn commit(
    producer: &RouteProducer,
    positions: &TopicPartitionList,
    group: &ConsumerGroupMetadata,
    cluster: &str,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let deadline = Instant::now() + timeout;
    if positions.count() > 0 {
        producer
            .send_offsets_to_transaction(positions, group, timeout)
            .map_err(|e| classify(cluster, "adding the position to the transaction", None, e))?;
    }
    producer
        .commit_transaction(deadline.saturating_duration_since(Instant::now()))
        .map_err(|e| classify(cluster, "committing a transaction", None, e))
}

impl TransactionPipeline {
    /// At the top of every loop iteration: the current producer has an open transaction.
    pub(super) fn begin_if_idle(&mut self, cx: &mut DeliveryContext<'_>) -> Result<(), KafkaError> {
        if !self.open {
            self.producers[self.current]
                .begin_transaction()
                .map_err(|e| classify(&cx.cfg().dest.name, "beginning a transaction", None, e))?;
            self.open = true;
            self.records = 0;
            self.started = Instant::now();
        }
        Ok(())
    }

    /// After each batch of the copy loop: takes the commit thread's outcome, and hands the
    /// open transaction over once it is due and the previous one has committed.
    pub(super) fn upkeep(
        &mut self,
        copied: u64,
        cx: &mut DeliveryContext<'_>,
    ) -> Result<(), KafkaError> {
        self.records += copied;
        self.take_commit_outcome(None, cx)?;
        if !self.open || self.committing.is_some() || self.started.elapsed() < TRANSACTION_INTERVAL
        {
            return Ok(());
        }
        if self.records == 0 && !self.refresh_positions && !self.position_moved(cx) {
            // Nothing to commit: the (empty) transaction stays open for the next interval.
            self.started = Instant::now();
            return Ok(());
        }
        self.hand_over(Instant::now() + REQUEST_TIMEOUT, cx)
    }

    /// A position not yet handed over in a transaction.
    fn position_moved(&self, cx: &DeliveryContext<'_>) -> bool {
        cx.slots
            .iter()
            .zip(&self.handed_over)
            .any(|(s, &handed)| s.owned && s.next_offset > handed)
    }

    /// Applies the commit thread's outcome: waits for it up to `wait` (`None`: only if it
    /// is there). A failed commit is the session's error.
    fn take_commit_outcome(
        &mut self,
        wait: Option<Duration>,
        cx: &mut DeliveryContext<'_>,
    ) -> Result<bool, KafkaError> {
        if self.committing.is_none() {
            return Ok(true);
        }
        let outcome = match wait {
            None => match self.outcomes.try_recv() {
                Ok(outcome) => outcome,
                Err(TryRecvError::Empty) => return Ok(false),
                Err(TryRecvError::Disconnected) => Err(commit_thread_gone(&cx.cfg().dest.name)),
            },
            Some(wait) => match self.outcomes.recv_timeout(wait) {
                Ok(outcome) => outcome,
                Err(RecvTimeoutError::Timeout) => return Ok(false),
                Err(RecvTimeoutError::Disconnected) => Err(commit_thread_gone(&cx.cfg().dest.name)),
            },
        };
        let handover = self.committing.take().expect("checked above");
        outcome?;
        for (index, position) in handover.positions {
            let slot = &mut cx.slots[index];
            slot.committed = slot.committed.max(position);
        }
        for (slot, acked) in cx.slots.iter_mut().zip(handover.acked) {
            slot.durable = acked;
        }
        cx.replicator.health.metrics.transactions.inc();
        Ok(true)
    }

    /// Waits until the destination acknowledged every record produced so far (within
    /// `deadline`): what the hand-over needs before the other producer writes.
    fn await_acknowledgements(
        &self,
        deadline: Instant,
        cx: &DeliveryContext<'_>,
    ) -> Result<(), KafkaError> {
        let producer = self.producer();
        loop {
            serve_deliveries(producer, cx.ledger);
            {
                let mut state = cx.ledger.lock();
                if let Some(failure) = state.failure.take() {
                    return Err(failure);
                }
                if state
                    .slots
                    .iter()
                    .zip(cx.slots.iter())
                    .all(|(a, s)| a.delivered >= s.produced)
                {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(KafkaError::Unreachable {
                    cluster: cx.cfg().dest.name.clone(),
                    detail: "it did not acknowledge the transaction's records in time".into(),
                });
            }
            // Waiting for the destination is not a wedge.
            cx.replicator.health.progress.beat();
            // `BaseProducer::poll` blocks for its whole timeout: keep it short.
            producer.poll(Duration::from_millis(1));
        }
    }

    /// The positions the next transaction carries: every owned partition that moved
    /// since the last hand-over (all of them when the keepalive is due).
    fn transaction_positions(
        &self,
        cx: &DeliveryContext<'_>,
    ) -> Result<(TopicPartitionList, Vec<(usize, i64)>), KafkaError> {
        let mut list = TopicPartitionList::new();
        let mut positions = Vec::new();
        for (index, slot) in cx.slots.iter().enumerate() {
            if !slot.owned {
                continue;
            }
            let moved = slot.next_offset > self.handed_over[index];
            if moved || (self.refresh_positions && slot.next_offset >= 0) {
                let route = &cx.routes[slot.route];
                list.add_partition_offset(
                    &route.dest,
                    slot.partition,
                    Offset::Offset(slot.next_offset),
                )
                .map_err(|e| classify(&cx.cfg().dest.name, "committing", None, e))?;
                positions.push((index, slot.next_offset));
            }
        }
        Ok((list, positions))
    }

    fn group_metadata(
        &self,
        cx: &DeliveryContext<'_>,
    ) -> Result<ConsumerGroupMetadata, KafkaError> {
        self.dest_group
            .group_metadata()
            .ok_or_else(|| KafkaError::Config {
                cluster: cx.cfg().dest.name.clone(),
                detail: "no consumer group metadata for the transaction".into(),
            })
    }

    /// Hands the open transaction to the commit thread (its records acknowledged first,
    /// within `deadline`) and switches the copy loop to the other producer.
    fn hand_over(
        &mut self,
        deadline: Instant,
        cx: &mut DeliveryContext<'_>,
    ) -> Result<(), KafkaError> {
        self.await_acknowledgements(deadline, cx)?;
        let (list, positions) = self.transaction_positions(cx)?;
        let group = self.group_metadata(cx)?;
        let acked = cx.ledger.lock().slots.clone();
        let cluster = cx.cfg().dest.name.clone();
        self.refresh_positions = false;
        for &(index, position) in &positions {
            self.handed_over[index] = position;
        }
        let job = CommitJob {
            producer: self.producers[self.current].clone(),
            positions: list,
            group,
            cluster: cluster.clone(),
        };
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(job).is_ok());
        if !sent {
            return Err(commit_thread_gone(&cluster));
        }
        self.committing = Some(Handover { positions, acked });
        self.open = false;
        self.current = 1 - self.current;
        Ok(())
    }

    /// The drain: the commit under way ends, then the open transaction commits — all
    /// within `timeout`. An error leaves the open transaction to [`Self::abandon`].
    pub(super) fn finish(
        &mut self,
        timeout: Duration,
        cx: &mut DeliveryContext<'_>,
    ) -> Result<(), KafkaError> {
        let deadline = Instant::now() + timeout;
        while !self.take_commit_outcome(Some(Duration::from_millis(100)), cx)? {
            cx.replicator.health.progress.beat();
            if Instant::now() >= deadline {
                return Err(KafkaError::Unreachable {
                    cluster: cx.cfg().dest.name.clone(),
                    detail: format!("a transaction commit did not end within {timeout:?}"),
                });
            }
        }
        if !self.open {
            return Ok(());
        }
        self.await_acknowledgements(deadline, cx)?;
        let (list, positions) = self.transaction_positions(cx)?;
        let group = self.group_metadata(cx)?;
        let cluster = cx.cfg().dest.name.clone();
        let acked = cx.ledger.lock().slots.clone();
        let left = deadline.saturating_duration_since(Instant::now());
        commit(self.producer(), &list, &group, &cluster, left)?;
        self.open = false;
        for &(index, position) in &positions {
            self.handed_over[index] = position;
        }
        self.committing = None;
        self.refresh_positions = false;
        for (index, position) in positions {
            let slot = &mut cx.slots[index];
            slot.committed = slot.committed.max(position);
        }
        for (slot, acked) in cx.slots.iter_mut().zip(acked) {
            slot.durable = acked;
        }
        cx.replicator.health.metrics.transactions.inc();
        Ok(())
    }

    /// The session ends with an error: the open transaction is aborted (within `timeout`)
    /// or left to the next `init_transactions`. A commit still under way on the commit
    /// thread is left to end: it holds only records below its own positions.
    pub(super) fn abandon(&mut self, timeout: Duration, cx: &DeliveryContext<'_>) {
        if self.open
            && let Err(e) = self.producers[self.current].abort_transaction(timeout)
        {
            warn!(route = %cx.cfg().name, "could not abort the open transaction ({e}); the next instance's init_transactions aborts it");
        }
        self.open = false;
        self.jobs = None;
    }

    /// A producer of the route fenced by another instance (librdkafka's fatal error):
    /// what the session's error is then, whatever call saw it first (a produce or a
    /// delivery report only says that the producer failed fatally).
    pub(super) fn fenced(&self, cx: &DeliveryContext<'_>) -> Option<KafkaError> {
        self.producers.iter().find_map(|producer| {
            let (code, reason) = producer.client().fatal_error()?;
            matches!(
                code,
                RDKafkaErrorCode::Fenced
                    | RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
            )
            .then(|| KafkaError::Fenced {
                cluster: cx.cfg().dest.name.clone(),
                detail: format!("{code:?}: {reason}"),
            })
        })
    }
}

fn commit_thread_gone(cluster: &str) -> KafkaError {
    KafkaError::Config {
        cluster: cluster.to_owned(),
        detail: "the transaction commit thread ended".into(),
    }
}
