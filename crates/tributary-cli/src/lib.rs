//! `kubectl tributary`: the kubectl plugin of Tributary.
//!
//! Layout: [`cluster`] is the only I/O (client from kubeconfig, listing the kinds);
//! [`snapshot`] is what was read; [`topology`] interprets it (pure, and the `-o json` shape);
//! [`render`] and [`table`] turn it into text (pure); [`failover`] decides and follows moves
//! of a group's active region (pure); [`plan`] shows a move's translation (pure); [`translate`] dry-runs one (the checkpoint sync's translation, nothing committed); [`drill`] runs randomized DR drills and judges
//! them from Kafka's own tools' events. Commands wire these together in [`commands`].

pub mod cluster;
pub mod commands;
pub mod drill;
pub mod failover;
pub mod plan;
pub mod render;
pub mod snapshot;
pub mod table;
pub mod topology;
pub mod translate;

#[cfg(test)]
mod fixtures;
