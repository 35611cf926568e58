//! Where the drill reads and edits the group: the one cluster of the stretched topology, or
//! every region's own cluster (per-region: the same Tributary objects in each, each region's
//! operator writing its own region's status, `<name>-active` ConfigMap and workload; the
//! active-region Lease on the coordination apiserver).
//!
//! Per region, no one cluster tells the whole story: the move is recorded in the target's
//! status, a standby's sync freshness only in its own. [`merge`] makes one view of them (pure)
//! and says why the regions do not agree yet, which keeps the group from counting as settled.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tributary_api::{ConsumerGroupFailover, find_condition};

use crate::commands::{get_group, set_active_region};

/// How long one request to a region's cluster or the coordination apiserver may take: a
/// killed region's apiserver shows as an error, not as a hang of the drill.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The clusters of the drilled group.
pub enum Clusters {
    /// One cluster for every region (stretched): the Lease in it too.
    One(Client),
    /// A cluster per region, and the coordination apiserver that holds the Lease.
    PerRegion {
        regions: BTreeMap<String, Client>,
        coordination: Client,
    },
}

/// The group as the drill sees it: one object, and, per region, why the regions' clusters do
/// not agree yet (`None` when they do, and always in the stretched topology).
pub struct GroupView {
    pub cgf: ConsumerGroupFailover,
    pub disagreement: Option<String>,
}

/// A client of the kubeconfig at `path`, every request bounded by [`REQUEST_TIMEOUT`] and
/// never retried.
pub async fn bounded_client(path: &Path) -> Result<Client> {
    let file = Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let mut config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("using kubeconfig {}", path.display()))?;
    config.connect_timeout = Some(REQUEST_TIMEOUT);
    config.read_timeout = Some(REQUEST_TIMEOUT);
    config.write_timeout = Some(REQUEST_TIMEOUT);
    config.default_retry = false;
    Client::try_from(config).with_context(|| format!("a client of {}", path.display()))
}

/// `REGION=PATH` pairs (`--region-kubeconfig`).
pub fn parse_region_kubeconfigs(pairs: &[String]) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for p in pairs {
        let (r, path) = p
            .split_once('=')
            .filter(|(r, path)| !r.is_empty() && !path.is_empty())
            .ok_or_else(|| anyhow!("--region-kubeconfig {p:?}: expected REGION=PATH"))?;
        if out.insert(r.to_string(), PathBuf::from(path)).is_some() {
            bail!("--region-kubeconfig names region {r} twice");
        }
    }
    Ok(out)
}

impl Clusters {
    /// Per region: a client of every region's kubeconfig and of the coordination apiserver.
    pub async fn per_region(
        kubeconfigs: &BTreeMap<String, PathBuf>,
        coordination: &Path,
    ) -> Result<Clusters> {
        let mut regions = BTreeMap::new();
        for (r, path) in kubeconfigs {
            regions.insert(r.clone(), bounded_client(path).await?);
        }
        Ok(Clusters::PerRegion {
            regions,
            coordination: bounded_client(coordination).await?,
        })
    }

    pub fn per_region_topology(&self) -> bool {
        matches!(self, Clusters::PerRegion { .. })
    }

    /// The cluster where `region`'s workload, ConfigMap and status are.
    pub fn of_region(&self, region: &str) -> Result<&Client> {
        match self {
            Clusters::One(c) => Ok(c),
            Clusters::PerRegion { regions, .. } => regions.get(region).ok_or_else(|| {
                anyhow!(
                    "no --region-kubeconfig for region {region} (given: {})",
                    regions.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            }),
        }
    }

    /// Where the active-region Lease is.
    pub fn lease_cluster(&self) -> &Client {
        match self {
            Clusters::One(c) => c,
            Clusters::PerRegion { coordination, .. } => coordination,
        }
    }

    /// Every cluster that holds the Tributary objects: `(region, client)`, the region empty
    /// for the one cluster of the stretched topology.
    pub fn every(&self) -> Vec<(&str, &Client)> {
        match self {
            Clusters::One(c) => vec![("", c)],
            Clusters::PerRegion { regions, .. } => {
                regions.iter().map(|(r, c)| (r.as_str(), c)).collect()
            }
        }
    }

    /// Fails unless every region of the group has a cluster (per region).
    pub fn check_regions(&self, regions: &[String]) -> Result<()> {
        if let Clusters::PerRegion { regions: have, .. } = self {
            for r in regions {
                if !have.contains_key(r) {
                    bail!(
                        "the group has region {r} but no --region-kubeconfig {r}=PATH was given: \
                         per region, the drill reads each region's status, ConfigMap and \
                         workload from that region's cluster"
                    );
                }
            }
            for r in have.keys() {
                if !regions.contains(r) {
                    bail!("--region-kubeconfig names region {r}, which the group does not have");
                }
            }
        }
        Ok(())
    }

    /// The group, read from every cluster and merged ([`merge`]). Fails when no cluster
    /// answers.
    pub async fn group(&self, ns: &str, name: &str) -> Result<GroupView> {
        match self {
            Clusters::One(c) => {
                let api: Api<ConsumerGroupFailover> = Api::namespaced(c.clone(), ns);
                let cgf = api
                    .get(name)
                    .await
                    .with_context(|| format!("reading ConsumerGroupFailover {ns}/{name}"))?;
                Ok(GroupView {
                    cgf,
                    disagreement: None,
                })
            }
            Clusters::PerRegion { regions, .. } => {
                let reads = regions.iter().map(|(r, c)| async move {
                    let api: Api<ConsumerGroupFailover> = Api::namespaced(c.clone(), ns);
                    (r.clone(), api.get(name).await)
                });
                let mut views = Vec::new();
                let mut errors = Vec::new();
                for (r, got) in futures::future::join_all(reads).await {
                    match got {
                        Ok(cgf) => views.push((r, Some(cgf))),
                        Err(e) => {
                            errors.push(format!("{r}: {e}"));
                            views.push((r, None));
                        }
                    }
                }
                merge(&views).ok_or_else(|| {
                    anyhow!(
                        "reading ConsumerGroupFailover {ns}/{name}: no region's cluster answered ({})",
                        errors.join("; ")
                    )
                })
            }
        }
    }

    /// Sets `spec.activeRegion: to` in every cluster (per region: the GitOps way, the same
    /// objects everywhere), the way `kubectl tributary failover` does. Fails when a cluster
    /// cannot be written: a move edited in some regions only would not be a planned move.
    pub async fn set_active_region_everywhere(
        &self,
        ns: &str,
        name: &str,
        to: &str,
        force: bool,
        say: &impl Fn(&str),
    ) -> Result<()> {
        for (region, client) in self.every() {
            let api: Api<ConsumerGroupFailover> = Api::namespaced(client.clone(), ns);
            let cgf = get_group(&api, name, ns).await.with_context(|| {
                format!("reading {ns}/{name} in the cluster of region {region}")
            })?;
            let say_where = |l: &str| {
                if region.is_empty() {
                    say(l)
                } else {
                    say(&format!("{region}'s cluster: {l}"))
                }
            };
            set_active_region(&api, &cgf, to, force, &say_where)
                .await
                .with_context(|| {
                    if region.is_empty() {
                        format!("setting spec.activeRegion: {to}")
                    } else {
                        format!("setting spec.activeRegion: {to} in the cluster of region {region}")
                    }
                })?;
        }
        Ok(())
    }
}

fn active_and_epoch(cgf: &ConsumerGroupFailover) -> (Option<&str>, Option<i64>) {
    let s = cgf.status.as_ref();
    (
        s.and_then(|s| s.active_region.as_deref()),
        s.and_then(|s| s.epoch),
    )
}

/// One view of the group from every region's own copy (`(region, None)`: its cluster did not
/// answer). The base is the newest fact: the status at the highest epoch, the holder's own
/// when it answers (its Ready says whether the group runs there). On top of it:
/// - the pending move of the highest epoch above the base's (the target's status records it);
/// - the last failover of the highest epoch (the target's);
/// - each region's `lastSyncTime` from its own status (its standby Job runs in its cluster);
/// - `actedActiveRegion` only when every answering region acted on the same one.
///
/// The disagreement says why the regions are not settled alike: a cluster that does not
/// answer, another active region or epoch, a move pending in one, a region not Ready.
/// `None` when no region answered.
pub fn merge(views: &[(String, Option<ConsumerGroupFailover>)]) -> Option<GroupView> {
    let answering: Vec<(&str, &ConsumerGroupFailover)> = views
        .iter()
        .filter_map(|(r, c)| c.as_ref().map(|c| (r.as_str(), c)))
        .collect();
    let top = answering
        .iter()
        .filter_map(|(_, c)| active_and_epoch(c).1)
        .max();
    let (_, base) = answering
        .iter()
        .filter(|(_, c)| active_and_epoch(c).1 == top)
        .max_by_key(|(r, c)| active_and_epoch(c).0 == Some(*r))
        .or_else(|| answering.first())?;
    let mut cgf = (*base).clone();
    let mut why: Vec<String> = views
        .iter()
        .filter(|(_, c)| c.is_none())
        .map(|(r, _)| format!("{r}'s cluster does not answer"))
        .collect();
    let fact = active_and_epoch(base);
    for (r, c) in &answering {
        let (active, epoch) = active_and_epoch(c);
        if (active, epoch) != fact {
            why.push(format!(
                "{r} sees the group active in {} at epoch {}",
                active.unwrap_or("-"),
                epoch.map(|e| e.to_string()).unwrap_or_else(|| "-".into())
            ));
        }
        let s = c.status.as_ref();
        if let Some(p) = s.and_then(|s| s.pending_move.as_ref()) {
            why.push(format!("{r} has a move to {} pending", p.to));
        }
        if !s.is_some_and(|s| {
            find_condition(&s.conditions, "Ready").is_some_and(|c| c.status == "True")
        }) {
            why.push(format!("{r}'s status is not Ready"));
        }
    }
    if let Some(status) = cgf.status.as_mut() {
        let statuses = || answering.iter().filter_map(|(_, c)| c.status.as_ref());
        let base_epoch = status.epoch.unwrap_or(0);
        status.pending_move = statuses()
            .filter_map(|s| s.pending_move.as_ref())
            .filter(|p| p.epoch > base_epoch)
            .max_by_key(|p| p.epoch)
            .cloned();
        if let Some(last) = statuses()
            .filter_map(|s| s.last_failover.as_ref())
            .max_by_key(|f| f.epoch)
        {
            status.last_failover = Some(last.clone());
        }
        for entry in &mut status.regions {
            entry.last_sync_time = answering
                .iter()
                .find(|(r, _)| *r == entry.region)
                .and_then(|(_, c)| c.status.as_ref())
                .and_then(|s| s.regions.iter().find(|e| e.region == entry.region))
                .and_then(|e| e.last_sync_time.clone());
        }
        let acted: Vec<Option<&String>> =
            statuses().map(|s| s.acted_active_region.as_ref()).collect();
        if acted.iter().any(|a| *a != acted[0]) || acted.len() < views.len() {
            status.acted_active_region = None;
        }
    }
    Some(GroupView {
        cgf,
        disagreement: (!why.is_empty()).then(|| why.join("; ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `region`'s copy: active in `active` at `epoch`; its own standby synced at `synced`.
    fn copy(
        region: &str,
        active: &str,
        epoch: i64,
        extra: serde_json::Value,
    ) -> ConsumerGroupFailover {
        let mut status = serde_json::json!({
            "activeRegion": active,
            "epoch": epoch,
            "actedActiveRegion": active,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Active", "message": "",
                            "lastTransitionTime": "2026-12-01T12:00:00Z"}],
            "regions": [
                {"region": "east", "healthy": true, "role": "Active"},
                {"region": "west", "healthy": true, "role": "Standby"},
            ],
        });
        if region != active {
            let i = if region == "east" { 0 } else { 1 };
            status["regions"][i]["lastSyncTime"] = serde_json::json!("2026-12-01T12:00:05Z");
        }
        if let serde_json::Value::Object(m) = extra {
            for (k, v) in m {
                status[k] = v;
            }
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "tributary.dev/v1alpha1",
            "kind": "ConsumerGroupFailover",
            "metadata": {"name": "billing", "namespace": "shop"},
            "spec": {"groupId": "billing", "topics": ["orders"], "mode": "ActivePassive",
                     "regions": [{"region": "east", "aggregateCluster": "east"},
                                 {"region": "west", "aggregateCluster": "west"}]},
            "status": status,
        }))
        .expect("a ConsumerGroupFailover")
    }

    fn none() -> serde_json::Value {
        serde_json::json!({})
    }

    #[test]
    fn agreeing_regions_merge_into_the_holders_view_with_each_standbys_own_sync() {
        let views = vec![
            ("east".to_string(), Some(copy("east", "east", 3, none()))),
            ("west".to_string(), Some(copy("west", "east", 3, none()))),
        ];
        let v = merge(&views).expect("a view");
        assert_eq!(v.disagreement, None);
        let s = v.cgf.status.expect("status");
        assert_eq!(
            (s.active_region.as_deref(), s.epoch),
            (Some("east"), Some(3))
        );
        let west = s.regions.iter().find(|r| r.region == "west").expect("west");
        assert!(
            west.last_sync_time.is_some(),
            "west's sync, from west's own status"
        );
        assert_eq!(s.acted_active_region.as_deref(), Some("east"));
    }

    #[test]
    fn the_targets_pending_move_and_last_failover_win_and_keep_the_group_unsettled() {
        let pending = serde_json::json!({"pendingMove": {"to": "west", "reason": "SpecChanged",
            "kind": "Planned", "epoch": 4}});
        let views = vec![
            ("east".to_string(), Some(copy("east", "east", 3, none()))),
            ("west".to_string(), Some(copy("west", "east", 3, pending))),
        ];
        let v = merge(&views).expect("a view");
        let s = v.cgf.status.expect("status");
        assert_eq!(
            s.pending_move.map(|p| (p.to, p.epoch)),
            Some(("west".into(), 4))
        );
        assert!(
            v.disagreement
                .expect("unsettled")
                .contains("west has a move to west pending")
        );

        let done = serde_json::json!({"lastFailover": {"from": "east", "to": "west",
            "reason": "SpecChanged", "epoch": 4}});
        let views = vec![
            ("east".to_string(), Some(copy("east", "east", 3, none()))),
            ("west".to_string(), Some(copy("west", "west", 4, done))),
        ];
        let v = merge(&views).expect("a view");
        let s = v.cgf.status.expect("status");
        assert_eq!(
            (s.active_region.as_deref(), s.epoch),
            (Some("west"), Some(4))
        );
        assert_eq!(s.last_failover.map(|f| f.epoch), Some(4));
        assert!(
            v.disagreement
                .expect("east lags")
                .contains("east sees the group active in east at epoch 3")
        );
    }

    #[test]
    fn a_region_that_does_not_answer_leaves_the_others_view_but_is_never_settled() {
        let views = vec![
            ("east".to_string(), None),
            ("west".to_string(), Some(copy("west", "east", 3, none()))),
        ];
        let v = merge(&views).expect("west's view");
        assert_eq!(v.cgf.status.as_ref().and_then(|s| s.epoch), Some(3));
        assert!(
            v.disagreement
                .expect("unsettled")
                .contains("east's cluster does not answer")
        );
        assert!(v.cgf.status.expect("status").acted_active_region.is_none());
        assert!(merge(&[("east".to_string(), None)]).is_none());
    }

    #[test]
    fn a_region_not_ready_is_a_disagreement() {
        let not_ready = serde_json::json!({"conditions": [{"type": "Ready", "status": "False",
            "reason": "Fenced", "message": "", "lastTransitionTime": "2026-12-01T12:00:00Z"}]});
        let views = vec![
            ("east".to_string(), Some(copy("east", "east", 3, none()))),
            ("west".to_string(), Some(copy("west", "east", 3, not_ready))),
        ];
        let v = merge(&views).expect("a view");
        assert!(
            v.disagreement
                .expect("unsettled")
                .contains("west's status is not Ready")
        );
    }

    #[test]
    fn region_kubeconfigs_parse_as_region_path_pairs() {
        let m = parse_region_kubeconfigs(&["east=/a".into(), "west=/b".into()]).expect("pairs");
        assert_eq!(m.get("west"), Some(&PathBuf::from("/b")));
        assert!(parse_region_kubeconfigs(&["east".into()]).is_err());
        assert!(parse_region_kubeconfigs(&["east=/a".into(), "east=/b".into()]).is_err());
    }
}
