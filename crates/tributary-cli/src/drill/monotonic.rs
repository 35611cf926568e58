//! Jepsen's non-monotonic consumption check, on VerifiableConsumer's events (pure).
//!
//! Within one consumer session (one VerifiableConsumer process: one pod's log) and one
//! assignment of a partition, consumption must move forward:
//! - `offset`: an aggregate offset at or below the one consumed before it on that partition
//!   (a re-read or a jump back the consumer did not ask for);
//! - `source_order`: a record of a source partition that no consumer had consumed before,
//!   arriving after a later record of the same source partition (the aggregate holds the
//!   source out of order: the replicator's ordering promise broken).
//!
//! What is legitimately non-monotonic is not reported: after a rebalance (`partitions_assigned`
//! / `partitions_revoked` of the partition) or a restart (`startup_complete`) the session
//! resumes from the committed offset and re-reads what it had consumed but not committed;
//! after a move the group resumes in another region (another session) from translated,
//! conservative offsets and re-reads records already consumed; an at-least-once replicator
//! that restarts copies a record again, so an *already consumed* record of a source
//! partition may reappear after later ones. Those are duplicates, counted as such.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::events::{Ack, Consumption, SessionChange, SessionMark};

/// One backwards step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NonMonotonic {
    /// `offset` or `source_order` (see the module docs).
    pub kind: &'static str,
    pub region: String,
    pub session: String,
    pub topic: String,
    pub partition: i32,
    pub at_ms: i64,
    pub value: String,
    /// The offset before (aggregate offset, or source offset for `source_order`) and this one.
    pub previous: i64,
    pub offset: i64,
}

/// Every backwards step of `consumed` (in the order read; `marks` say where sessions
/// rebalanced or restarted). `acks` give each record's source partition and offset.
pub fn non_monotonic(
    consumed: &[Consumption],
    marks: &[SessionMark],
    acks: &[Ack],
) -> Vec<NonMonotonic> {
    let provenance: HashMap<&str, &Ack> = acks.iter().map(|a| (a.value.as_str(), a)).collect();
    // (session, topic, partition) → last aggregate offset of the current assignment.
    let mut last: HashMap<(&str, &str, i32), i64> = HashMap::new();
    // (session, topic, partition, source region, source partition) → highest source offset.
    let mut highest_source: HashMap<(&str, &str, i32, &str, i32), i64> = HashMap::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut out = Vec::new();
    let mut marks = marks.iter().peekable();
    for (i, c) in consumed.iter().enumerate() {
        while let Some(m) = marks.next_if(|m| m.before <= i) {
            match &m.change {
                SessionChange::Started => {
                    last.retain(|k, _| k.0 != m.session);
                    highest_source.retain(|k, _| k.0 != m.session);
                }
                SessionChange::Partitions(parts) => {
                    for (topic, partition) in parts {
                        last.retain(|k, _| {
                            !(k.0 == m.session && k.1 == topic && k.2 == *partition)
                        });
                        highest_source.retain(|k, _| {
                            !(k.0 == m.session && k.1 == topic && k.2 == *partition)
                        });
                    }
                }
            }
        }
        let key = (c.session.as_str(), c.topic.as_str(), c.partition);
        if let Some(previous) = last.insert(key, c.offset)
            && c.offset <= previous
        {
            out.push(step("offset", c, previous, c.offset));
        }
        let first_time = seen.insert(c.value.as_str());
        if let Some(a) = provenance.get(c.value.as_str()) {
            let skey = (key.0, key.1, key.2, a.region.as_str(), a.partition);
            let highest = highest_source.entry(skey).or_insert(a.offset);
            if a.offset < *highest && first_time {
                out.push(step("source_order", c, *highest, a.offset));
            }
            *highest = (*highest).max(a.offset);
        }
    }
    out
}

fn step(kind: &'static str, c: &Consumption, previous: i64, offset: i64) -> NonMonotonic {
    NonMonotonic {
        kind,
        region: c.region.clone(),
        session: c.session.clone(),
        topic: c.topic.clone(),
        partition: c.partition,
        at_ms: c.at_ms,
        value: c.value.clone(),
        previous,
        offset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(session: &str, partition: i32, offset: i64, value: &str) -> Consumption {
        Consumption {
            region: "west".into(),
            value: value.into(),
            at_ms: offset,
            session: session.into(),
            topic: "orders".into(),
            partition,
            offset,
        }
    }

    fn ack(value: &str, partition: i32, offset: i64) -> Ack {
        Ack {
            region: "east".into(),
            value: value.into(),
            partition,
            offset,
            at_ms: 0,
        }
    }

    fn mark(session: &str, before: usize, change: SessionChange) -> SessionMark {
        SessionMark {
            session: session.into(),
            before,
            change,
        }
    }

    #[test]
    fn an_offset_going_backwards_within_a_session_is_reported() {
        let consumed = [
            c("a", 0, 10, "1.10"),
            c("a", 0, 11, "1.11"),
            c("a", 0, 9, "1.9"),
            c("a", 0, 12, "1.12"),
        ];
        let steps = non_monotonic(&consumed, &[], &[]);
        assert_eq!(steps.len(), 1, "{steps:?}");
        assert_eq!(steps[0].kind, "offset");
        assert_eq!((steps[0].previous, steps[0].offset), (11, 9));
    }

    #[test]
    fn the_same_offset_twice_without_a_rebalance_is_reported() {
        let consumed = [c("a", 0, 10, "1.10"), c("a", 0, 10, "1.10")];
        assert_eq!(non_monotonic(&consumed, &[], &[]).len(), 1);
    }

    #[test]
    fn redelivery_after_a_rebalance_or_a_restart_is_not_reported() {
        let consumed = [
            c("a", 0, 10, "1.10"),
            c("a", 0, 11, "1.11"),
            // rebalance: partition 0 assigned again, resumes from the committed 10
            c("a", 0, 10, "1.10"),
            c("a", 0, 11, "1.11"),
            // the process restarted
            c("a", 0, 8, "1.8"),
        ];
        let marks = [
            mark(
                "a",
                2,
                SessionChange::Partitions(vec![("orders".into(), 0)]),
            ),
            mark("a", 4, SessionChange::Started),
        ];
        assert_eq!(non_monotonic(&consumed, &marks, &[]), vec![]);
        // A rebalance of another partition does not excuse partition 0.
        let other = [mark(
            "a",
            2,
            SessionChange::Partitions(vec![("orders".into(), 1)]),
        )];
        assert_eq!(non_monotonic(&consumed[..4], &other, &[]).len(), 1);
    }

    #[test]
    fn another_session_after_a_move_starts_afresh() {
        // east's session consumed to 20; west's (another session, other offsets) re-reads.
        let consumed = [
            c("east-pod", 0, 20, "1.20"),
            c("west-pod", 0, 5, "1.19"),
            c("west-pod", 0, 6, "1.20"),
        ];
        assert_eq!(non_monotonic(&consumed, &[], &[]), vec![]);
    }

    #[test]
    fn a_source_record_out_of_order_is_reported_but_a_recopy_is_not() {
        let acks = [ack("1.1", 0, 1), ack("1.2", 0, 2), ack("1.3", 0, 3)];
        // The aggregate holds source offsets 1, 3, 2: 2 arrives after 3 and is new.
        let reordered = [
            c("a", 0, 10, "1.1"),
            c("a", 0, 11, "1.3"),
            c("a", 0, 12, "1.2"),
        ];
        let steps = non_monotonic(&reordered, &[], &acks);
        assert_eq!(steps.len(), 1, "{steps:?}");
        assert_eq!(steps[0].kind, "source_order");
        assert_eq!((steps[0].previous, steps[0].offset), (3, 2));
        // An at-least-once re-copy: 1, 2, 3, then 2, 3 again at higher aggregate offsets.
        let recopied = [
            c("a", 0, 10, "1.1"),
            c("a", 0, 11, "1.2"),
            c("a", 0, 12, "1.3"),
            c("a", 0, 13, "1.2"),
            c("a", 0, 14, "1.3"),
        ];
        assert_eq!(non_monotonic(&recopied, &[], &acks), vec![]);
    }
}
