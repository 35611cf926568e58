//! The subcommands: each reads through [`crate::cluster`], decides and renders with the pure
//! modules, and writes to stdout.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use tributary_api::ConsumerGroupFailover;

use crate::cluster::{Connection, explain_list_error};
use crate::failover::{
    FIELD_MANAGER, Goal, MoveWatch, Request, Step, active_region_owners, conflict_refusal, decide,
    describe_owners, failback_target,
};
use crate::plan::{PlanView, render_plan};
use crate::render::{ColourChoice, colour_enabled, render_status};
use crate::topology::Topology;

/// `-o`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Tables for people.
    Table,
    /// The documented JSON shape (docs/cli.md).
    Json,
}

/// `status`: the whole topology of a namespace (or all) at a glance.
pub async fn status(
    conn: &Connection,
    all_namespaces: bool,
    output: OutputFormat,
    colour: ColourChoice,
) -> Result<()> {
    let snapshot = conn.snapshot(&conn.scope(all_namespaces)).await?;
    let topology = Topology::from_snapshot(&snapshot);
    let text = match output {
        OutputFormat::Json => {
            let mut s = serde_json::to_string_pretty(&topology)?;
            s.push('\n');
            s
        }
        OutputFormat::Table => {
            let stdout = std::io::stdout();
            let colour = colour_enabled(
                colour,
                std::env::var("NO_COLOR").ok().as_deref(),
                stdout.is_terminal(),
            );
            render_status(&topology, colour)
        }
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// How `failover` / `failback` behave.
#[derive(Clone, Debug)]
pub struct MoveOptions {
    /// Take `spec.activeRegion` from another field manager.
    pub force: bool,
    /// Wait until the move finished (or the timeout passed).
    pub wait: bool,
    pub timeout: Duration,
}

/// `failover GROUP --to REGION` (`to: Some`) and `failback GROUP` (`to: None`): set
/// `spec.activeRegion` by server-side apply and follow the move in status.
pub async fn move_group(
    conn: &Connection,
    name: &str,
    to: Option<&str>,
    options: &MoveOptions,
) -> Result<()> {
    let ns = &conn.default_namespace;
    let api: Api<ConsumerGroupFailover> = Api::namespaced(conn.client.clone(), ns);
    let cgf = get_group(&api, name, ns).await?;
    let to = match to {
        Some(to) => to.to_string(),
        None => failback_target(&cgf)?,
    };
    let start = Instant::now();
    let say = |line: &str| println!("[{:>5.1}s] {line}", start.elapsed().as_secs_f64());
    match decide(&cgf, &to)? {
        Request::AlreadyActive { region, epoch } => {
            println!(
                "{name} is already active in {region} at epoch {}, and spec.activeRegion says so: nothing to do",
                epoch
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "none".into())
            );
            Ok(())
        }
        Request::WaitForPending { to, epoch } => {
            say(&format!(
                "a move of {name} to {to} (epoch {epoch}) is under way already; following it"
            ));
            let goal = Goal::Move {
                to,
                from_epoch: Some(epoch - 1),
            };
            follow(&api, name, goal, cgf.metadata.generation, options, &say).await
        }
        Request::Set { to, moves } => {
            let generation = set_active_region(&api, &cgf, &to, options.force, &say).await?;
            let goal = if moves {
                Goal::Move {
                    to,
                    from_epoch: cgf.status.as_ref().and_then(|s| s.epoch),
                }
            } else {
                Goal::Acknowledge { to }
            };
            follow(&api, name, goal, generation, options, &say).await
        }
        Request::AcknowledgeThenSet { current, to } => {
            say(&format!(
                "spec.activeRegion already says {to} and was acted on, but {name} is active in \
                 {current} (an automatic failover moved it): setting {current} first, then {to}"
            ));
            let generation = set_active_region(&api, &cgf, &current, options.force, &say).await?;
            // The second edit only moves once the first was acknowledged: always wait for it.
            let first = MoveOptions {
                wait: true,
                ..options.clone()
            };
            let goal = Goal::Acknowledge {
                to: current.clone(),
            };
            follow(&api, name, goal, generation, &first, &say).await?;
            let cgf = get_group(&api, name, ns).await?;
            let generation = set_active_region(&api, &cgf, &to, options.force, &say).await?;
            let goal = Goal::Move {
                to,
                from_epoch: cgf.status.as_ref().and_then(|s| s.epoch),
            };
            follow(&api, name, goal, generation, options, &say).await
        }
    }
}

pub(crate) async fn get_group(
    api: &Api<ConsumerGroupFailover>,
    name: &str,
    ns: &str,
) -> Result<ConsumerGroupFailover> {
    match api.get(name).await {
        Ok(cgf) => Ok(cgf),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(anyhow!(
            "no ConsumerGroupFailover {name} in namespace {ns} (kubectl tributary status -n {ns} lists them)"
        )),
        Err(e) => Err(explain_list_error(e)),
    }
}

/// Server-side applies `spec.activeRegion: to` as [`FIELD_MANAGER`]; returns the generation
/// of the edit. A conflict (another manager owns the field) is refused unless `force`.
pub(crate) async fn set_active_region(
    api: &Api<ConsumerGroupFailover>,
    cgf: &ConsumerGroupFailover,
    to: &str,
    force: bool,
    say: &impl Fn(&str),
) -> Result<Option<i64>> {
    let name = cgf.name_any();
    let owners = active_region_owners(cgf);
    let patch = serde_json::json!({
        "apiVersion": ConsumerGroupFailover::api_version(&()),
        "kind": ConsumerGroupFailover::kind(&()),
        "metadata": {"name": name},
        "spec": {"activeRegion": to},
    });
    let mut params = PatchParams::apply(FIELD_MANAGER);
    if force {
        params = params.force();
    }
    let applied = match api.patch(&name, &params, &Patch::Apply(patch)).await {
        Ok(applied) => applied,
        Err(kube::Error::Api(s)) if s.code == 409 => {
            return Err(conflict_refusal(&name, to, &owners).into());
        }
        Err(kube::Error::Api(s)) if s.code == 422 => {
            return Err(anyhow!(
                "the API server refused spec.activeRegion: {to} for {name}: {}",
                s.message
            ));
        }
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("setting {name}'s spec.activeRegion"))
            );
        }
    };
    let changed = cgf.spec.active_region.as_deref() != Some(to);
    if force && changed && !owners.is_empty() {
        eprintln!(
            "warning: took spec.activeRegion of {name} from {}: change activeRegion to {to} in Git too, or it will be set back",
            describe_owners(&owners)
        );
    }
    say(&format!(
        "spec.activeRegion of {name} set to {to} (field manager {FIELD_MANAGER}, generation {})",
        applied
            .metadata
            .generation
            .map(|g| g.to_string())
            .unwrap_or_else(|| "?".into())
    ));
    Ok(applied.metadata.generation)
}

/// Polls the group until `goal`, printing each change; fails after the timeout.
async fn follow(
    api: &Api<ConsumerGroupFailover>,
    name: &str,
    goal: Goal,
    generation: Option<i64>,
    options: &MoveOptions,
    say: &impl Fn(&str),
) -> Result<()> {
    if !options.wait {
        say(&format!(
            "not waiting (--no-wait); follow it with: kubectl tributary status -n {}",
            api_namespace(api)
        ));
        return Ok(());
    }
    let deadline = Instant::now() + options.timeout;
    let mut watch = MoveWatch::new(goal.clone(), generation);
    loop {
        let cgf = api
            .get(name)
            .await
            .with_context(|| format!("reading ConsumerGroupFailover {name}"))?;
        match watch.observe(&cgf) {
            Step::Done(lines) => {
                lines.iter().for_each(|l| say(l));
                return Ok(());
            }
            Step::Waiting(lines) => lines.iter().for_each(|l| say(l)),
        }
        if Instant::now() >= deadline {
            let what = match goal {
                Goal::Move { to, .. } => format!("{name} to become active in {to}"),
                Goal::Acknowledge { to } => format!("the operator to acknowledge {to} for {name}"),
            };
            return Err(anyhow!(
                "timed out after {}s waiting for {what}; the operator may still carry it out \
                 (kubectl tributary status)",
                options.timeout.as_secs()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn api_namespace(api: &Api<ConsumerGroupFailover>) -> String {
    api.namespace().unwrap_or("default").to_string()
}

const POLL: Duration = Duration::from_millis(250);

/// `plan GROUP`: the move under way and its translation, and the last move.
pub async fn plan(conn: &Connection, name: &str, output: OutputFormat) -> Result<()> {
    let ns = &conn.default_namespace;
    let api: Api<ConsumerGroupFailover> = Api::namespaced(conn.client.clone(), ns);
    let cgf = get_group(&api, name, ns).await?;
    let text = match output {
        OutputFormat::Json => {
            let mut s = serde_json::to_string_pretty(&PlanView::of(&cgf))?;
            s.push('\n');
            s
        }
        OutputFormat::Table => render_plan(&cgf, k8s_openapi::jiff::Timestamp::now()),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// `translate GROUP --to REGION`: a dry run of the move's translation (nothing committed).
/// `Ok(false)` when the plan refuses partitions (their checkpoints contradict): a move would
/// not commit them.
pub async fn translate(
    conn: &Connection,
    name: &str,
    to: &str,
    bootstrap: &[String],
    catch_up_timeout: Duration,
    output: OutputFormat,
) -> Result<bool> {
    use kube::api::ListParams;
    use tributary_api::{AggregateCluster, RegionalStream};

    let ns = &conn.default_namespace;
    let overrides = crate::translate::parse_overrides(bootstrap)?;
    let api: Api<ConsumerGroupFailover> = Api::namespaced(conn.client.clone(), ns);
    let cgf = get_group(&api, name, ns).await?;
    let lp = ListParams::default();
    let aggregates: Api<AggregateCluster> = Api::namespaced(conn.client.clone(), ns);
    let streams: Api<RegionalStream> = Api::namespaced(conn.client.clone(), ns);
    let (aggregates, streams) =
        tokio::try_join!(aggregates.list(&lp), streams.list(&lp)).map_err(explain_list_error)?;
    let inputs = crate::translate::inputs(&cgf, &aggregates.items, &streams.items, to, &overrides)?;
    let (from, to) = tokio::try_join!(
        crate::translate::client_settings(&conn.client, ns, &inputs.from),
        crate::translate::client_settings(&conn.client, ns, &inputs.to),
    )?;
    let cfg = crate::translate::sync_config(&inputs, from, to, catch_up_timeout);
    let dry = crate::translate::dry_run(cfg).await?;
    let view = crate::translate::TranslateView::new(&inputs, &dry);
    let text = match output {
        OutputFormat::Json => {
            let mut s = serde_json::to_string_pretty(&view)?;
            s.push('\n');
            s
        }
        OutputFormat::Table => view.render(),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    if !view.usable() {
        eprintln!(
            "error: {} partition(s) refused (their checkpoints contradict): a move would not commit them",
            view.contradicted
        );
    }
    Ok(view.usable())
}
