//! `plan GROUP`: the translation a group's move resumes from, as status records it — the move
//! under way (`status.pendingMove`, with `plan` once the target's standby answered) and the
//! last finished move (`status.lastFailover`: resume offsets and source watermarks). Pure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde::Serialize;
use tributary_api::consumer_group_failover::{
    FailoverRecord, PartitionOffset, PendingMove, SourceWatermark,
};
use tributary_api::{ConsumerGroupFailover, condition_type, find_condition};

use crate::render::age;
use crate::table::{Cell, Table};
use crate::topology::seconds_between;

/// `-o json` of `plan`: the status fields as the API defines them (docs/cli.md).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanView {
    pub kind: &'static str,
    pub version: u32,
    pub namespace: String,
    pub name: String,
    pub active_region: Option<String>,
    pub epoch: Option<i64>,
    pub pending_move: Option<PendingMove>,
    pub last_failover: Option<FailoverRecord>,
}

impl PlanView {
    pub fn of(cgf: &ConsumerGroupFailover) -> PlanView {
        let status = cgf.status.clone().unwrap_or_default();
        PlanView {
            kind: "TributaryPlan",
            version: 1,
            namespace: cgf.namespace().unwrap_or_default(),
            name: cgf.name_any(),
            active_region: status.active_region,
            epoch: status.epoch,
            pending_move: status.pending_move,
            last_failover: status.last_failover,
        }
    }
}

fn ago(t: &Option<Time>, now: Timestamp) -> String {
    match t {
        Some(t) => format!("{} ({} ago)", t.0, age(seconds_between(t.0, now))),
        None => "unknown".into(),
    }
}

fn watermarks_table(watermarks: &[SourceWatermark]) -> String {
    let mut t = Table::new(["SOURCE REGION", "TOPIC", "PARTITION", "WATERMARK"]);
    for w in watermarks {
        t.row(vec![
            Cell::plain(&w.source_region),
            Cell::plain(&w.topic),
            Cell::plain(w.partition.to_string()),
            Cell::plain(w.offset.to_string()),
        ]);
    }
    t.render(false)
}

fn offsets_table(offsets: &[PartitionOffset]) -> String {
    let mut t = Table::new(["TOPIC", "PARTITION", "RESUME OFFSET"]);
    for o in offsets {
        t.row(vec![
            Cell::plain(&o.topic),
            Cell::plain(o.partition.to_string()),
            Cell::plain(o.offset.to_string()),
        ]);
    }
    t.render(false)
}

/// The plan as text.
pub fn render_plan(cgf: &ConsumerGroupFailover, now: Timestamp) -> String {
    let name = cgf.name_any();
    let status = cgf.status.clone().unwrap_or_default();
    let mut out = String::new();
    if status.observed_generation.is_none() {
        return format!(
            "ConsumerGroupFailover {name} has no status yet: no move and no plan are known (is the operator running?)\n"
        );
    }
    out.push_str(&format!(
        "{name}: active in {} at epoch {}\n",
        status.active_region.as_deref().unwrap_or("none"),
        status
            .epoch
            .map(|e| e.to_string())
            .unwrap_or_else(|| "none".into())
    ));
    match &status.pending_move {
        Some(m) => {
            let step = find_condition(&status.conditions, condition_type::FAILING_OVER)
                .filter(|c| c.status == "True")
                .map(|c| c.reason.clone())
                .unwrap_or_else(|| "unknown".into());
            out.push_str(&format!(
                "\nMOVE UNDER WAY\n{} {} move {}→{} to epoch {}, step {step}\nstarted:  {}\n",
                m.kind,
                m.reason,
                m.from.as_deref().unwrap_or("none"),
                m.to,
                m.epoch,
                ago(&m.started, now)
            ));
            if m.detected.is_some() {
                out.push_str(&format!("detected: {}\n", ago(&m.detected, now)));
            }
            if let Some(e) = &m.final_sync_error {
                out.push_str(&format!("last final sync failed (asked again): {e}\n"));
            }
            match &m.plan {
                Some(p) => {
                    out.push_str(&format!(
                        "\nPLAN ({}, received {})\nexact: {}   max duplicates: {}   after dedupe: {}\n",
                        p.origin,
                        ago(&p.received, now),
                        p.exact,
                        p.max_duplicates,
                        p.max_duplicates_after_dedupe
                    ));
                    if p.watermarks.is_empty() {
                        out.push_str("no watermarks\n");
                    } else {
                        out.push_str(&watermarks_table(&p.watermarks));
                    }
                }
                None => out.push_str(
                    "\nPLAN\nnone yet: a planned move gets it at FinalSync; an unplanned one only if the target's standby answered at Begin\n",
                ),
            }
        }
        None => out.push_str("\nno move under way\n"),
    }
    match &status.last_failover {
        Some(l) => {
            out.push_str(&format!(
                "\nLAST MOVE\n{} {} move {}→{} at epoch {}\nstarted:  {}\nfinished: {}\n",
                l.kind.as_deref().unwrap_or("unknown"),
                l.reason,
                l.from.as_deref().unwrap_or("none"),
                l.to,
                l.epoch,
                ago(&l.started, now),
                ago(&l.finished, now)
            ));
            if let Some(rto) = l.rto_seconds {
                out.push_str(&format!("RTO: {rto:.1}s\n"));
            }
            out.push_str(&format!(
                "plan origin: {}   max duplicates after dedupe: {}\n",
                l.plan_origin
                    .as_deref()
                    .unwrap_or("none (no standby answered)"),
                l.max_duplicates_after_dedupe
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "unknown".into())
            ));
            if !l.resume_offsets.is_empty() {
                out.push('\n');
                out.push_str(&offsets_table(&l.resume_offsets));
            }
            if !l.watermarks.is_empty() {
                out.push('\n');
                out.push_str(&watermarks_table(&l.watermarks));
            }
        }
        None => out.push_str("\nno move recorded yet\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{NOW, edit, healthy_yaml, snapshot};

    fn group(edit_with: impl FnOnce(&mut serde_yaml::Value)) -> ConsumerGroupFailover {
        let mut docs = healthy_yaml();
        edit(&mut docs, "ConsumerGroupFailover", "billing", edit_with);
        snapshot(&docs).groups.remove(0)
    }

    fn now() -> Timestamp {
        NOW.parse().expect("time")
    }

    #[test]
    fn a_pending_plan_shows_its_bounds_and_watermarks() {
        let g = group(|v| {
            v["status"]["pendingMove"] = serde_yaml::from_str(
                r#"{from: east, to: west, reason: SpecChanged, kind: Planned, epoch: 4,
                    started: "2026-12-01T12:00:05Z",
                    plan: {origin: Final, received: "2026-12-01T12:00:08Z", exact: true, maxDuplicates: 3,
                           maxDuplicatesAfterDedupe: 0,
                           watermarks: [{sourceRegion: east, topic: orders, partition: 0, offset: 120},
                                        {sourceRegion: west, topic: orders, partition: 0, offset: 7}]}}"#,
            )
            .expect("move");
            v["status"]["conditions"][1] = serde_yaml::from_str(
                r#"{type: FailingOver, status: "True", reason: TakingLease, message: "", lastTransitionTime: "2026-12-01T12:00:09Z"}"#,
            )
            .expect("condition");
        });
        let text = render_plan(&g, now());
        assert!(text.starts_with("billing: active in east at epoch 3\n"));
        assert!(text.contains("Planned SpecChanged move east→west to epoch 4, step TakingLease\nstarted:  2026-12-01T12:00:05Z (5s ago)\n"), "{text}");
        assert!(text.contains("PLAN (Final, received 2026-12-01T12:00:08Z (2s ago))\nexact: true   max duplicates: 3   after dedupe: 0\n"), "{text}");
        assert!(text.contains(
            "SOURCE REGION   TOPIC    PARTITION   WATERMARK\neast            orders   0           120\nwest            orders   0           7\n"
        ), "{text}");
    }

    #[test]
    fn without_a_move_the_last_one_is_shown() {
        let text = render_plan(&group(|_| {}), now());
        assert!(text.contains("no move under way\n"));
        assert!(
            text.contains("LAST MOVE\nPlanned Failback move west→east at epoch 3\n"),
            "{text}"
        );
        assert!(text.contains("RTO: 1.8s\n"));
        assert!(
            text.contains(
                "plan origin: none (no standby answered)   max duplicates after dedupe: unknown\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn no_status_says_nothing_is_known() {
        let g = group(|v| {
            v.as_mapping_mut().expect("map").remove("status");
        });
        assert!(render_plan(&g, now()).contains("has no status yet"));
    }

    #[test]
    fn json_carries_the_status_fields_as_the_api_names_them() {
        let j = serde_json::to_value(PlanView::of(&group(|_| {}))).expect("JSON");
        assert_eq!(j["kind"], "TributaryPlan");
        assert_eq!(j["lastFailover"]["from"], "west");
        assert_eq!(j["lastFailover"]["rtoSeconds"], 1.8);
        assert!(j["pendingMove"].is_null());
    }
}
