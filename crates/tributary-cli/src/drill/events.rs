//! The load's own event streams, as Kafka's tools print them: VerifiableProducer's
//! `producer_send_success` (a record the regional cluster acknowledged, with where it landed)
//! and VerifiableConsumer's `record_data` (`--verbose`: one event per record consumed). The
//! verdict comes from these, not from Tributary's counters.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// A record a region's regional cluster acknowledged (acks=all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub region: String,
    pub value: String,
    /// Where it landed in the regional cluster: the provenance dedupe works with.
    pub partition: i32,
    pub offset: i64,
    pub at_ms: i64,
}

/// A record the group's consumers of a region consumed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Consumption {
    pub region: String,
    pub value: String,
    pub at_ms: i64,
    /// The consumer session: one VerifiableConsumer process's event log (a pod's log file).
    pub session: String,
    /// Where it was read in the region's aggregate cluster.
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A change of what a consumer session reads, in the order of its log: after it, offsets of
/// the partitions it names may legitimately start again lower (a rebalance re-delivers what
/// was consumed but not committed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionChange {
    /// `partitions_assigned` / `partitions_revoked`: these partitions start afresh.
    Partitions(Vec<(String, i32)>),
    /// `startup_complete`: the process (re)started; every partition starts afresh.
    Started,
}

/// A [`SessionChange`] of `session`, which applies before the consumption numbered `before`
/// (its index in the drill's list of consumptions, read in log order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionMark {
    pub session: String,
    pub before: usize,
    pub change: SessionChange,
}

/// A rebalance or start event of VerifiableConsumer's output; `None` for anything else.
pub fn parse_session_change(line: &str) -> Option<SessionChange> {
    if !line.contains("partitions_") && !line.contains("startup_complete") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    match v["name"].as_str()? {
        "startup_complete" => Some(SessionChange::Started),
        "partitions_assigned" | "partitions_revoked" => Some(SessionChange::Partitions(
            v["partitions"]
                .as_array()?
                .iter()
                .filter_map(|p| {
                    Some((
                        p["topic"].as_str()?.to_string(),
                        p["partition"].as_i64()? as i32,
                    ))
                })
                .collect(),
        )),
        _ => None,
    }
}

/// One line of VerifiableProducer's output; `None` for other events and noise.
pub fn parse_ack(region: &str, line: &str) -> Option<Ack> {
    if !line.contains("producer_send_success") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    (v["name"] == "producer_send_success").then(|| Ack {
        region: region.to_string(),
        value: v["value"].as_str().unwrap_or_default().to_string(),
        partition: v["partition"].as_i64().unwrap_or(-1) as i32,
        offset: v["offset"].as_i64().unwrap_or(-1),
        at_ms: v["timestamp"].as_i64().unwrap_or_default(),
    })
}

/// One line of VerifiableConsumer's `--verbose` output whose value has one of `prefixes`
/// (`<prefix>.<sequence>`: this drill's records, not older traffic of the topic).
pub fn parse_consumption(region: &str, line: &str, prefixes: &[String]) -> Option<Consumption> {
    if !line.contains("record_data") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["name"] != "record_data" {
        return None;
    }
    let value = v["value"].as_str()?;
    let prefix = value.split_once('.').map(|(p, _)| p)?;
    prefixes.iter().any(|p| p == prefix).then(|| Consumption {
        region: region.to_string(),
        value: value.to_string(),
        at_ms: v["timestamp"].as_i64().unwrap_or_default(),
        session: String::new(),
        topic: v["topic"].as_str().unwrap_or_default().to_string(),
        partition: v["partition"].as_i64().unwrap_or(-1) as i32,
        offset: v["offset"].as_i64().unwrap_or(-1),
    })
}

/// Reads growing files from where it stopped, whole lines only (a writer may be mid-line).
#[derive(Debug, Default)]
pub struct Tail {
    read: HashMap<PathBuf, u64>,
}

impl Tail {
    /// The complete new lines of `path` since the last call.
    pub fn new_lines(&mut self, path: &Path) -> Vec<String> {
        let at = self.read.get(path).copied().unwrap_or(0);
        let Ok(mut f) = std::fs::File::open(path) else {
            return Vec::new();
        };
        if f.seek(SeekFrom::Start(at)).is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).is_err() {
            return Vec::new();
        }
        let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        self.read.insert(path.to_path_buf(), at + end as u64 + 1);
        String::from_utf8_lossy(&buf[..end])
            .lines()
            .map(str::to_string)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_producer_success_is_an_ack_with_its_provenance() {
        let line = r#"{"timestamp":1764600000123,"name":"producer_send_success","key":"3","value":"41.17","offset":99,"topic":"orders","partition":2}"#;
        let ack = parse_ack("east", line).expect("an ack");
        assert_eq!(
            ack,
            Ack {
                region: "east".into(),
                value: "41.17".into(),
                partition: 2,
                offset: 99,
                at_ms: 1764600000123
            }
        );
        let error =
            r#"{"timestamp":1,"name":"producer_send_error","value":"41.18","topic":"orders"}"#;
        assert_eq!(parse_ack("east", error), None);
        assert_eq!(
            parse_ack("east", "WARN producer_send_success garbage"),
            None
        );
    }

    #[test]
    fn only_this_drills_records_count_as_consumed() {
        let prefixes = vec!["41".to_string()];
        let ours = r#"{"timestamp":5,"name":"record_data","key":null,"value":"41.7","topic":"orders","partition":0,"offset":3}"#;
        let older = r#"{"timestamp":5,"name":"record_data","key":null,"value":"40.7","topic":"orders","partition":0,"offset":4}"#;
        let summary = r#"{"timestamp":5,"name":"records_consumed","count":2,"partitions":[]}"#;
        assert_eq!(
            parse_consumption("west", ours, &prefixes),
            Some(Consumption {
                region: "west".into(),
                value: "41.7".into(),
                at_ms: 5,
                session: String::new(),
                topic: "orders".into(),
                partition: 0,
                offset: 3,
            })
        );
        assert_eq!(parse_consumption("west", older, &prefixes), None);
        assert_eq!(parse_consumption("west", summary, &prefixes), None);
    }

    #[test]
    fn rebalances_and_starts_are_session_changes() {
        let assigned = r#"{"timestamp":5,"name":"partitions_assigned","partitions":[{"topic":"orders","partition":0},{"topic":"orders","partition":2}]}"#;
        let revoked = r#"{"timestamp":5,"name":"partitions_revoked","partitions":[]}"#;
        let started = r#"{"timestamp":5,"name":"startup_complete"}"#;
        assert_eq!(
            parse_session_change(assigned),
            Some(SessionChange::Partitions(vec![
                ("orders".into(), 0),
                ("orders".into(), 2)
            ]))
        );
        assert_eq!(
            parse_session_change(revoked),
            Some(SessionChange::Partitions(vec![]))
        );
        assert_eq!(parse_session_change(started), Some(SessionChange::Started));
        let data = r#"{"timestamp":5,"name":"record_data","value":"41.7","topic":"orders","partition":0,"offset":3}"#;
        assert_eq!(parse_session_change(data), None);
    }

    #[test]
    fn tail_returns_whole_lines_once() {
        let dir = std::env::temp_dir().join(format!("drill-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("log");
        std::fs::write(&path, "a\nb\npart").expect("write");
        let mut tail = Tail::default();
        assert_eq!(tail.new_lines(&path), vec!["a", "b"]);
        assert!(tail.new_lines(&path).is_empty());
        std::fs::write(&path, "a\nb\npartial\nc\n").expect("write");
        assert_eq!(tail.new_lines(&path), vec!["partial", "c"]);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
