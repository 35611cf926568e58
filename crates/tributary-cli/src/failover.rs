//! `failover` / `failback`: what a request to move a group means for the object as it is
//! ([`decide`]), who else owns `spec.activeRegion` ([`active_region_owners`]), and how a move
//! reads while the plugin waits for it ([`MoveWatch`]). Pure; the I/O is in
//! [`crate::commands`].
//!
//! The plugin only edits intent (`spec.activeRegion`, by server-side apply with its own field
//! manager); the operator does the move. Waiting reads `status` until the fact
//! (`status.activeRegion`, `status.epoch`) shows it.

use kube::ResourceExt;
use tributary_api::{ConsumerGroupFailover, condition_type, find_condition};

/// The field manager of the plugin's writes.
pub const FIELD_MANAGER: &str = "kubectl-tributary";

/// What to do about `failover GROUP --to REGION`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Set `spec.activeRegion` to the target and wait for the move (or, when the group is
    /// already active there, for the operator to acknowledge the spec).
    Set { to: String, moves: bool },
    /// The group is active in the target and the spec says so: nothing to do.
    AlreadyActive { region: String, epoch: Option<i64> },
    /// The spec already names the target and was acted on, but the group is elsewhere (an
    /// automatic failover moved it): the same value again would not move it. First set the
    /// current region (acknowledged without a move), then the target — the runbook's two edits.
    AcknowledgeThenSet { current: String, to: String },
    /// A move to the target is under way already: only wait for it.
    WaitForPending { to: String, epoch: i64 },
}

/// Why a request is refused, phrased for the person who typed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

/// Decides what moving `cgf` to `to` takes.
pub fn decide(cgf: &ConsumerGroupFailover, to: &str) -> Result<Request, Refusal> {
    let name = cgf.name_any();
    let regions: Vec<&str> = cgf.spec.regions.iter().map(|r| r.region.as_str()).collect();
    if !regions.contains(&to) {
        return Err(Refusal(format!(
            "ConsumerGroupFailover {name} has no region {to}: spec.regions lists {}",
            regions.join(", ")
        )));
    }
    let Some(status) = cgf
        .status
        .as_ref()
        .filter(|s| s.observed_generation.is_some())
    else {
        return Err(Refusal(format!(
            "ConsumerGroupFailover {name} has no status yet, so nothing would carry out or report \
             the move: is the operator running? (kubectl tributary status)"
        )));
    };
    if let Some(m) = &status.pending_move {
        if m.to == to {
            return Ok(Request::WaitForPending {
                to: to.to_string(),
                epoch: m.epoch,
            });
        }
        return Err(Refusal(format!(
            "ConsumerGroupFailover {name} is moving {}→{} (epoch {}) already; a new \
             spec.activeRegion would only start after it: wait for it (kubectl tributary status), \
             then ask again",
            m.from.as_deref().unwrap_or("none"),
            m.to,
            m.epoch
        )));
    }
    let active = status.active_region.as_deref();
    let spec = cgf.spec.active_region.as_deref();
    let acted = status.acted_active_region.as_deref();
    Ok(match active {
        Some(a) if a == to && spec == Some(to) => Request::AlreadyActive {
            region: to.to_string(),
            epoch: status.epoch,
        },
        Some(a) if a == to => Request::Set {
            to: to.to_string(),
            moves: false,
        },
        Some(a) if spec == Some(to) && acted == Some(to) => Request::AcknowledgeThenSet {
            current: a.to_string(),
            to: to.to_string(),
        },
        _ => Request::Set {
            to: to.to_string(),
            moves: true,
        },
    })
}

/// The target of `failback GROUP`: the region the last move left.
pub fn failback_target(cgf: &ConsumerGroupFailover) -> Result<String, Refusal> {
    let name = cgf.name_any();
    let last = cgf
        .status
        .as_ref()
        .and_then(|s| s.last_failover.as_ref())
        .ok_or_else(|| {
            Refusal(format!(
                "ConsumerGroupFailover {name} has not moved yet (no status.lastFailover): \
                 nothing to fail back to; use failover --to REGION"
            ))
        })?;
    last.from.clone().ok_or_else(|| {
        Refusal(format!(
            "ConsumerGroupFailover {name}'s last move was its first activation (into {}): \
             nothing to fail back to; use failover --to REGION",
            last.to
        ))
    })
}

/// Field managers other than the plugin that own `spec.activeRegion`, with their operation
/// (`Apply` for GitOps tools and `kubectl apply --server-side`, `Update` for edits/patches).
pub fn active_region_owners(cgf: &ConsumerGroupFailover) -> Vec<(String, String)> {
    cgf.managed_fields()
        .iter()
        .filter(|m| m.subresource.is_none())
        .filter(|m| m.manager.as_deref() != Some(FIELD_MANAGER))
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.pointer("/f:spec/f:activeRegion").is_some())
        })
        .map(|m| {
            (
                m.manager.clone().unwrap_or_else(|| "unknown".into()),
                m.operation.clone().unwrap_or_else(|| "unknown".into()),
            )
        })
        .collect()
}

/// Names the owners for a message: `argocd-controller (Apply), kubectl-edit (Update)`.
pub fn describe_owners(owners: &[(String, String)]) -> String {
    if owners.is_empty() {
        return "another field manager".into();
    }
    owners
        .iter()
        .map(|(m, op)| format!("{m} ({op})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The refusal when another manager owns the field and `--force` was not given.
pub fn conflict_refusal(name: &str, to: &str, owners: &[(String, String)]) -> Refusal {
    Refusal(format!(
        "spec.activeRegion of ConsumerGroupFailover {name} is owned by {}. If a GitOps tool \
         manages this object, set activeRegion: {to} in Git instead. To take the field anyway, \
         pass --force (and change Git too, or the tool will set it back)",
        describe_owners(owners)
    ))
}

/// What the plugin waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Goal {
    /// The group active in `to` at an epoch above `from_epoch`.
    Move { to: String, from_epoch: Option<i64> },
    /// The spec acknowledged without a move: `status.actedActiveRegion == to`.
    Acknowledge { to: String },
}

/// The outcome of one observation while waiting.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Still waiting; these lines say what changed.
    Waiting(Vec<String>),
    /// Done; the lines end with the result.
    Done(Vec<String>),
}

/// Follows a group's status towards a [`Goal`], reporting each change once.
#[derive(Clone, Debug)]
pub struct MoveWatch {
    goal: Goal,
    /// The generation of the spec edit; status older than it says nothing about the edit.
    generation: Option<i64>,
    last_seen: Option<String>,
}

impl MoveWatch {
    pub fn new(goal: Goal, generation: Option<i64>) -> MoveWatch {
        MoveWatch {
            goal,
            generation,
            last_seen: None,
        }
    }

    /// Looks at the object once.
    pub fn observe(&mut self, cgf: &ConsumerGroupFailover) -> Step {
        let status = cgf.status.clone().unwrap_or_default();
        let caught_up = match (status.observed_generation, self.generation) {
            (Some(o), Some(g)) => o >= g,
            _ => false,
        };
        let done = caught_up
            && status.pending_move.is_none()
            && match &self.goal {
                Goal::Move { to, from_epoch } => {
                    status.active_region.as_deref() == Some(to.as_str())
                        && status.epoch > *from_epoch
                }
                Goal::Acknowledge { to } => {
                    status.acted_active_region.as_deref() == Some(to.as_str())
                        && status.active_region.as_deref() == Some(to.as_str())
                }
            };
        let mut lines = Vec::new();
        let now = describe_progress(cgf, caught_up);
        if self.last_seen.as_ref() != Some(&now) {
            lines.push(now.clone());
            self.last_seen = Some(now);
        }
        if done {
            lines.push(result_line(cgf, &self.goal));
            Step::Done(lines)
        } else {
            Step::Waiting(lines)
        }
    }
}

/// One line for the group's state now: the move's step, a block, or the Ready condition.
fn describe_progress(cgf: &ConsumerGroupFailover, caught_up: bool) -> String {
    let status = cgf.status.clone().unwrap_or_default();
    if !caught_up {
        return "waiting for the operator to observe the new spec".to_string();
    }
    if let Some(b) = find_condition(&status.conditions, condition_type::FAILOVER_BLOCKED)
        .filter(|c| c.status == "True")
    {
        return format!("FailoverBlocked ({}): {}", b.reason, b.message);
    }
    if let Some(m) = &status.pending_move {
        let step = find_condition(&status.conditions, condition_type::FAILING_OVER)
            .filter(|c| c.status == "True");
        let mut line = format!(
            "{} {} move {}→{} (epoch {})",
            m.kind,
            m.reason,
            m.from.as_deref().unwrap_or("none"),
            m.to,
            m.epoch
        );
        if let Some(c) = step {
            line.push_str(&format!(": {}", c.reason));
            if !c.message.is_empty() {
                line.push_str(&format!(" — {}", c.message));
            }
        }
        if let Some(e) = &m.final_sync_error {
            line.push_str(&format!(" (final sync failed, retrying: {e})"));
        }
        return line;
    }
    match find_condition(&status.conditions, condition_type::READY) {
        Some(c) => format!(
            "active in {} at epoch {}; Ready={} ({}){}",
            status.active_region.as_deref().unwrap_or("none"),
            status
                .epoch
                .map(|e| e.to_string())
                .unwrap_or_else(|| "none".into()),
            c.status,
            c.reason,
            if c.message.is_empty() {
                String::new()
            } else {
                format!(": {}", c.message)
            }
        ),
        None => "no conditions yet".to_string(),
    }
}

fn result_line(cgf: &ConsumerGroupFailover, goal: &Goal) -> String {
    let status = cgf.status.clone().unwrap_or_default();
    let name = cgf.name_any();
    match goal {
        Goal::Acknowledge { to } => format!(
            "{name} is active in {to} at epoch {} (spec acknowledged, no move)",
            status
                .epoch
                .map(|e| e.to_string())
                .unwrap_or_else(|| "none".into())
        ),
        Goal::Move { to, .. } => {
            let mut line = format!(
                "{name} is active in {to} at epoch {}",
                status
                    .epoch
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "none".into())
            );
            if let Some(l) = status
                .last_failover
                .as_ref()
                .filter(|l| Some(l.epoch) == status.epoch)
            {
                line.push_str(&format!(
                    ": {} {} move from {}",
                    l.kind.as_deref().unwrap_or("unknown"),
                    l.reason,
                    l.from.as_deref().unwrap_or("none")
                ));
                if let Some(rto) = l.rto_seconds {
                    line.push_str(&format!(", RTO {rto:.1}s"));
                }
                if let Some(d) = l.max_duplicates_after_dedupe {
                    line.push_str(&format!(", at most {d} duplicates after dedupe"));
                }
                if !l.watermarks.is_empty() {
                    line.push_str(&format!(
                        ", {} watermarks in status.lastFailover",
                        l.watermarks.len()
                    ));
                }
            }
            line
        }
    }
}

/// Parses `--timeout`: `90`, `90s`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 5m or 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?} is not a duration like 90s, 5m or 1h")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{edit, healthy_yaml, snapshot};

    fn group(edit_with: impl FnOnce(&mut serde_yaml::Value)) -> ConsumerGroupFailover {
        let mut docs = healthy_yaml();
        edit(&mut docs, "ConsumerGroupFailover", "billing", edit_with);
        snapshot(&docs).groups.remove(0)
    }

    fn set(v: &mut serde_yaml::Value, path: &[&str], value: &str) {
        let mut at = v;
        for p in path {
            at = match p.parse::<usize>() {
                Ok(i) => &mut at[i],
                Err(_) => &mut at[*p],
            };
        }
        *at = serde_yaml::from_str(value).expect("YAML value");
    }

    #[test]
    fn moving_to_another_region_sets_the_spec() {
        let g = group(|_| {});
        assert_eq!(
            decide(&g, "west"),
            Ok(Request::Set {
                to: "west".into(),
                moves: true
            })
        );
    }

    #[test]
    fn moving_where_the_group_is_changes_nothing() {
        let g = group(|_| {});
        assert_eq!(
            decide(&g, "east"),
            Ok(Request::AlreadyActive {
                region: "east".into(),
                epoch: Some(3)
            })
        );
    }

    #[test]
    fn a_spec_already_acted_on_is_acknowledged_first_then_set_again() {
        // east died, the group moved to west by itself; the spec still says east.
        let g = group(|v| {
            set(v, &["status", "activeRegion"], "west");
            set(v, &["status", "epoch"], "4");
        });
        assert_eq!(
            decide(&g, "east"),
            Ok(Request::AcknowledgeThenSet {
                current: "west".into(),
                to: "east".into()
            })
        );
    }

    #[test]
    fn an_unknown_region_is_refused_with_the_known_ones() {
        let err = decide(&group(|_| {}), "mars").expect_err("refused");
        assert_eq!(
            err.0,
            "ConsumerGroupFailover billing has no region mars: spec.regions lists east, west"
        );
    }

    #[test]
    fn no_status_means_no_operator_and_is_refused() {
        let g = group(|v| {
            v.as_mapping_mut().expect("map").remove("status");
        });
        assert!(
            decide(&g, "west")
                .expect_err("refused")
                .0
                .contains("is the operator running?")
        );
    }

    #[test]
    fn a_move_under_way_elsewhere_is_refused_and_to_the_target_is_awaited() {
        let g = group(|v| {
            set(
                v,
                &["status", "pendingMove"],
                "{from: east, to: west, reason: SpecChanged, kind: Planned, epoch: 4}",
            )
        });
        assert_eq!(
            decide(&g, "west"),
            Ok(Request::WaitForPending {
                to: "west".into(),
                epoch: 4
            })
        );
        let g2 = group(|v| {
            set(
                v,
                &["spec", "regions"],
                "[{region: east, aggregateCluster: east}, {region: west, aggregateCluster: west}, {region: central, aggregateCluster: central}]",
            );
            set(
                v,
                &["status", "pendingMove"],
                "{from: east, to: west, reason: SpecChanged, kind: Planned, epoch: 4}",
            );
        });
        assert!(
            decide(&g2, "central")
                .expect_err("refused")
                .0
                .contains("is moving east→west (epoch 4) already")
        );
    }

    #[test]
    fn failback_goes_to_the_region_the_last_move_left() {
        assert_eq!(failback_target(&group(|_| {})), Ok("west".to_string()));
        let first = group(|v| {
            v["status"]["lastFailover"]
                .as_mapping_mut()
                .expect("map")
                .remove("from");
        });
        assert!(
            failback_target(&first)
                .expect_err("refused")
                .0
                .contains("first activation")
        );
    }

    #[test]
    fn owners_of_active_region_come_from_managed_fields_except_the_plugin() {
        let g = group(|v| {
            set(
                v,
                &["metadata", "managedFields"],
                r#"[
                  {manager: argocd-controller, operation: Apply, apiVersion: tributary.dev/v1alpha1,
                   fieldsType: FieldsV1, fieldsV1: {"f:spec": {"f:activeRegion": {}, "f:groupId": {}}}},
                  {manager: kubectl-tributary, operation: Apply, apiVersion: tributary.dev/v1alpha1,
                   fieldsType: FieldsV1, fieldsV1: {"f:spec": {"f:activeRegion": {}}}},
                  {manager: tributary-operator, operation: Apply, subresource: status, apiVersion: tributary.dev/v1alpha1,
                   fieldsType: FieldsV1, fieldsV1: {"f:status": {"f:activeRegion": {}}}},
                  {manager: kubectl-edit, operation: Update, apiVersion: tributary.dev/v1alpha1,
                   fieldsType: FieldsV1, fieldsV1: {"f:spec": {"f:topics": {}}}}
                ]"#,
            )
        });
        let owners = active_region_owners(&g);
        assert_eq!(
            owners,
            vec![("argocd-controller".to_string(), "Apply".to_string())]
        );
        let refusal = conflict_refusal("billing", "west", &owners);
        assert!(refusal.0.contains("owned by argocd-controller (Apply)"));
        assert!(refusal.0.contains("--force"));
        assert!(refusal.0.contains("Git"));
    }

    #[test]
    fn a_watched_move_reports_each_step_once_and_ends_with_the_result() {
        let mut watch = MoveWatch::new(
            Goal::Move {
                to: "west".into(),
                from_epoch: Some(3),
            },
            Some(3),
        );
        // The operator has not seen the edit yet (observedGeneration 2 < 3).
        let before = group(|_| {});
        assert_eq!(
            watch.observe(&before),
            Step::Waiting(vec![
                "waiting for the operator to observe the new spec".into()
            ])
        );
        assert_eq!(watch.observe(&before), Step::Waiting(vec![]), "said once");
        let draining = group(|v| {
            set(v, &["metadata", "generation"], "3");
            set(v, &["status", "observedGeneration"], "3");
            set(
                v,
                &["status", "pendingMove"],
                "{from: east, to: west, reason: SpecChanged, kind: Planned, epoch: 4}",
            );
            set(
                v,
                &["status", "conditions", "1"],
                r#"{type: FailingOver, status: "True", reason: Draining, message: "east: 2 pods running", lastTransitionTime: "2026-12-01T12:00:00Z"}"#,
            );
        });
        assert_eq!(
            watch.observe(&draining),
            Step::Waiting(vec![
                "Planned SpecChanged move east→west (epoch 4): Draining — east: 2 pods running"
                    .into()
            ])
        );
        let done = group(|v| {
            set(v, &["metadata", "generation"], "3");
            set(v, &["status", "observedGeneration"], "3");
            set(v, &["status", "activeRegion"], "west");
            set(v, &["status", "epoch"], "4");
            set(
                v,
                &["status", "lastFailover"],
                "{from: east, to: west, reason: SpecChanged, kind: Planned, epoch: 4, rtoSeconds: 1.84, maxDuplicatesAfterDedupe: 0}",
            );
            set(
                v,
                &["status", "conditions", "0"],
                r#"{type: Ready, status: "True", reason: Active, message: "west is active", lastTransitionTime: "2026-12-01T12:00:00Z"}"#,
            );
        });
        assert_eq!(
            watch.observe(&done),
            Step::Done(vec![
                "active in west at epoch 4; Ready=True (Active): west is active".into(),
                "billing is active in west at epoch 4: Planned SpecChanged move from east, RTO 1.8s, at most 0 duplicates after dedupe".into()
            ])
        );
    }

    #[test]
    fn a_blocked_move_says_why() {
        let mut watch = MoveWatch::new(
            Goal::Move {
                to: "west".into(),
                from_epoch: Some(3),
            },
            Some(2),
        );
        let blocked = group(|v| {
            v["status"]["conditions"]
                .as_sequence_mut()
                .expect("list")
                .push(serde_yaml::from_str(r#"{type: FailoverBlocked, status: "True", reason: TargetUnhealthy, message: "west is down", lastTransitionTime: "2026-12-01T12:00:00Z"}"#).expect("condition"));
        });
        assert_eq!(
            watch.observe(&blocked),
            Step::Waiting(vec![
                "FailoverBlocked (TargetUnhealthy): west is down".into()
            ])
        );
    }

    #[test]
    fn timeouts_parse_like_kubectl_durations() {
        assert_eq!(parse_duration("90"), Ok(std::time::Duration::from_secs(90)));
        assert_eq!(
            parse_duration("90s"),
            Ok(std::time::Duration::from_secs(90))
        );
        assert_eq!(
            parse_duration("5m"),
            Ok(std::time::Duration::from_secs(300))
        );
        assert_eq!(
            parse_duration("1h"),
            Ok(std::time::Duration::from_secs(3600))
        );
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
    }
}
