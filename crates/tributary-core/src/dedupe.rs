//! Provenance headers (what every replicated record carries) and the consumer-side
//! [`Deduper`] that uses them to drop records a group already processed before a failover.
//!
//! Header values are UTF-8 text: names as-is, numbers in decimal (readable with
//! `kafka-console-consumer --property print.headers=true`, parseable in any language).
//! How an application uses this after a failover: `docs/dedupe.md`.

use std::collections::HashMap;

use thiserror::Error;

use crate::topology::SourcePartition;
use crate::translate::TranslationPlan;

/// Region whose regional cluster the record was produced to.
pub const HEADER_SOURCE_REGION: &str = "tributary.source.region";
/// Name of that regional cluster (informational; the region identifies the source).
pub const HEADER_SOURCE_CLUSTER: &str = "tributary.source.cluster";
/// Topic in the regional cluster (not the aggregate topic, which naming may prefix).
pub const HEADER_SOURCE_TOPIC: &str = "tributary.source.topic";
/// Partition in the regional cluster, decimal.
pub const HEADER_SOURCE_PARTITION: &str = "tributary.source.partition";
/// Offset in the regional cluster's partition, decimal.
pub const HEADER_SOURCE_OFFSET: &str = "tributary.source.offset";

/// Every provenance header, in the order the replicator writes them.
pub const PROVENANCE_HEADERS: [&str; 5] = [
    HEADER_SOURCE_REGION,
    HEADER_SOURCE_CLUSTER,
    HEADER_SOURCE_TOPIC,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_OFFSET,
];

/// Cluster id of the aggregate cluster the replicator wrote the copy into: what loop
/// prevention checks ([`is_copy_in`]). (No destination region: the id is exact, and every
/// header costs bytes on every copy.)
pub const HEADER_DESTINATION_CLUSTER: &str = "tributary.destination.cluster";

/// Every header a replicator writes. A record it copies keeps its other headers; these are
/// replaced by the copy's own, so a record an application passed them through to stays
/// parseable (one value per header).
pub const REPLICATOR_HEADERS: [&str; 6] = [
    HEADER_SOURCE_REGION,
    HEADER_SOURCE_CLUSTER,
    HEADER_SOURCE_TOPIC,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_OFFSET,
    HEADER_DESTINATION_CLUSTER,
];

/// True if the record is a replicator's copy *in the cluster `cluster_id`* — its
/// `tributary.destination.cluster` names that cluster — so a route reading that cluster
/// must not copy it again (no loops, also with identity naming and aggregates wired both
/// ways). A record in another cluster that carries the headers was produced there by an
/// application that passed them through (a replicator writes only into aggregates): it is
/// new data and is copied, with fresh provenance.
pub fn is_copy_in<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    cluster_id: &str,
) -> bool {
    headers
        .into_iter()
        .any(|(name, value)| name == HEADER_DESTINATION_CLUSTER && value == cluster_id.as_bytes())
}

/// Where a replicated record was produced.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Provenance {
    pub region: String,
    pub cluster: Option<String>,
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
}

impl Provenance {
    pub fn source_partition(&self) -> SourcePartition {
        SourcePartition::new(&self.region, &self.topic, self.partition)
    }

    /// The headers a replicator adds to the copy, as (name, value) pairs.
    pub fn to_headers(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut headers = vec![(HEADER_SOURCE_REGION, self.region.clone().into_bytes())];
        if let Some(cluster) = &self.cluster {
            headers.push((HEADER_SOURCE_CLUSTER, cluster.clone().into_bytes()));
        }
        headers.extend([
            (HEADER_SOURCE_TOPIC, self.topic.clone().into_bytes()),
            (
                HEADER_SOURCE_PARTITION,
                self.partition.to_string().into_bytes(),
            ),
            (HEADER_SOURCE_OFFSET, self.offset.to_string().into_bytes()),
        ]);
        headers
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ProvenanceError {
    #[error(
        "provenance header `{header}` is missing while other tributary.source.* headers are present"
    )]
    Missing { header: &'static str },
    #[error("provenance header `{header}` is not UTF-8")]
    NotUtf8 { header: &'static str },
    #[error("provenance header `{header}` is {value:?}, not a non-negative decimal number")]
    NotANumber { header: &'static str, value: String },
    #[error("provenance header `{header}` appears twice with different values (a copy of a copy?)")]
    Conflicting { header: &'static str },
}

/// True if any provenance header is present: a replicator's copy, or a record an
/// application derived from one and passed the headers through (loop prevention asks
/// [`is_copy_in`], not this).
pub fn has_provenance<'a>(headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> bool {
    headers
        .into_iter()
        .any(|(name, _)| PROVENANCE_HEADERS.contains(&name))
}

/// Reads provenance from a record's headers. `Ok(None)` if none of the headers is present
/// (not a replicated record); an error if they are present but incomplete or malformed.
pub fn parse_provenance<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<Option<Provenance>, ProvenanceError> {
    let mut found: [Option<&[u8]>; 5] = [None; 5];
    for (name, value) in headers {
        if let Some(slot) = PROVENANCE_HEADERS.iter().position(|h| *h == name) {
            match found[slot] {
                Some(earlier) if earlier != value => {
                    return Err(ProvenanceError::Conflicting {
                        header: PROVENANCE_HEADERS[slot],
                    });
                }
                _ => found[slot] = Some(value),
            }
        }
    }
    if found.iter().all(Option::is_none) {
        return Ok(None);
    }
    let text = |slot: usize| -> Result<Option<&str>, ProvenanceError> {
        found[slot]
            .map(|bytes| {
                std::str::from_utf8(bytes).map_err(|_| ProvenanceError::NotUtf8 {
                    header: PROVENANCE_HEADERS[slot],
                })
            })
            .transpose()
    };
    let required = |slot: usize| -> Result<&str, ProvenanceError> {
        text(slot)?.ok_or(ProvenanceError::Missing {
            header: PROVENANCE_HEADERS[slot],
        })
    };
    let number = |slot: usize| -> Result<u64, ProvenanceError> {
        let value = required(slot)?;
        value
            .parse::<u64>()
            .ok()
            .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| ProvenanceError::NotANumber {
                header: PROVENANCE_HEADERS[slot],
                value: value.to_owned(),
            })
    };
    let partition = number(3)?;
    Ok(Some(Provenance {
        region: required(0)?.to_owned(),
        cluster: text(1)?.map(str::to_owned),
        topic: required(2)?.to_owned(),
        partition: u32::try_from(partition).map_err(|_| ProvenanceError::NotANumber {
            header: HEADER_SOURCE_PARTITION,
            value: partition.to_string(),
        })?,
        offset: number(4)?,
    }))
}

/// What to do with one consumed record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DedupeDecision {
    /// Not processed before the failover (or no watermark says otherwise).
    Process,
    /// Below its source's watermark: the group processed it in the old region.
    Drop,
    /// No provenance headers: not a replicated record; process it.
    NoProvenance,
}

/// Drops records whose provenance offset is below the watermark of their source partition
/// (from a failover plan). Sources without a watermark pass everything.
#[derive(Clone, Debug, Default)]
pub struct Deduper {
    /// region → topic → partition → watermark; nested so lookups borrow from the record.
    watermarks: HashMap<String, HashMap<String, HashMap<u32, u64>>>,
}

impl Deduper {
    pub fn new(watermarks: impl IntoIterator<Item = (SourcePartition, u64)>) -> Self {
        let mut deduper = Self::default();
        for (source, watermark) in watermarks {
            let slot = deduper
                .watermarks
                .entry(source.region)
                .or_default()
                .entry(source.topic)
                .or_default()
                .entry(source.partition)
                .or_insert(watermark);
            // Two plans naming the same source: the lower watermark drops less.
            *slot = (*slot).min(watermark);
        }
        deduper
    }

    /// A deduper for the watermarks of a failover plan.
    pub fn from_plan(plan: &TranslationPlan) -> Self {
        Self::new(plan.watermarks())
    }

    pub fn watermark(&self, region: &str, topic: &str, partition: u32) -> Option<u64> {
        self.watermarks
            .get(region)
            .and_then(|topics| topics.get(topic))
            .and_then(|partitions| partitions.get(&partition))
            .copied()
    }

    /// False if the record was already processed before the failover.
    pub fn should_process(&self, provenance: &Provenance) -> bool {
        self.watermark(&provenance.region, &provenance.topic, provenance.partition)
            .is_none_or(|watermark| provenance.offset >= watermark)
    }

    /// [`Deduper::should_process`] straight from a record's headers.
    pub fn decide<'a>(
        &self,
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<DedupeDecision, ProvenanceError> {
        Ok(match parse_provenance(headers)? {
            None => DedupeDecision::NoProvenance,
            Some(provenance) if self.should_process(&provenance) => DedupeDecision::Process,
            Some(_) => DedupeDecision::Drop,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provenance(offset: u64) -> Provenance {
        Provenance {
            region: "east".into(),
            cluster: Some("east-regional".into()),
            topic: "orders".into(),
            partition: 3,
            offset,
        }
    }

    fn as_refs<'a>(headers: &'a [(&'static str, Vec<u8>)]) -> Vec<(&'static str, &'a [u8])> {
        headers.iter().map(|(n, v)| (*n, v.as_slice())).collect()
    }

    #[test]
    fn headers_round_trip() {
        let headers = provenance(42).to_headers();
        assert_eq!(
            headers
                .iter()
                .map(|(n, v)| format!("{n}={}", String::from_utf8_lossy(v)))
                .collect::<Vec<_>>(),
            [
                "tributary.source.region=east",
                "tributary.source.cluster=east-regional",
                "tributary.source.topic=orders",
                "tributary.source.partition=3",
                "tributary.source.offset=42"
            ]
        );
        assert_eq!(
            parse_provenance(as_refs(&headers)),
            Ok(Some(provenance(42)))
        );
        assert!(has_provenance(as_refs(&headers)));
    }

    #[test]
    fn only_a_copy_in_the_cluster_it_was_copied_into_counts_as_a_copy() {
        let mut headers = provenance(42).to_headers();
        headers.push((HEADER_DESTINATION_CLUSTER, b"west-aggregate-id".to_vec()));
        // Read back from the aggregate it was copied into (aggregates wired both ways).
        assert!(is_copy_in(as_refs(&headers), "west-aggregate-id"));
        // Passed through by an application into another cluster: new data.
        assert!(!is_copy_in(as_refs(&headers), "east-regional-id"));
        // Provenance without a destination (an application's own or an old copy): new data.
        assert!(!is_copy_in(
            as_refs(&provenance(42).to_headers()),
            "west-aggregate-id"
        ));
        assert!(!is_copy_in(as_refs(&[]), "west-aggregate-id"));
    }

    #[test]
    fn records_without_provenance_are_not_replicated_copies() {
        let app: Vec<(&str, &[u8])> = vec![("trace-id", b"abc")];
        assert_eq!(parse_provenance(app.clone()), Ok(None));
        assert!(!has_provenance(app));
    }

    #[test]
    fn malformed_provenance_names_the_header() {
        let missing: Vec<(&str, &[u8])> = vec![
            (HEADER_SOURCE_REGION, b"east"),
            (HEADER_SOURCE_TOPIC, b"orders"),
            (HEADER_SOURCE_PARTITION, b"3"),
        ];
        assert_eq!(
            parse_provenance(missing),
            Err(ProvenanceError::Missing {
                header: HEADER_SOURCE_OFFSET
            })
        );
        let headers = provenance(1).to_headers();
        let mut bad_number = as_refs(&headers);
        bad_number[4].1 = b"+7";
        assert!(matches!(
            parse_provenance(bad_number),
            Err(ProvenanceError::NotANumber {
                header: HEADER_SOURCE_OFFSET,
                ..
            })
        ));
        let mut twice = as_refs(&headers);
        twice.push((HEADER_SOURCE_OFFSET, b"2"));
        assert_eq!(
            parse_provenance(twice),
            Err(ProvenanceError::Conflicting {
                header: HEADER_SOURCE_OFFSET
            })
        );
    }

    #[test]
    fn deduper_drops_below_the_watermark_only() {
        let deduper = Deduper::new([(SourcePartition::new("east", "orders", 3), 100)]);
        assert!(!deduper.should_process(&provenance(99)));
        assert!(deduper.should_process(&provenance(100)));
        let other_partition = Provenance {
            partition: 4,
            ..provenance(0)
        };
        assert!(deduper.should_process(&other_partition));
        assert_eq!(
            deduper.decide(as_refs(&provenance(5).to_headers())),
            Ok(DedupeDecision::Drop)
        );
        assert_eq!(deduper.decide([]), Ok(DedupeDecision::NoProvenance));
    }
}
