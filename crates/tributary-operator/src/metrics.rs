//! The operator's Prometheus metrics. Labels are bounded: kind, static error category, route
//! state — never object names.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
    pub category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// Regions are few and named by the operator's users in spec: a bounded set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegionLabels {
    pub region: String,
}

/// Who renewed a Lease: `pass` (a reconcile pass) or `renewer` (the task between passes).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RenewalLabels {
    pub by: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<KindLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Family<KindLabels, Histogram, fn() -> Histogram>,
    pub routes: Family<StateLabels, Gauge>,
    pub leader: Gauge,
    /// Completed moves of an active region, by reason (`Initial`, `RegionDown`, ...).
    pub failovers: Family<ReasonLabels, Counter>,
    /// The highest epoch of any group's Lease this operator wrote.
    pub active_epoch: Gauge,
    /// Confirmed renewals of active-region Leases, by who renewed.
    pub lease_renewals: Family<RenewalLabels, Counter>,
    /// 1 while the region's aggregate cluster answers the group probes.
    pub region_healthy: Family<RegionLabels, Gauge>,
    /// Age of the region's standby offsets (the stalest over the groups seen last).
    pub standby_sync_age: Family<RegionLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Routes per state per AggregateCluster, summed into `routes`.
    route_counts: Mutex<std::collections::BTreeMap<String, [i64; 4]>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

pub const ROUTE_STATES: [&str; 4] = ["Ready", "Pending", "Degraded", "Paused"];

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tributary_operator");
        let reconciles = Family::<KindLabels, Counter>::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_duration =
            Family::<KindLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram as fn() -> Histogram,
            );
        let routes = Family::<StateLabels, Gauge>::default();
        let leader = Gauge::default();
        let failovers = Family::<ReasonLabels, Counter>::default();
        let active_epoch = Gauge::default();
        let lease_renewals = Family::<RenewalLabels, Counter>::default();
        let region_healthy = Family::<RegionLabels, Gauge>::default();
        let standby_sync_age =
            Family::<RegionLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "failovers",
            "Completed moves of a group's active region, by reason",
            failovers.clone(),
        );
        registry.register(
            "active_epoch",
            "Highest active-region epoch written by this operator",
            active_epoch.clone(),
        );
        registry.register(
            "lease_renewals",
            "Confirmed renewals of active-region Leases, by who renewed (pass, renewer)",
            lease_renewals.clone(),
        );
        registry.register(
            "region_healthy",
            "1 while the region's aggregate cluster answers the failover probes",
            region_healthy.clone(),
        );
        registry.register(
            "standby_sync_age_seconds",
            "Seconds since the region's standby offsets last matched a full translation",
            standby_sync_age.clone(),
        );
        registry.register("reconciles", "Reconciles run, by kind", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Failed reconciles, by kind and error category",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile, by kind",
            reconcile_duration.clone(),
        );
        registry.register("routes", "Routes by state", routes.clone());
        registry.register(
            "leader",
            "1 while this instance holds the leader Lease",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            routes,
            leader,
            failovers,
            active_epoch,
            lease_renewals,
            region_healthy,
            standby_sync_age,
            route_counts: Mutex::default(),
        }
    }
}

impl Metrics {
    /// Text exposition format.
    pub fn encode(&self) -> String {
        tributary_runtime::encode_registry(&self.registry)
    }

    pub fn count_failover(&self, reason: &str) {
        self.failovers
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// A confirmed Lease renewal by `by` (`pass` or `renewer`).
    pub fn count_renewal(&self, by: &'static str) {
        self.lease_renewals
            .get_or_create(&RenewalLabels { by })
            .inc();
    }

    /// Records a region's health and standby freshness as one group saw them.
    pub fn set_region(&self, region: &str, healthy: bool, sync_age: Option<f64>) {
        let labels = RegionLabels {
            region: region.to_string(),
        };
        self.region_healthy
            .get_or_create(&labels)
            .set(i64::from(healthy));
        if let Some(age) = sync_age {
            self.standby_sync_age.get_or_create(&labels).set(age);
        }
    }

    /// Records the route states of one AggregateCluster (`None` when it is gone).
    pub fn set_routes(&self, aggregate: &str, states: Option<&[&str]>) {
        let Ok(mut counts) = self.route_counts.lock() else {
            return;
        };
        match states {
            Some(states) => {
                let mut c = [0i64; 4];
                for s in states {
                    if let Some(i) = ROUTE_STATES.iter().position(|x| x == s) {
                        c[i] += 1;
                    }
                }
                counts.insert(aggregate.to_string(), c);
            }
            None => {
                counts.remove(aggregate);
            }
        }
        for (i, state) in ROUTE_STATES.iter().enumerate() {
            let total: i64 = counts.values().map(|c| c[i]).sum();
            self.routes.get_or_create(&StateLabels { state }).set(total);
        }
    }
}
