//! The checkpoint records replicators write, and their versioned wire format (JSON key and
//! value; spec in `docs/checkpoint-format.md`).
//!
//! A checkpoint `(s, d)` for `(route, topic, partition)` says: the record at source offset `s`
//! landed at destination offset `d` — exactly, for that one record. Records of one source
//! partition land in one destination partition in source order, so the mapping is monotone:
//! a later source record lands at a higher destination offset.
//!
//! Besides checkpoints a replicator writes an *origin* (the route's lower bounds, before it
//! copies anything) and *retention gaps* (source ranges deleted before they were copied).

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::topology::Route;

/// The `v` of every value this crate writes.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;

/// Kafka offsets are non-negative `i64`s; anything above is not an offset.
pub const MAX_OFFSET: u64 = i64::MAX as u64;

/// What a checkpoint record is about: one source partition copied along one route.
/// Encoded as the Kafka record key, so all records about it share a checkpoint-topic
/// partition and stay in order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CheckpointKey {
    pub route: Route,
    /// The source topic's name (not the aggregate topic's, which naming may prefix).
    pub topic: String,
    pub partition: u32,
}

impl CheckpointKey {
    pub fn new(route: Route, topic: impl Into<String>, partition: u32) -> Self {
        Self {
            route,
            topic: topic.into(),
            partition,
        }
    }
}

/// One decoded checkpoint-topic record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointRecord {
    pub key: CheckpointKey,
    /// When the replicator wrote it (ms since the Unix epoch).
    pub timestamp_ms: i64,
    pub entry: CheckpointEntry,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointEntry {
    Checkpoint(OffsetCheckpoint),
    Origin(RouteOrigin),
    RetentionGap(OffsetRange),
}

/// The source record at `source_offset` landed at `destination_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetCheckpoint {
    pub source_offset: u64,
    pub destination_offset: u64,
    /// Source offset of the record the route copied just before this one, when the
    /// replicator knows it. Lets readers see that no record lies between two checkpoints even
    /// where source offsets skip (transaction markers, compaction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_source_offset: Option<u64>,
    /// A destination offset below which the route copied nothing after this record: the
    /// next record it copies lands at or above it. Written by an idle route so that a quiet
    /// source does not hold translation back (MirrorMaker 2's KAFKA-15906).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_copy_floor: Option<u64>,
}

impl OffsetCheckpoint {
    /// A bare `(source, destination)` pair.
    pub fn new(source_offset: u64, destination_offset: u64) -> Self {
        Self {
            source_offset,
            destination_offset,
            previous_source_offset: None,
            next_copy_floor: None,
        }
    }
}

/// Lower bounds for everything a route copies from one source partition: source offsets at
/// or above `source_offset`, landing at or above `destination_offset`. Written before the
/// route's first copy (the destination's log end offset at that moment), and re-emitted with
/// the same offsets while the route has copied nothing yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteOrigin {
    pub source_offset: u64,
    pub destination_offset: u64,
    /// On a re-emitted origin: the route has still copied nothing, and its first copy lands at
    /// or above this offset — so a source that never produced does not hold translation back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_copy_floor: Option<u64>,
}

impl RouteOrigin {
    pub fn new(source_offset: u64, destination_offset: u64) -> Self {
        Self {
            source_offset,
            destination_offset,
            next_copy_floor: None,
        }
    }
}

/// Offsets `[from, to)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OffsetRange {
    pub from: u64,
    pub to: u64,
}

impl OffsetRange {
    pub fn contains(&self, offset: u64) -> bool {
        self.from <= offset && offset < self.to
    }
}

/// Key and value bytes of one checkpoint-topic record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedCheckpoint {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

#[derive(Debug, Error)]
pub enum CheckpointFormatError {
    #[error("checkpoint record {part} is not the expected JSON: {source}")]
    Json {
        part: RecordPart,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "checkpoint value has format version {found}; this build reads version {CHECKPOINT_FORMAT_VERSION}: upgrade the reader"
    )]
    UnsupportedVersion { found: u64 },
    #[error("checkpoint value has no numeric \"v\" (format version)")]
    MissingVersion,
    #[error("checkpoint value has unknown kind {kind:?}")]
    UnknownKind { kind: String },
    #[error("checkpoint record field `{field}` is invalid: {reason}")]
    InvalidField {
        field: &'static str,
        reason: &'static str,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordPart {
    Key,
    Value,
}

impl std::fmt::Display for RecordPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RecordPart::Key => "key",
            RecordPart::Value => "value",
        })
    }
}

/// Key layout. Field order is fixed: the key bytes choose the checkpoint-topic partition,
/// so they must not change between writers. No version in the key, for the same reason.
#[derive(Serialize, Deserialize)]
struct WireKey {
    source_region: String,
    destination_region: String,
    topic: String,
    partition: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum WireBody {
    Checkpoint(OffsetCheckpoint),
    Origin(RouteOrigin),
    RetentionGap(OffsetRange),
}

#[derive(Serialize)]
struct WireValueOut<'a> {
    v: u32,
    timestamp_ms: i64,
    #[serde(flatten)]
    body: &'a WireBody,
}

#[derive(Deserialize)]
struct WireValueIn {
    timestamp_ms: i64,
    #[serde(flatten)]
    body: WireBody,
}

const KNOWN_KINDS: [&str; 3] = ["checkpoint", "origin", "retention_gap"];

impl CheckpointRecord {
    /// Refuses what a reader would have to reject, so a writer cannot emit it.
    pub fn validate(&self) -> Result<(), CheckpointFormatError> {
        let invalid = |field, reason| Err(CheckpointFormatError::InvalidField { field, reason });
        if self.key.route.source_region.is_empty() {
            return invalid("source_region", "must not be empty");
        }
        if self.key.route.destination_region.is_empty() {
            return invalid("destination_region", "must not be empty");
        }
        if self.key.topic.is_empty() {
            return invalid("topic", "must not be empty");
        }
        if self.key.partition > i32::MAX as u32 {
            return invalid("partition", "must fit a Kafka partition number (i32)");
        }
        match self.entry {
            CheckpointEntry::Checkpoint(c) => {
                if c.source_offset > MAX_OFFSET {
                    return invalid("source_offset", "must be a Kafka offset (≤ i64::MAX)");
                }
                if c.destination_offset > MAX_OFFSET {
                    return invalid("destination_offset", "must be a Kafka offset (≤ i64::MAX)");
                }
                if c.previous_source_offset
                    .is_some_and(|previous| previous >= c.source_offset)
                {
                    return invalid("previous_source_offset", "must be below source_offset");
                }
                if c.next_copy_floor
                    .is_some_and(|floor| floor <= c.destination_offset || floor > MAX_OFFSET)
                {
                    return invalid(
                        "next_copy_floor",
                        "must be above destination_offset and a Kafka offset",
                    );
                }
            }
            CheckpointEntry::Origin(o) => {
                if o.source_offset > MAX_OFFSET || o.destination_offset > MAX_OFFSET {
                    return invalid("origin", "offsets must be Kafka offsets (≤ i64::MAX)");
                }
                if o.next_copy_floor
                    .is_some_and(|floor| floor < o.destination_offset || floor > MAX_OFFSET)
                {
                    return invalid(
                        "next_copy_floor",
                        "must be at or above destination_offset and a Kafka offset",
                    );
                }
            }
            CheckpointEntry::RetentionGap(gap) => {
                if gap.from >= gap.to || gap.to > MAX_OFFSET + 1 {
                    return invalid("retention_gap", "needs from < to ≤ i64::MAX + 1");
                }
            }
        }
        Ok(())
    }
}

/// Encodes a record for the checkpoint topic. Refuses invalid records.
/// Whether an idle partition's last checkpoint (or origin) is written again with the floor
/// `end` just read from the destination (format v2): when the floor rose since the last one
/// written (records of other routes moved the destination, so the promise is worth more), or
/// when the heartbeat is due — never merely because an interval passed. `last` is the floor
/// written last and how long ago.
pub fn floor_reemission_due(
    last: Option<(u64, std::time::Duration)>,
    end: u64,
    heartbeat: std::time::Duration,
) -> bool {
    last.is_none_or(|(floor, age)| floor != end || age >= heartbeat)
}

/// What an idle route writes again with the floor `end`: its last checkpoint, or before its
/// first copy its origin, carrying `next_copy_floor = end` — `None` when `end` promises
/// nothing new (not above the last copy, not at or above the origin) or there is nothing.
pub fn reemission(
    last: Option<OffsetCheckpoint>,
    origin: Option<RouteOrigin>,
    end: u64,
) -> Option<CheckpointEntry> {
    match (last, origin) {
        (Some(last), _) if end > last.destination_offset => {
            Some(CheckpointEntry::Checkpoint(OffsetCheckpoint {
                next_copy_floor: Some(end),
                ..last
            }))
        }
        (None, Some(origin)) if end >= origin.destination_offset => {
            Some(CheckpointEntry::Origin(RouteOrigin {
                next_copy_floor: Some(end),
                ..origin
            }))
        }
        _ => None,
    }
}

pub fn encode(record: &CheckpointRecord) -> Result<EncodedCheckpoint, CheckpointFormatError> {
    record.validate()?;
    let key = WireKey {
        source_region: record.key.route.source_region.clone(),
        destination_region: record.key.route.destination_region.clone(),
        topic: record.key.topic.clone(),
        partition: record.key.partition,
    };
    let body = match record.entry {
        CheckpointEntry::Checkpoint(c) => WireBody::Checkpoint(c),
        CheckpointEntry::Origin(o) => WireBody::Origin(o),
        CheckpointEntry::RetentionGap(g) => WireBody::RetentionGap(g),
    };
    let value = WireValueOut {
        v: CHECKPOINT_FORMAT_VERSION,
        timestamp_ms: record.timestamp_ms,
        body: &body,
    };
    Ok(EncodedCheckpoint {
        key: serde_json::to_vec(&key).map_err(|source| CheckpointFormatError::Json {
            part: RecordPart::Key,
            source,
        })?,
        value: serde_json::to_vec(&value).map_err(|source| CheckpointFormatError::Json {
            part: RecordPart::Value,
            source,
        })?,
    })
}

/// Decodes a checkpoint-topic record. Unknown fields are ignored (additions do not bump the
/// version); an unknown version or kind is an error the reader should count and skip —
/// translating with fewer records is only more conservative, never wrong.
pub fn decode(key: &[u8], value: &[u8]) -> Result<CheckpointRecord, CheckpointFormatError> {
    let key: WireKey =
        serde_json::from_slice(key).map_err(|source| CheckpointFormatError::Json {
            part: RecordPart::Key,
            source,
        })?;
    let raw: serde_json::Value =
        serde_json::from_slice(value).map_err(|source| CheckpointFormatError::Json {
            part: RecordPart::Value,
            source,
        })?;
    let version = raw
        .get("v")
        .and_then(serde_json::Value::as_u64)
        .ok_or(CheckpointFormatError::MissingVersion)?;
    if version != u64::from(CHECKPOINT_FORMAT_VERSION) {
        return Err(CheckpointFormatError::UnsupportedVersion { found: version });
    }
    if let Some(kind) = raw.get("kind").and_then(serde_json::Value::as_str)
        && !KNOWN_KINDS.contains(&kind)
    {
        return Err(CheckpointFormatError::UnknownKind {
            kind: kind.to_owned(),
        });
    }
    let value: WireValueIn =
        serde_json::from_value(raw).map_err(|source| CheckpointFormatError::Json {
            part: RecordPart::Value,
            source,
        })?;
    let record = CheckpointRecord {
        key: CheckpointKey {
            route: Route::new(key.source_region, key.destination_region),
            topic: key.topic,
            partition: key.partition,
        },
        timestamp_ms: value.timestamp_ms,
        entry: match value.body {
            WireBody::Checkpoint(c) => CheckpointEntry::Checkpoint(c),
            WireBody::Origin(o) => CheckpointEntry::Origin(o),
            WireBody::RetentionGap(g) => CheckpointEntry::RetentionGap(g),
        },
    };
    record.validate()?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> CheckpointKey {
        CheckpointKey::new(Route::new("east", "west"), "orders", 3)
    }

    fn record(entry: CheckpointEntry) -> CheckpointRecord {
        CheckpointRecord {
            key: key(),
            timestamp_ms: 1_732_623_600_000,
            entry,
        }
    }

    #[test]
    fn checkpoint_encodes_to_the_documented_bytes() -> Result<(), CheckpointFormatError> {
        let encoded = encode(&record(CheckpointEntry::Checkpoint(OffsetCheckpoint {
            source_offset: 1041,
            destination_offset: 88210,
            previous_source_offset: Some(1040),
            next_copy_floor: None,
        })))?;
        assert_eq!(
            String::from_utf8_lossy(&encoded.key),
            r#"{"source_region":"east","destination_region":"west","topic":"orders","partition":3}"#
        );
        assert_eq!(
            String::from_utf8_lossy(&encoded.value),
            r#"{"v":1,"timestamp_ms":1732623600000,"kind":"checkpoint","source_offset":1041,"destination_offset":88210,"previous_source_offset":1040}"#
        );
        Ok(())
    }

    #[test]
    fn origin_and_retention_gap_encode_to_the_documented_bytes() -> Result<(), CheckpointFormatError>
    {
        let origin = encode(&record(CheckpointEntry::Origin(RouteOrigin::new(0, 88000))))?;
        assert_eq!(
            String::from_utf8_lossy(&origin.value),
            r#"{"v":1,"timestamp_ms":1732623600000,"kind":"origin","source_offset":0,"destination_offset":88000}"#
        );
        let gap = encode(&record(CheckpointEntry::RetentionGap(OffsetRange {
            from: 1000,
            to: 1500,
        })))?;
        assert_eq!(
            String::from_utf8_lossy(&gap.value),
            r#"{"v":1,"timestamp_ms":1732623600000,"kind":"retention_gap","from":1000,"to":1500}"#
        );
        Ok(())
    }

    #[test]
    fn decode_ignores_unknown_fields_and_field_order() -> Result<(), CheckpointFormatError> {
        let decoded = decode(
            br#"{"partition":3,"topic":"orders","destination_region":"west","source_region":"east"}"#,
            br#"{"destination_offset":7,"kind":"checkpoint","added_in_a_later_minor":true,"source_offset":5,"v":1,"timestamp_ms":9}"#,
        )?;
        assert_eq!(decoded.key, key());
        assert_eq!(
            decoded.entry,
            CheckpointEntry::Checkpoint(OffsetCheckpoint::new(5, 7))
        );
        Ok(())
    }

    #[test]
    fn decode_refuses_other_versions_and_kinds() {
        let key = br#"{"source_region":"east","destination_region":"west","topic":"orders","partition":3}"#;
        assert!(matches!(
            decode(key, br#"{"v":2,"kind":"checkpoint","timestamp_ms":1,"source_offset":1,"destination_offset":1}"#),
            Err(CheckpointFormatError::UnsupportedVersion { found: 2 })
        ));
        assert!(matches!(
            decode(key, br#"{"kind":"checkpoint","timestamp_ms":1,"source_offset":1,"destination_offset":1}"#),
            Err(CheckpointFormatError::MissingVersion)
        ));
        assert!(matches!(
            decode(key, br#"{"v":1,"kind":"heartbeat","timestamp_ms":1}"#),
            Err(CheckpointFormatError::UnknownKind { .. })
        ));
        assert!(matches!(
            decode(key, br#"{"v":1,"kind":"checkpoint","timestamp_ms":1,"source_offset":-1,"destination_offset":1}"#),
            Err(CheckpointFormatError::Json { part: RecordPart::Value, .. })
        ));
        assert!(matches!(
            decode(b"not json", br#"{"v":1}"#),
            Err(CheckpointFormatError::Json {
                part: RecordPart::Key,
                ..
            })
        ));
    }

    #[test]
    fn invalid_records_are_refused_both_ways() {
        let bad_floor = record(CheckpointEntry::Checkpoint(OffsetCheckpoint {
            source_offset: 5,
            destination_offset: 7,
            previous_source_offset: None,
            next_copy_floor: Some(7),
        }));
        assert!(matches!(
            encode(&bad_floor),
            Err(CheckpointFormatError::InvalidField {
                field: "next_copy_floor",
                ..
            })
        ));
        let empty_gap = record(CheckpointEntry::RetentionGap(OffsetRange {
            from: 4,
            to: 4,
        }));
        assert!(encode(&empty_gap).is_err());
        let key = br#"{"source_region":"east","destination_region":"west","topic":"orders","partition":3}"#;
        assert!(matches!(
            decode(key, br#"{"v":1,"kind":"checkpoint","timestamp_ms":1,"source_offset":5,"destination_offset":1,"previous_source_offset":5}"#),
            Err(CheckpointFormatError::InvalidField { field: "previous_source_offset", .. })
        ));
    }

    fn offset() -> impl Strategy<Value = u64> {
        prop_oneof![0..1_000u64, Just(0), Just(MAX_OFFSET - 1)]
    }

    fn entry() -> impl Strategy<Value = CheckpointEntry> {
        prop_oneof![
            (
                offset(),
                offset(),
                proptest::option::of(0..1000u64),
                proptest::option::of(1..1000u64)
            )
                .prop_map(|(s, d, prev, floor_gap)| {
                    CheckpointEntry::Checkpoint(OffsetCheckpoint {
                        source_offset: s,
                        destination_offset: d,
                        previous_source_offset: prev.filter(|p| *p < s),
                        next_copy_floor: floor_gap
                            .map(|g| d.saturating_add(g).min(MAX_OFFSET))
                            .filter(|f| *f > d),
                    })
                }),
            (offset(), offset(), proptest::option::of(0..1000u64)).prop_map(|(s, d, floor_gap)| {
                CheckpointEntry::Origin(RouteOrigin {
                    source_offset: s,
                    destination_offset: d,
                    next_copy_floor: floor_gap.map(|g| d.saturating_add(g).min(MAX_OFFSET)),
                })
            }),
            (offset(), 1..1000u64).prop_map(|(from, len)| CheckpointEntry::RetentionGap(
                OffsetRange {
                    from,
                    to: (from + len).min(MAX_OFFSET + 1)
                }
            )),
        ]
    }

    proptest! {
        #[test]
        fn every_valid_record_round_trips(
            source in "[a-z][a-z0-9-]{0,10}",
            destination in "[a-z][a-z0-9-]{0,10}",
            topic in "[a-zA-Z0-9._-]{1,20}",
            partition in 0..10_000u32,
            timestamp_ms in any::<i64>(),
            entry in entry(),
        ) {
            let record = CheckpointRecord {
                key: CheckpointKey::new(Route::new(source, destination), topic, partition),
                timestamp_ms,
                entry,
            };
            let encoded = encode(&record).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let decoded = decode(&encoded.key, &encoded.value)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(decoded, record);
        }
    }
}
