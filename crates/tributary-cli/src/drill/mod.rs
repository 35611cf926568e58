//! `kubectl tributary drill`: randomized disaster-recovery drills against a live
//! ConsumerGroupFailover, judged from Kafka's own tools' event streams.
//!
//! [`clusters`] is where the group is read and edited (one cluster, or one per region,
//! merged); [`consumer_events`] is where the consumers' event lines are read (the local
//! stack's log files, or `pods/log` through the API); [`faults`] picks and names the faults (seeded); [`events`] parses VerifiableProducer's and
//! VerifiableConsumer's JSON events; [`verdict`] turns them and the observed moves into lost,
//! skipped, duplicates, split brain, non-monotonic consumption ([`monotonic`]), the primary role of
//! ActiveActive groups ([`primary`]), epoch steps
//! and the RTO split (pure); [`timeline`] draws
//! one drill (pure SVG); [`report`] prints the table and writes the JSON; [`run`] is the I/O.

pub mod clusters;
pub mod consumer_events;
pub mod events;
pub mod faults;
pub mod monotonic;
pub mod primary;
pub mod report;
pub mod run;
pub mod timeline;
pub mod verdict;

pub use faults::Fault;
pub use run::{DrillOptions, drill};
