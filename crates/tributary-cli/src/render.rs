//! `status` as text: three tables (regions, routes, groups) and the problems behind anything
//! not Ready. Pure: a [`Topology`] in, a `String` out. Colour is decided by the caller
//! ([`colour_enabled`]) and only ever adds escape codes around cells.

use crate::table::{Cell, Table, Tone};
use crate::topology::{
    Freshness, GroupView, Health, ObjectView, Observation, RegionHealth, RegionView, RouteView,
    Topology,
};

/// `--color`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ColourChoice {
    /// Colour when stdout is a terminal and `NO_COLOR` is unset or empty.
    Auto,
    Always,
    Never,
}

/// Whether to colour: `auto` colours only a terminal, and `NO_COLOR` (non-empty) turns it off
/// (no-color.org); `always`/`never` win over both.
pub fn colour_enabled(choice: ColourChoice, no_color: Option<&str>, stdout_is_tty: bool) -> bool {
    match choice {
        ColourChoice::Always => true,
        ColourChoice::Never => false,
        ColourChoice::Auto => stdout_is_tty && no_color.is_none_or(str::is_empty),
    }
}

/// The whole `status` text.
pub fn render_status(t: &Topology, colour: bool) -> String {
    let scope = match &t.namespace {
        Some(ns) => format!("namespace {ns}"),
        None => "all namespaces".to_string(),
    };
    if t.regions.is_empty() && t.groups.is_empty() {
        return format!("No Tributary resources found in {scope}.\n");
    }
    let all = t.all_namespaces();
    let mut out = String::new();
    out.push_str(&format!(
        "Tributary in {scope} at {} (from the resources' status; OBSERVED = age of the status)\n",
        t.observed_at
    ));

    out.push_str("\nREGIONS\n");
    out.push_str(&regions_table(&t.regions, all).render(colour));

    out.push_str("\nROUTES\n");
    let routes = routes_table(&t.routes, all);
    if routes.is_empty() {
        out.push_str("(none reported)\n");
    } else {
        out.push_str(&routes.render(colour));
    }

    out.push_str("\nGROUPS\n");
    let groups = groups_table(&t.groups, all);
    if groups.is_empty() {
        out.push_str("(none)\n");
    } else {
        out.push_str(&groups.render(colour));
    }

    let problems = problems(t);
    if !problems.is_empty() {
        out.push_str("\nPROBLEMS\n");
        for p in problems {
            out.push_str(&format!("- {p}\n"));
        }
    }
    out
}

fn with_namespace(all: bool, ns: &str, mut cells: Vec<Cell>) -> Vec<Cell> {
    if all {
        cells.insert(0, Cell::plain(ns));
    }
    cells
}

fn headers(all: bool, rest: &[&str]) -> Vec<String> {
    let mut h: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
    if all {
        h.insert(0, "NAMESPACE".into());
    }
    h
}

fn regions_table(regions: &[RegionView], all: bool) -> Table {
    let mut t = Table::new(headers(
        all,
        &[
            "REGION",
            "HEALTH",
            "REGIONAL",
            "AGGREGATE",
            "ROUTES IN",
            "GROUP PROBES",
        ],
    ));
    for r in regions {
        let (health, tone) = match r.health {
            RegionHealth::Healthy => ("Healthy", Tone::Good),
            RegionHealth::Degraded => ("Degraded", Tone::Warn),
            RegionHealth::Down => ("Down", Tone::Bad),
            RegionHealth::Unknown => ("Unknown", Tone::Warn),
        };
        let routes = if r.aggregate_clusters.is_empty() {
            Cell::new("-", Tone::Dim)
        } else if r.routes_in_total == 0 {
            let all_current = r
                .aggregate_clusters
                .iter()
                .all(|a| a.observation.freshness == Freshness::Current);
            if all_current {
                Cell::new("none", Tone::Warn)
            } else {
                Cell::new("unknown", Tone::Warn)
            }
        } else {
            let tone = if r.routes_in_ready == r.routes_in_total {
                Tone::Good
            } else {
                Tone::Bad
            };
            Cell::new(
                format!("{}/{} Ready", r.routes_in_ready, r.routes_in_total),
                tone,
            )
        };
        let probes = &r.group_probes;
        let probes = match (probes.healthy, probes.unhealthy) {
            (0, 0) => Cell::new("-", Tone::Dim),
            (h, 0) => Cell::new(format!("{h} answering"), Tone::Good),
            (h, u) => Cell::new(
                format!(
                    "{u} failing ({} failed probes){}",
                    probes.max_failed_probes,
                    if h > 0 {
                        format!(", {h} answering")
                    } else {
                        String::new()
                    }
                ),
                Tone::Bad,
            ),
        };
        t.row(with_namespace(
            all,
            &r.namespace,
            vec![
                Cell::plain(&r.region),
                Cell::new(health, tone),
                objects_cell(&r.regional_streams),
                objects_cell(&r.aggregate_clusters),
                routes,
                probes,
            ],
        ));
    }
    t
}

/// One object: its health; several: each `name=health`.
fn objects_cell(objects: &[ObjectView]) -> Cell {
    match objects {
        [] => Cell::new("-", Tone::Dim),
        [one] => health_cell(one),
        many => {
            let tone = many
                .iter()
                .map(|o| health_tone(o.health))
                .max_by_key(|t| tone_rank(*t))
                .unwrap_or(Tone::Plain);
            let text = many
                .iter()
                .map(|o| format!("{}={}", o.name, health_text(o)))
                .collect::<Vec<_>>()
                .join(", ");
            Cell::new(text, tone)
        }
    }
}

fn tone_rank(t: Tone) -> u8 {
    match t {
        Tone::Plain | Tone::Dim => 0,
        Tone::Good => 1,
        Tone::Warn => 2,
        Tone::Bad => 3,
    }
}

fn health_tone(h: Health) -> Tone {
    match h {
        Health::Ready => Tone::Good,
        Health::NotReady => Tone::Bad,
        Health::Unknown => Tone::Warn,
    }
}

/// `Ready`, `NotReady (Reason)`, `Unknown (no status)`, `Unknown (stale: gen 1 < 2, was Ready)`.
fn health_text(o: &ObjectView) -> String {
    match o.observation.freshness {
        Freshness::Missing => "Unknown (no status)".to_string(),
        Freshness::Stale => format!(
            "Unknown ({}{})",
            stale_text(&o.observation),
            o.last_known_health
                .map(|h| format!(", was {h:?}"))
                .unwrap_or_default()
        ),
        Freshness::Current => match (o.health, &o.reason) {
            (Health::Ready, _) => "Ready".to_string(),
            (h, Some(reason)) => format!("{h:?} ({reason})"),
            (h, None) => format!("{h:?}"),
        },
    }
}

fn stale_text(o: &Observation) -> String {
    format!(
        "stale: observed generation {} < {}",
        o.observed_generation
            .map(|g| g.to_string())
            .unwrap_or_else(|| "none".into()),
        o.generation
            .map(|g| g.to_string())
            .unwrap_or_else(|| "?".into())
    )
}

fn health_cell(o: &ObjectView) -> Cell {
    Cell::new(health_text(o), health_tone(o.health))
}

fn routes_table(routes: &[RouteView], all: bool) -> Table {
    let mut t = Table::new(headers(
        all,
        &[
            "ROUTE",
            "AGGREGATE",
            "STATE",
            "REPLICAS",
            "LAG",
            "LAG AGE",
            "CHECKPOINT AGE",
            "OBSERVED",
        ],
    ));
    for r in routes {
        let state = if r.state == "Unknown" {
            Cell::new(
                format!(
                    "Unknown ({}, was {})",
                    stale_text(&r.observation),
                    r.last_known_state
                ),
                Tone::Warn,
            )
        } else {
            let tone = match r.state.as_str() {
                "Ready" => Tone::Good,
                "Pending" => Tone::Warn,
                _ => Tone::Bad,
            };
            Cell::new(&r.state, tone)
        };
        t.row(with_namespace(
            all,
            &r.namespace,
            vec![
                Cell::plain(format!("{}→{}", r.source_region, r.region)),
                Cell::plain(&r.aggregate_cluster),
                state,
                Cell::plain(r.ready_replicas.to_string()),
                optional(r.lag_records.map(|l| l.to_string())),
                optional(r.lag_seconds.map(age)),
                optional(r.last_checkpoint_age_seconds.map(age)),
                observed_cell(&r.observation),
            ],
        ));
    }
    t
}

fn optional(v: Option<String>) -> Cell {
    match v {
        Some(v) => Cell::plain(v),
        None => Cell::new("unknown", Tone::Warn),
    }
}

fn observed_cell(o: &Observation) -> Cell {
    match o.status_age_seconds {
        Some(s) => Cell::new(format!("{} ago", age(s)), Tone::Dim),
        None if o.freshness == Freshness::Missing => Cell::new("never", Tone::Warn),
        None => Cell::new("unknown", Tone::Warn),
    }
}

fn groups_table(groups: &[GroupView], all: bool) -> Table {
    let mut t = Table::new(headers(
        all,
        &[
            "GROUP",
            "GROUP ID",
            "MODE",
            "ACTIVE",
            "EPOCH",
            "STATE",
            "STANDBY SYNC AGE",
            "OBSERVED",
        ],
    ));
    for g in groups {
        let current = g.ready.observation.freshness == Freshness::Current;
        let mark = |v: Option<String>| match (v, current) {
            (Some(v), true) => Cell::plain(v),
            (Some(v), false) => Cell::new(format!("{v} (stale)"), Tone::Warn),
            (None, _) => Cell::new("unknown", Tone::Warn),
        };
        t.row(with_namespace(
            all,
            &g.namespace,
            vec![
                Cell::plain(&g.name),
                Cell::plain(&g.group_id),
                Cell::plain(&g.mode),
                mark(g.active_region.clone()),
                mark(g.epoch.map(|e| e.to_string())),
                group_state(g),
                standby_sync(g),
                observed_cell(&g.ready.observation),
            ],
        ));
    }
    t
}

fn group_state(g: &GroupView) -> Cell {
    if let Some(m) = &g.pending_move
        && g.ready.observation.freshness == Freshness::Current
    {
        let step = g
            .failing_over
            .as_ref()
            .map(|c| format!(" {}", c.reason))
            .unwrap_or_default();
        return Cell::new(
            format!(
                "FailingOver{step} ({}→{}, epoch {})",
                m.from.as_deref().unwrap_or("none"),
                m.to,
                m.epoch
            ),
            Tone::Warn,
        );
    }
    if let Some(b) = &g.failover_blocked {
        return Cell::new(format!("Blocked ({})", b.reason), Tone::Bad);
    }
    health_cell(&g.ready)
}

/// Each standby region with the age of its offsets: `west 2s, central never`.
fn standby_sync(g: &GroupView) -> Cell {
    let active = g.active_region.as_deref();
    let standbys: Vec<_> = g
        .regions
        .iter()
        .filter(|r| Some(r.region.as_str()) != active)
        .collect();
    if standbys.is_empty() {
        return Cell::new("-", Tone::Dim);
    }
    let mut tone = Tone::Plain;
    let parts: Vec<String> = standbys
        .iter()
        .map(|r| match r.sync_age_seconds {
            Some(s) => format!("{} {}", r.region, age(s)),
            None => {
                tone = Tone::Warn;
                format!("{} never", r.region)
            }
        })
        .collect();
    Cell::new(parts.join(", "), tone)
}

/// One line per thing that is not Ready, with the operator's message.
fn problems(t: &Topology) -> Vec<String> {
    let mut out = Vec::new();
    let prefix = |ns: &str| {
        if t.all_namespaces() {
            format!("{ns}/")
        } else {
            String::new()
        }
    };
    let objects = t
        .regions
        .iter()
        .flat_map(|r| r.regional_streams.iter().chain(&r.aggregate_clusters))
        // A group that is moving is shown as moving (GROUPS), not as a problem.
        .chain(
            t.groups
                .iter()
                .map(|g| &g.ready)
                .filter(|o| o.reason.as_deref() != Some("FailingOver")),
        );
    for o in objects {
        match o.observation.freshness {
            Freshness::Missing => out.push(format!(
                "{} {}{}: no status yet (is the operator running and watching this namespace?)",
                o.kind,
                prefix(&o.namespace),
                o.name
            )),
            Freshness::Stale => out.push(format!(
                "{} {}{}: status is for an older spec ({}); the operator has not caught up",
                o.kind,
                prefix(&o.namespace),
                o.name,
                stale_text(&o.observation)
            )),
            Freshness::Current if o.health != Health::Ready => out.push(format!(
                "{} {}{}: {}{}",
                o.kind,
                prefix(&o.namespace),
                o.name,
                health_text(o),
                o.message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            )),
            Freshness::Current => {}
        }
    }
    for r in &t.routes {
        if r.state != "Ready"
            && r.state != "Unknown"
            && let Some(m) = &r.message
        {
            out.push(format!(
                "route {}→{} ({}{}): {m}",
                r.source_region,
                r.region,
                prefix(&r.namespace),
                r.deployment
            ));
        }
    }
    for g in &t.groups {
        let already_said = |c: &crate::topology::ConditionView| {
            g.ready.reason.as_deref() == Some(c.reason.as_str())
                && g.ready.message.as_deref().unwrap_or_default() == c.message
        };
        if let Some(b) = g.failover_blocked.as_ref().filter(|b| !already_said(b)) {
            out.push(format!(
                "ConsumerGroupFailover {}{}: FailoverBlocked ({}): {}",
                prefix(&g.namespace),
                g.name,
                b.reason,
                b.message
            ));
        }
        if let Some(d) = &g.degraded {
            out.push(format!(
                "ConsumerGroupFailover {}{}: Degraded ({}): {}",
                prefix(&g.namespace),
                g.name,
                d.reason,
                d.message
            ));
        }
    }
    out
}

/// `0s`, `45s`, `3m12s`, `2h05m`, `3d4h`.
pub fn age(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{edit, healthy_yaml, snapshot};

    fn plain(docs: &[String]) -> String {
        render_status(&Topology::from_snapshot(&snapshot(docs)), false)
    }

    fn line_of<'a>(text: &'a str, start: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line starting with {start:?} in\n{text}"))
    }

    #[test]
    fn a_healthy_topology_renders_every_region_route_and_group() {
        let expected = "\
Tributary in namespace demo at 2026-12-01T12:00:10Z (from the resources' status; OBSERVED = age of the status)

REGIONS
REGION   HEALTH    REGIONAL   AGGREGATE   ROUTES IN   GROUP PROBES
east     Healthy   Ready      Ready       2/2 Ready   1 answering
west     Healthy   Ready      Ready       2/2 Ready   1 answering

ROUTES
ROUTE       AGGREGATE   STATE   REPLICAS   LAG   LAG AGE   CHECKPOINT AGE   OBSERVED
east→east   east        Ready   1          0     0s        1s               10s ago
west→east   east        Ready   1          4     0s        2s               10s ago
east→west   west        Ready   1          0     0s        1s               10s ago
west→west   west        Ready   1          0     0s        1s               10s ago

GROUPS
GROUP     GROUP ID   MODE            ACTIVE   EPOCH   STATE   STANDBY SYNC AGE   OBSERVED
billing   billing    ActivePassive   east     3       Ready   west 2s            1m10s ago
";
        assert_eq!(plain(&healthy_yaml()), expected);
    }

    #[test]
    fn colour_only_wraps_cells_and_plain_text_has_no_escapes() {
        let t = Topology::from_snapshot(&snapshot(&healthy_yaml()));
        let coloured = render_status(&t, true);
        assert!(coloured.contains("\x1b[32mHealthy\x1b[0m"));
        let plain = render_status(&t, false);
        assert!(!plain.contains('\x1b'));
        assert_eq!(crate::table::tests::strip_ansi(&coloured), plain);
    }

    #[test]
    fn colour_is_off_when_not_a_terminal_or_no_color_is_set() {
        use ColourChoice::*;
        assert!(colour_enabled(Auto, None, true));
        assert!(!colour_enabled(Auto, None, false), "piped: plain");
        assert!(!colour_enabled(Auto, Some("1"), true), "NO_COLOR wins");
        assert!(
            colour_enabled(Auto, Some(""), true),
            "empty NO_COLOR is unset"
        );
        assert!(colour_enabled(Always, Some("1"), false));
        assert!(!colour_enabled(Never, None, true));
    }

    #[test]
    fn a_missing_status_is_unknown_never_healthy() {
        let mut docs = healthy_yaml();
        edit(&mut docs, "AggregateCluster", "west", |v| {
            v.as_mapping_mut().expect("map").remove("status");
        });
        let text = plain(&docs);
        assert_eq!(
            line_of(&text, "west "),
            "west     Unknown   Ready      Unknown (no status)   unknown     1 answering"
        );
        assert!(text.contains(
            "- AggregateCluster west: no status yet (is the operator running and watching this namespace?)"
        ));
        assert!(!text.contains("→west"), "no routes are invented:\n{text}");
    }

    #[test]
    fn a_stale_status_is_unknown_and_names_the_last_known_state() {
        let mut docs = healthy_yaml();
        edit(&mut docs, "AggregateCluster", "east", |v| {
            v["metadata"]["generation"] = 2.into();
        });
        let text = plain(&docs);
        assert!(
            line_of(&text, "east ").contains(
                "Unknown   Ready      Unknown (stale: observed generation 1 < 2, was Ready)   unknown"
            ),
            "{text}"
        );
        assert!(
            line_of(&text, "west→east")
                .contains("Unknown (stale: observed generation 1 < 2, was Ready)"),
            "{text}"
        );
    }

    #[test]
    fn a_stale_group_marks_active_region_and_epoch_as_stale() {
        let mut docs = healthy_yaml();
        edit(&mut docs, "ConsumerGroupFailover", "billing", |v| {
            v["metadata"]["generation"] = 3.into();
        });
        let text = plain(&docs);
        let line = line_of(&text, "billing ");
        assert!(line.contains("east (stale)   3 (stale)"), "{line}");
        assert!(line.contains("Unknown (stale"), "{line}");
        // A stale group's probes say nothing current about the regions.
        assert!(line_of(&text, "east ").ends_with("2/2 Ready   -"), "{text}");
    }

    #[test]
    fn a_failing_probe_marks_the_region_down_and_says_why() {
        let mut docs = healthy_yaml();
        edit(&mut docs, "ConsumerGroupFailover", "billing", |v| {
            v["status"]["regions"][1]["healthy"] = false.into();
            v["status"]["regions"][1]["failedProbes"] = 4.into();
        });
        edit(&mut docs, "AggregateCluster", "west", |v| {
            v["status"]["conditions"][0] = serde_yaml::from_str(
                r#"{type: Ready, status: "False", reason: ClusterUnreachable, message: "kafka-agg-west:9092: connection refused", lastTransitionTime: "2026-12-01T12:00:00Z"}"#,
            )
            .expect("condition");
            v["status"]["routes"][0]["state"] = "Degraded".into();
            v["status"]["routes"][0]["message"] = "aggregate unreachable".into();
        });
        let text = plain(&docs);
        assert_eq!(
            line_of(&text, "west "),
            "west     Down      Ready      NotReady (ClusterUnreachable)   1/2 Ready   1 failing (4 failed probes)"
        );
        assert!(line_of(&text, "east→west").contains("Degraded"));
        assert!(text.contains(
            "- AggregateCluster west: NotReady (ClusterUnreachable): kafka-agg-west:9092: connection refused"
        ));
        assert!(text.contains("- route east→west (west-from-east): aggregate unreachable"));
    }

    #[test]
    fn a_move_under_way_shows_its_step_and_ends() {
        let mut docs = healthy_yaml();
        edit(&mut docs, "ConsumerGroupFailover", "billing", |v| {
            v["status"]["conditions"][1] = serde_yaml::from_str(
                r#"{type: FailingOver, status: "True", reason: Draining, message: "waiting for east", lastTransitionTime: "2026-12-01T12:00:00Z"}"#,
            )
            .expect("condition");
            v["status"]["pendingMove"] = serde_yaml::from_str(
                "{from: east, to: west, reason: SpecChanged, kind: Planned, epoch: 4}",
            )
            .expect("move");
        });
        let text = plain(&docs);
        assert!(
            line_of(&text, "billing ").contains("FailingOver Draining (east→west, epoch 4)"),
            "{text}"
        );
    }

    #[test]
    fn a_blocked_group_is_one_problem_with_its_reason_and_a_down_region_another() {
        let mut docs = healthy_yaml();
        edit(&mut docs, "ConsumerGroupFailover", "billing", |v| {
            let conditions = v["status"]["conditions"].as_sequence_mut().expect("list");
            conditions[0] = serde_yaml::from_str(
                r#"{type: Ready, status: "False", reason: FailoverBlocked, message: "west: offsets 45s old (maxSyncAge 30s)", lastTransitionTime: "2026-12-01T12:00:00Z"}"#,
            )
            .expect("condition");
            conditions.push(
                serde_yaml::from_str(r#"{type: FailoverBlocked, status: "True", reason: FailoverBlocked, message: "west: offsets 45s old (maxSyncAge 30s)", lastTransitionTime: "2026-12-01T12:00:00Z"}"#)
                    .expect("condition"),
            );
            conditions.push(
                serde_yaml::from_str(r#"{type: Degraded, status: "True", reason: RegionDown, message: "east: connection refused", lastTransitionTime: "2026-12-01T12:00:00Z"}"#)
                    .expect("condition"),
            );
        });
        let text = plain(&docs);
        let problems: Vec<&str> = text.lines().filter(|l| l.starts_with("- ")).collect();
        assert_eq!(
            problems,
            [
                "- ConsumerGroupFailover billing: NotReady (FailoverBlocked): west: offsets 45s old (maxSyncAge 30s)",
                "- ConsumerGroupFailover billing: Degraded (RegionDown): east: connection refused",
            ]
        );
        assert!(line_of(&text, "billing ").contains("Blocked (FailoverBlocked)"));
    }

    #[test]
    fn a_moving_group_is_not_listed_as_a_problem() {
        let mut docs = healthy_yaml();
        edit(&mut docs, "ConsumerGroupFailover", "billing", |v| {
            v["status"]["conditions"][0] = serde_yaml::from_str(
                r#"{type: Ready, status: "False", reason: FailingOver, message: "moving to west", lastTransitionTime: "2026-12-01T12:00:00Z"}"#,
            )
            .expect("condition");
        });
        assert!(!plain(&docs).contains("PROBLEMS"));
    }

    #[test]
    fn an_aggregate_with_no_routes_says_none() {
        let mut docs = healthy_yaml();
        edit(&mut docs, "AggregateCluster", "west", |v| {
            v["status"].as_mapping_mut().expect("map").remove("routes");
        });
        let text = plain(&docs);
        let line = line_of(&text, "west ");
        assert!(line.contains("   Ready       none   "), "{line}");
    }

    #[test]
    fn a_standby_that_never_synced_says_never() {
        let mut docs = healthy_yaml();
        edit(&mut docs, "ConsumerGroupFailover", "billing", |v| {
            v["status"]["regions"][1]
                .as_mapping_mut()
                .expect("map")
                .remove("lastSyncTime");
        });
        assert!(line_of(&plain(&docs), "billing ").contains("west never"));
    }

    #[test]
    fn all_namespaces_adds_a_namespace_column() {
        let mut s = snapshot(&healthy_yaml());
        s.scope = crate::snapshot::Scope::AllNamespaces;
        let text = render_status(&Topology::from_snapshot(&s), false);
        assert!(text.starts_with("Tributary in all namespaces"));
        assert!(text.contains("NAMESPACE   REGION   HEALTH"));
        assert!(text.contains("demo        billing   billing"));
    }

    #[test]
    fn nothing_found_says_so() {
        let text = plain(&[]);
        assert_eq!(text, "No Tributary resources found in namespace demo.\n");
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(age(0.4), "0s");
        assert_eq!(age(59.0), "59s");
        assert_eq!(age(192.0), "3m12s");
        assert_eq!(age(7500.0), "2h05m");
        assert_eq!(age(3.0 * 86400.0 + 4.0 * 3600.0), "3d4h");
        assert_eq!(age(-3.0), "0s");
    }
}
