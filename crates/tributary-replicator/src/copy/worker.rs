//! A session's worker: its clients, its share of the partitions, where each starts.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use tracing::{info, warn};
use tributary_kafka::{KafkaAdmin, KafkaError, classify};

use super::checkpoints::CheckpointWriter;
use super::delivery::{Acked, DeliveryLedger, LedgerState};
use super::fault::TestFault;
use super::probe::FloorProbe;
use super::session::Session;
use super::slot::{Slot, TopicRoute};
use super::{RouteReplicator, SessionEnd};

/// Kafka cluster ids of the route's two clusters.
#[derive(Clone, Copy, Debug)]
pub(super) struct ClusterIds<'a> {
    pub(super) source: &'a str,
    pub(super) dest: &'a str,
}

/// Worker `index` of `of` copies the partitions whose slot number ≡ `index` (mod `of`);
/// slots are numbered over the sorted topics, partitions in order, so the share is
/// deterministic for a given topic set.
#[derive(Clone, Copy, Debug)]
pub(super) struct WorkerShare {
    pub(super) index: usize,
    pub(super) of: usize,
}

impl RouteReplicator {
    /// One worker of a session: copies the partitions of its share.
    pub(super) fn worker(
        &self,
        share: WorkerShare,
        topics: &BTreeMap<String, usize>,
        source_admin: &KafkaAdmin,
        dest_admin: &KafkaAdmin,
        cluster_ids: ClusterIds<'_>,
        session_stop: &AtomicBool,
    ) -> Result<SessionEnd, KafkaError> {
        let cfg = &self.config;
        let mut routes = Vec::new();
        let mut slots = Vec::new();
        for (topic, partitions) in topics {
            let dest = cfg.naming.aggregate_topic(&cfg.route.source_region, topic);
            routes.push(TopicRoute {
                source: topic.clone(),
                dest,
                base: slots.len(),
            });
            for p in 0..*partitions as i32 {
                let mut slot = Slot::new(routes.len() - 1, p);
                slot.owned = slots.len() % share.of == share.index;
                slots.push(slot);
            }
        }
        let by_source: HashMap<String, usize> = routes
            .iter()
            .enumerate()
            .map(|(i, r)| (r.source.clone(), i))
            .collect();
        let by_dest: HashMap<String, usize> =
            routes.iter().map(|r| (r.dest.clone(), r.base)).collect();
        let ledger = Arc::new(DeliveryLedger {
            cluster: cfg.dest.name.clone(),
            by_dest,
            state: Mutex::new(LedgerState {
                slots: vec![Acked::default(); slots.len()],
                failure: None,
            }),
            health: self.health.clone(),
            reports: std::sync::atomic::AtomicU64::new(0),
        });
        let checkpoints = CheckpointWriter::new(cfg, self.health.clone())?;
        let consumer = self.create_source_consumer()?;
        // Exactly-once: fences any other instance of this route (both its producers) and
        // ends its open transactions, so the position read below is final.
        let prepared = self.prepare_delivery(&ledger)?;

        // 3. Where to start.
        let assignment = self.start_positions(
            &routes,
            &mut slots,
            &consumer,
            prepared.dest_group(),
            &checkpoints,
            source_admin,
            dest_admin,
        )?;
        consumer
            .assign(&assignment)
            .map_err(|e| classify(&cfg.source.name, "assigning partitions", None, e))?;
        info!(
            route = %cfg.name,
            delivery = ?cfg.delivery,
            worker = share.index,
            topics = routes.len(),
            partitions = slots.iter().filter(|s| s.owned).count(),
            "copying {} → {}",
            cfg.source.name,
            cfg.dest.name
        );
        self.health.ready.store(true, Ordering::Relaxed);
        self.health.progress.beat();

        let delivery = prepared.start(&slots)?;
        let mut session = Session {
            replicator: self,
            routes,
            by_source,
            slots,
            consumer: Arc::new(consumer),
            delivery,
            ledger,
            checkpoints,
            source_cluster_id: cluster_ids.source.to_owned(),
            dest_cluster_id: cluster_ids.dest.to_owned(),
            floors: FloorProbe::start(&cfg.dest, None)?,
            source_ends: FloorProbe::start(
                &cfg.source,
                Some(&format!("{}.stall-check", cfg.group_id())),
            )?,
            source_ends_asked: None,
            worker: share.index,
            fault: TestFault::from_env(),
            stall_reported: false,
            consumer_stalled: false,
            session_stop,
        };
        session.fault.at_session_start(&session.consumer);
        let end = session.copy(source_admin, topics).map_err(|e| {
            let (delivery, cx) = session.delivery_parts();
            delivery.fenced(&cx).unwrap_or(e)
        });
        if session.consumer_stalled {
            // Closing a stalled consumer waits for its coordinator (its final automatic
            // commit), which can take minutes: it is closed on a thread of its own, once the
            // session has let go of it, so the next session starts at once.
            let consumer = session.consumer.clone();
            let spawned = std::thread::Builder::new()
                .name("close-stalled-consumer".into())
                .spawn(move || {
                    while Arc::strong_count(&consumer) > 1 {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    drop(consumer);
                });
            if let Err(e) = spawned {
                warn!(route = %cfg.name, "closing the stalled consumer on the copy thread: {e}");
            }
        }
        if end.is_err() {
            let stopping = self.stop.load(Ordering::Relaxed);
            let (delivery, cx) = session.delivery_parts();
            delivery.abandon(stopping, &cx);
        }
        end
    }
}
