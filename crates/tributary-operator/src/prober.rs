//! The Kafka-side prober: an external relation of the controllers. It periodically asks each
//! registered cluster for reachability, end offsets and route progress, keeps the latest
//! observation, and triggers a reconcile of the owning object only when something meaningful
//! changed. Reconciles read the observations; they never poll Kafka for health themselves.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};
use tributary_api::{AggregateCluster, RegionalStream};

use crate::kafka::{ClusterAdmin, ResolvedConnection};

/// Whether a cluster answered at the last probe.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Reach {
    #[default]
    Unknown,
    Reachable,
    /// With the error, phrased for a person.
    Unreachable(String),
}

/// What the prober last saw of a RegionalStream's regional cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamObservation {
    pub reach: Reach,
    /// Topic → end offset per partition.
    pub end_offsets: BTreeMap<String, Vec<i64>>,
    /// Topic → records per second between the last two probes.
    pub rates: BTreeMap<String, f64>,
}

/// What the prober last saw of one route.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteObservation {
    pub source_reach: Reach,
    pub lag_records: Option<i64>,
    /// Seconds since the route was last caught up (0 when it is).
    pub lag_seconds: Option<f64>,
    pub last_checkpoint_age_seconds: Option<f64>,
    /// When the newest checkpoint record was written (ms since the epoch).
    pub last_checkpoint_ms: Option<i64>,
}

/// What the prober last saw of an AggregateCluster and its routes (by Deployment name).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AggregateObservation {
    pub reach: Reach,
    pub routes: BTreeMap<String, RouteObservation>,
}

/// A route to probe.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteTarget {
    pub deployment: String,
    pub source_region: String,
    pub source: ResolvedConnection,
    pub topics: Vec<String>,
}

#[derive(Clone, Debug)]
struct StreamTarget {
    obj: ObjectRef<RegionalStream>,
    conn: ResolvedConnection,
    topics: Vec<String>,
}

#[derive(Clone, Debug)]
struct AggregateTarget {
    obj: ObjectRef<AggregateCluster>,
    conn: ResolvedConnection,
    region: String,
    checkpoint_topic: String,
    routes: Vec<RouteTarget>,
}

#[derive(Default)]
struct State {
    streams: HashMap<String, StreamTarget>,
    aggregates: HashMap<String, AggregateTarget>,
    stream_obs: HashMap<String, (StreamObservation, Instant)>,
    aggregate_obs: HashMap<String, AggregateObservation>,
    /// Route → when it was last seen caught up.
    caught_up_at: HashMap<String, Instant>,
    /// Stream → the figures (end offsets) of its last trigger, and when that was.
    reported_streams: HashMap<String, (Figures, Instant)>,
    /// Aggregate → the figures (lags) of its last trigger, and when that was.
    reported_aggregates: HashMap<String, (Figures, Instant)>,
}

/// The volatile figures of an observation: end offsets of a stream, lags of an aggregate's
/// routes (as [`lag_scale`]). They move with every record produced, so they alone never
/// trigger at every probe.
#[derive(Clone, Debug, PartialEq)]
enum Figures {
    Stream(BTreeMap<String, Vec<i64>>),
    Aggregate(Vec<Option<u32>>),
}

/// A lag's order of magnitude: 0 for caught up, else 1 + ⌊log2 lag⌋. Constant traffic keeps a
/// route's lag steady within a factor of two, so the status is not rewritten for 5 vs 6.
fn lag_scale(lag: i64) -> u32 {
    if lag <= 0 {
        0
    } else {
        64 - lag.leading_zeros()
    }
}

/// Figures that changed trigger a reconcile (a status refresh) once they held still for two
/// probes (traffic stopped, a route caught up or is paused) and at most this often per
/// object: under constant traffic the status is refreshed by the resync, not at every probe;
/// live figures are the replicators' metrics.
pub const FIGURES_REFRESH: Duration = Duration::from_secs(30);

/// Whether figures `now` (after `previous` at the probe before) warrant a status refresh,
/// given the last `reported` ones. Pure.
fn figures_due(
    previous: Option<&Figures>,
    now: &Figures,
    reported: Option<&(Figures, Instant)>,
    at: Instant,
) -> bool {
    let settled = previous == Some(now);
    match reported {
        None => settled,
        Some((r, when)) => settled && r != now && at.duration_since(*when) >= FIGURES_REFRESH,
    }
}

/// Shared between the controllers (register, read) and the probe loop.
#[derive(Clone)]
pub struct Prober {
    state: Arc<RwLock<State>>,
    stream_tx: UnboundedSender<ObjectRef<RegionalStream>>,
    aggregate_tx: UnboundedSender<ObjectRef<AggregateCluster>>,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prober")
    }
}

/// The reconcile triggers the prober emits, one stream per kind.
pub struct Triggers {
    pub streams: UnboundedReceiver<ObjectRef<RegionalStream>>,
    pub aggregates: UnboundedReceiver<ObjectRef<AggregateCluster>>,
}

fn key<K: kube::Resource<DynamicType = ()>>(obj: &ObjectRef<K>) -> String {
    format!("{}/{}", obj.namespace.as_deref().unwrap_or(""), obj.name)
}

/// The same object's reference in the caches of the controllers (which hold guarded objects).
pub fn guarded<K>(o: &ObjectRef<K>) -> ObjectRef<DeserializeGuard<K>>
where
    K: kube::Resource<DynamicType = ()>,
{
    let r = ObjectRef::new(&o.name);
    match &o.namespace {
        Some(ns) => r.within(ns),
        None => r,
    }
}

/// A checkpoint older than this marks a route's checkpoints stale (triggers a status update).
const STALE_CHECKPOINT: f64 = 60.0;

impl Prober {
    pub fn new() -> (Self, Triggers) {
        let (stream_tx, streams) = unbounded();
        let (aggregate_tx, aggregates) = unbounded();
        (
            Self {
                state: Arc::default(),
                stream_tx,
                aggregate_tx,
            },
            Triggers {
                streams,
                aggregates,
            },
        )
    }

    /// (Re-)registers what to probe for a RegionalStream.
    pub fn watch_stream(
        &self,
        obj: ObjectRef<RegionalStream>,
        conn: ResolvedConnection,
        topics: Vec<String>,
    ) {
        if let Ok(mut s) = self.state.write() {
            s.streams
                .insert(key(&obj), StreamTarget { obj, conn, topics });
        }
    }

    /// (Re-)registers what to probe for an AggregateCluster.
    pub fn watch_aggregate(
        &self,
        obj: ObjectRef<AggregateCluster>,
        conn: ResolvedConnection,
        region: String,
        checkpoint_topic: String,
        routes: Vec<RouteTarget>,
    ) {
        if let Ok(mut s) = self.state.write() {
            s.aggregates.insert(
                key(&obj),
                AggregateTarget {
                    obj,
                    conn,
                    region,
                    checkpoint_topic,
                    routes,
                },
            );
        }
    }

    /// Stops probing for an object that is gone.
    pub fn forget_stream(&self, obj: &ObjectRef<RegionalStream>) {
        if let Ok(mut s) = self.state.write() {
            s.streams.remove(&key(obj));
            s.stream_obs.remove(&key(obj));
            s.reported_streams.remove(&key(obj));
        }
    }

    pub fn forget_aggregate(&self, obj: &ObjectRef<AggregateCluster>) {
        if let Ok(mut s) = self.state.write() {
            s.aggregates.remove(&key(obj));
            s.aggregate_obs.remove(&key(obj));
            s.reported_aggregates.remove(&key(obj));
        }
    }

    pub fn stream(&self, obj: &ObjectRef<RegionalStream>) -> Option<StreamObservation> {
        self.state
            .read()
            .ok()?
            .stream_obs
            .get(&key(obj))
            .map(|(o, _)| o.clone())
    }

    pub fn aggregate(&self, obj: &ObjectRef<AggregateCluster>) -> Option<AggregateObservation> {
        self.state
            .read()
            .ok()?
            .aggregate_obs
            .get(&key(obj))
            .cloned()
    }

    /// Probes every registered target every `interval` until the task is dropped. Targets
    /// whose object left the caches (deleted) are dropped, with their Kafka clients.
    pub async fn run(
        self,
        admin: Arc<dyn ClusterAdmin>,
        interval: Duration,
        streams: Store<DeserializeGuard<RegionalStream>>,
        aggregates: Store<DeserializeGuard<AggregateCluster>>,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.retain(
                |o| streams.get(&guarded(o)).is_some(),
                |o| aggregates.get(&guarded(o)).is_some(),
            );
            if let Ok(s) = self.state.read() {
                let mut in_use: Vec<&ResolvedConnection> =
                    s.streams.values().map(|t| &t.conn).collect();
                for a in s.aggregates.values() {
                    in_use.push(&a.conn);
                    in_use.extend(a.routes.iter().map(|r| &r.source));
                }
                admin.retain_connections(&in_use);
            }
            self.probe_once(admin.as_ref()).await;
        }
    }

    /// Forgets targets whose object no longer exists.
    pub fn retain(
        &self,
        stream_alive: impl Fn(&ObjectRef<RegionalStream>) -> bool,
        aggregate_alive: impl Fn(&ObjectRef<AggregateCluster>) -> bool,
    ) {
        if let Ok(mut s) = self.state.write() {
            let gone: Vec<String> = s
                .streams
                .iter()
                .filter(|(_, t)| !stream_alive(&t.obj))
                .map(|(k, _)| k.clone())
                .collect();
            for k in gone {
                s.streams.remove(&k);
                s.stream_obs.remove(&k);
                s.reported_streams.remove(&k);
            }
            let gone: Vec<String> = s
                .aggregates
                .iter()
                .filter(|(_, t)| !aggregate_alive(&t.obj))
                .map(|(k, _)| k.clone())
                .collect();
            for k in gone {
                s.aggregates.remove(&k);
                s.aggregate_obs.remove(&k);
                s.reported_aggregates.remove(&k);
            }
        }
    }

    /// One round over every target (public for tests).
    pub async fn probe_once(&self, admin: &dyn ClusterAdmin) {
        let (streams, aggregates): (Vec<StreamTarget>, Vec<AggregateTarget>) =
            match self.state.read() {
                Ok(s) => (
                    s.streams.values().cloned().collect(),
                    s.aggregates.values().cloned().collect(),
                ),
                Err(_) => return,
            };
        let stream_probes = streams.iter().map(|t| async move {
            let obs = match admin.end_offsets(&t.conn, &t.topics).await {
                Ok(end_offsets) => StreamObservation {
                    reach: Reach::Reachable,
                    end_offsets,
                    rates: BTreeMap::new(),
                },
                Err(e) => StreamObservation {
                    reach: Reach::Unreachable(e.message),
                    ..Default::default()
                },
            };
            (t, obs)
        });
        let aggregate_probes = aggregates
            .iter()
            .map(|t| async move { (t, probe_aggregate(admin, t).await) });
        let (stream_results, aggregate_results) = futures::join!(
            futures::future::join_all(stream_probes),
            futures::future::join_all(aggregate_probes)
        );

        let now = Instant::now();
        let Ok(mut state) = self.state.write() else {
            return;
        };
        for (t, mut obs) in stream_results {
            let k = key(&t.obj);
            let previous = state.stream_obs.get(&k);
            if let Some((prev, at)) = previous {
                let secs = now.duration_since(*at).as_secs_f64().max(0.001);
                for (topic, ends) in &obs.end_offsets {
                    if let Some(prev_ends) = prev.end_offsets.get(topic) {
                        let delta: i64 = ends.iter().sum::<i64>() - prev_ends.iter().sum::<i64>();
                        obs.rates
                            .insert(topic.clone(), (delta.max(0) as f64) / secs);
                    }
                }
            }
            // Reachability and the topics' shape (a topic appeared, partitions grew) matter at
            // once; offsets only as settled figures.
            let shape = |o: &StreamObservation| {
                (
                    o.reach.clone(),
                    o.end_offsets
                        .iter()
                        .map(|(t, e)| (t.clone(), e.len()))
                        .collect::<Vec<_>>(),
                )
            };
            let figures = Figures::Stream(obs.end_offsets.clone());
            let changed = match previous {
                None => true,
                Some((p, _)) => {
                    shape(p) != shape(&obs)
                        || figures_due(
                            Some(&Figures::Stream(p.end_offsets.clone())),
                            &figures,
                            state.reported_streams.get(&k),
                            now,
                        )
                }
            };
            state.stream_obs.insert(k.clone(), (obs, now));
            if changed {
                state.reported_streams.insert(k, (figures, now));
                let _ = self.stream_tx.unbounded_send(t.obj.clone());
            }
        }
        for (t, (mut obs, progress_lag)) in aggregate_results {
            for (route, ro) in obs.routes.iter_mut() {
                let caught_up = progress_lag.get(route).copied().flatten() == Some(0);
                if caught_up || !state.caught_up_at.contains_key(route) {
                    state.caught_up_at.insert(route.clone(), now);
                }
                if ro.lag_records.is_some() {
                    ro.lag_seconds = Some(if caught_up {
                        0.0
                    } else {
                        state
                            .caught_up_at
                            .get(route)
                            .map(|at| now.duration_since(*at).as_secs_f64().round())
                            .unwrap_or(0.0)
                    });
                }
            }
            let k = key(&t.obj);
            let lags = |o: &AggregateObservation| {
                Figures::Aggregate(
                    o.routes
                        .values()
                        .map(|r| r.lag_records.map(lag_scale))
                        .collect(),
                )
            };
            let figures = lags(&obs);
            let changed = match state.aggregate_obs.get(&k) {
                None => true,
                Some(p) => {
                    meaningful(p) != meaningful(&obs)
                        || figures_due(
                            Some(&lags(p)),
                            &figures,
                            state.reported_aggregates.get(&k),
                            now,
                        )
                }
            };
            state.aggregate_obs.insert(k.clone(), obs);
            if changed {
                state.reported_aggregates.insert(k, (figures, now));
                let _ = self.aggregate_tx.unbounded_send(t.obj.clone());
            }
        }
    }
}

/// The parts of an observation whose change deserves a status update at once: reachability,
/// whether a lag is known, and whether checkpoints are stale — not ages that tick every second
/// nor lags that move with every record (those are [`Figures`]).
/// `(route, source reach, lag known, checkpoints stale)`.
type RouteFingerprint = (String, Reach, bool, bool);

fn meaningful(o: &AggregateObservation) -> (Reach, Vec<RouteFingerprint>) {
    (
        o.reach.clone(),
        o.routes
            .iter()
            .map(|(k, r)| {
                (
                    k.clone(),
                    r.source_reach.clone(),
                    r.lag_records.is_some(),
                    r.last_checkpoint_age_seconds
                        .is_some_and(|a| a > STALE_CHECKPOINT),
                )
            })
            .collect(),
    )
}

async fn probe_aggregate(
    admin: &dyn ClusterAdmin,
    t: &AggregateTarget,
) -> (AggregateObservation, BTreeMap<String, Option<i64>>) {
    let mut obs = AggregateObservation::default();
    let mut lags = BTreeMap::new();
    let route_ids: Vec<String> = t
        .routes
        .iter()
        .map(|r| format!("{}->{}", r.source_region, t.region))
        .collect();
    let progress = admin
        .route_progress(&t.conn, &t.checkpoint_topic, &route_ids)
        .await;
    obs.reach = match &progress {
        Ok(_) => Reach::Reachable,
        Err(e) => Reach::Unreachable(e.message.clone()),
    };
    let sources = t
        .routes
        .iter()
        .map(|r| async move { (r, admin.end_offsets(&r.source, &r.topics).await) });
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    for (r, ends) in futures::future::join_all(sources).await {
        let mut ro = RouteObservation::default();
        let route_id = format!("{}->{}", r.source_region, t.region);
        let p = progress.as_ref().ok().and_then(|p| p.get(&route_id));
        match ends {
            Ok(ends) => {
                ro.source_reach = Reach::Reachable;
                if let Ok(all) = &progress {
                    let done = all.get(&route_id).cloned().unwrap_or_default();
                    let mut lag = 0i64;
                    for (topic, partitions) in &ends {
                        for (i, end) in partitions.iter().enumerate() {
                            let next = done
                                .next_source_offsets
                                .get(&(topic.clone(), i as i32))
                                .copied()
                                .unwrap_or(0);
                            lag += (end - next).max(0);
                        }
                    }
                    ro.lag_records = Some(lag);
                }
            }
            Err(e) => ro.source_reach = Reach::Unreachable(e.message),
        }
        ro.last_checkpoint_ms = p.and_then(|p| p.last_checkpoint_ms);
        ro.last_checkpoint_age_seconds = p
            .and_then(|p| p.last_checkpoint_ms)
            .map(|ms| ((now_ms - ms).max(0) as f64 / 1000.0).round());
        lags.insert(r.deployment.clone(), ro.lag_records);
        obs.routes.insert(r.deployment.clone(), ro);
    }
    (obs, lags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lag_counts_by_its_order_of_magnitude() {
        let scales: Vec<u32> = [0, 1, 2, 3, 4, 7, 8, 1000].map(lag_scale).to_vec();
        assert_eq!(scales, vec![0, 1, 2, 2, 3, 3, 4, 10]);
    }

    #[test]
    fn figures_refresh_the_status_once_settled_and_at_most_every_30_s() {
        let t0 = Instant::now();
        let lags = |l: &[i64]| Figures::Aggregate(l.iter().map(|l| Some(lag_scale(*l))).collect());
        let reported = (lags(&[0]), t0);
        let later = t0 + FIGURES_REFRESH + Duration::from_secs(1);
        // Paused with 10 records waiting: settled and different, a refresh.
        assert!(figures_due(
            Some(&lags(&[10])),
            &lags(&[10]),
            Some(&reported),
            later
        ));
        // Still moving: no refresh.
        assert!(!figures_due(
            Some(&lags(&[3])),
            &lags(&[10]),
            Some(&reported),
            later
        ));
        // Settled but too soon after the last refresh.
        assert!(!figures_due(
            Some(&lags(&[10])),
            &lags(&[10]),
            Some(&reported),
            t0 + Duration::from_secs(5)
        ));
        // Steady traffic: 5 then 6 waiting is the same order of magnitude as the 4 reported.
        let steady = (lags(&[4]), t0);
        assert!(!figures_due(
            Some(&lags(&[5])),
            &lags(&[6]),
            Some(&steady),
            later
        ));
        assert!(!figures_due(
            Some(&lags(&[6])),
            &lags(&[6]),
            Some(&steady),
            later
        ));
    }
}
