//! The Tributary operator: reconciles `RegionalStream` (a region's topics on its regional
//! cluster), `AggregateCluster` (aggregate topics, the checkpoint topic, and one replicator
//! Deployment per route) and `ConsumerGroupFailover` (the active-region Lease, the
//! `<name>-active` ConfigMap, standby sync Jobs, the workloads' scale, failover) — see
//! `DESIGN.md` and `docs/failover.md`.
//!
//! Pure steps (validate, build) are in [`model`], [`replicator`] and [`kafka::plan_topic_changes`];
//! I/O is in the controllers, the [`prober`] (Kafka health as an external relation) and the
//! [`kafka::ClusterAdmin`] seam.

pub mod aggregate_cluster;
pub mod conditions;
pub mod consumer_group_failover;
pub mod context;
pub mod coordination;
pub mod error;
pub mod fence;
pub mod frame;
pub mod group_prober;
pub mod kafka;
pub mod kafka_admin;
pub mod metrics;
pub mod model;
pub mod names;
pub mod prober;
pub mod regional_stream;
pub mod renewer;
pub mod replicator;
pub mod run;
pub mod secrets;
pub mod standby_client;
mod status_util;
pub mod sync_job;

pub use run::{OperatorArgs, run, run_blocking};
