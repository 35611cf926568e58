//! Tributary's domain, with no kube and no rdkafka: what replicators record about where
//! records land ([`checkpoint`]), the bounded index over those records ([`index`]), offset
//! translation between regions' aggregate clusters ([`translate`]), provenance headers and
//! consumer-side deduplication ([`dedupe`]), partition identities ([`topology`]), the
//! failover state machine of a consumer group ([`failover`]), what per-region operators agree
//! on through its Lease ([`handover`]), the epoch convention of offset commit metadata that
//! lets a standby sync refuse a zombie's commits ([`commit_epoch`]), and the one rule for
//! which Kafka client properties carry secrets ([`secret_property`]).
//!
//! Everything here is pure and synchronous; Kafka I/O lives in the crates that speak Kafka.

pub mod checkpoint;
pub mod commit_epoch;
pub mod dedupe;
pub mod failover;
pub mod handover;
pub mod index;
pub mod secret_property;
pub mod topology;
pub mod translate;

pub use checkpoint::{
    CheckpointEntry, CheckpointKey, CheckpointRecord, EncodedCheckpoint, OffsetCheckpoint,
    OffsetRange, RouteOrigin,
};
pub use dedupe::{Deduper, Provenance};
pub use index::{CheckpointIndex, CheckpointIndexes, Contradiction, InsertOutcome, ThinningPolicy};
pub use topology::{AggregateLayout, AggregatePartition, Route, SourcePartition, TopicNaming};
pub use translate::{
    BeyondLogEnd, ContradictedRoute, ContradictionPlan, LogOffsets, ObservedRecord, ObservedTail,
    PartitionOutcome, PartitionPlan, ResumePlan, SourcePlan, StandbyCommit, TranslationPlan,
    TranslationRequest, advance_only, translate, window_shortfall,
};
