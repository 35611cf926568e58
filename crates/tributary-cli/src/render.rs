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
        "Tributary in {scope} at {} — from the resources' status; ages are as of each status write (OBSERVED)\n",
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
            Cell::new("unknown", Tone::Warn)
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
        .chain(t.groups.iter().map(|g| &g.ready));
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
        if let Some(b) = &g.failover_blocked {
            out.push(format!(
                "ConsumerGroupFailover {}{}: FailoverBlocked ({}): {}",
                prefix(&g.namespace),
                g.name,
                b.reason,
                b.message
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
