//! `kubectl-tributary`: kubectl runs it for `kubectl tributary ...` when it is on PATH.

use clap::{Parser, Subcommand};
use tributary_cli::cluster::ConnectOptions;
use tributary_cli::commands::{self, OutputFormat};
use tributary_cli::render::ColourChoice;

/// Tributary's multi-region Kafka topology, from the resources' status.
#[derive(Debug, Parser)]
#[command(name = "kubectl tributary", version)]
struct Cli {
    #[command(flatten)]
    connect: ConnectOptions,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Regions and their health, routes with lag and checkpoint age, groups with active
    /// region, epoch and standby sync age.
    Status {
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
        /// Colour: auto (a terminal, unless NO_COLOR is set), always, never.
        #[arg(long = "color", value_enum, default_value_t = ColourChoice::Auto)]
        colour: ColourChoice,
    },
    /// Move a group's active region: sets spec.activeRegion by server-side apply (field
    /// manager kubectl-tributary) and follows the move in status until it finished.
    Failover {
        /// The ConsumerGroupFailover's name.
        group: String,
        /// The region to move to (one of spec.regions).
        #[arg(long, value_name = "REGION")]
        to: String,
        #[command(flatten)]
        options: MoveArgs,
    },
    /// Move a group back to the region its last move left (status.lastFailover.from).
    Failback {
        /// The ConsumerGroupFailover's name.
        group: String,
        #[command(flatten)]
        options: MoveArgs,
    },
    /// The translation a group's move resumes from: the move under way
    /// (status.pendingMove.plan: bounds, watermarks) and the last move (resume offsets,
    /// watermarks).
    Plan {
        /// The ConsumerGroupFailover's name.
        group: String,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// A dry run of moving GROUP to REGION: the translation the move would make now (resume
    /// offsets per partition, watermarks, duplicate bounds), read from both regions' aggregate
    /// clusters with the checkpoint sync's own code; nothing is committed.
    Translate {
        group: String,
        /// The region the group would move to.
        #[arg(long, value_name = "REGION")]
        to: String,
        /// Reach a region's aggregate cluster at another address than its AggregateCluster's
        /// spec.kafka.bootstrapServers (repeatable).
        #[arg(long, value_name = "REGION=HOST:PORT")]
        bootstrap: Vec<String>,
        /// How long reading both checkpoint topics to their end may take; a plan from a part of
        /// them is refused (fail closed).
        #[arg(long, default_value = "30s", value_parser = tributary_cli::failover::parse_duration)]
        catch_up_timeout: std::time::Duration,
        #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Randomized disaster-recovery drills against a live group: each drill injects one fault
    /// (region-down, switchover, failback, aggregate-down, operator-kill, region-isolate),
    /// waits for recovery, restores and settles; the
    /// verdict comes from Kafka's VerifiableProducer (run here, one per region) and the
    /// group's VerifiableConsumer workloads. Ends with one summary line; exits non-zero when
    /// anything was lost or skipped, two regions consumed at once, or an epoch rose by other
    /// than one (docs/drill.md). With --region-kubeconfig for every region and
    /// --coordination-kubeconfig: the per-region topology (a cluster and an operator per region).
    Drill(Box<DrillArgs>),
}

#[derive(Debug, clap::Args)]
struct DrillArgs {
    /// The ConsumerGroupFailover to drill (its workloads must run VerifiableConsumer --verbose).
    #[arg(long)]
    group: String,
    /// How many drills.
    #[arg(long, default_value_t = 3)]
    drills: usize,
    /// The faults to pick from, at random per drill: region-down, switchover, failback,
    /// aggregate-down, operator-kill (ActivePassive groups), primary-kill (ActiveActive).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "region-down,switchover,failback"
    )]
    faults: Vec<tributary_cli::drill::Fault>,
    /// Take the faults in the order given (cycling through the list) instead of at random.
    #[arg(long)]
    in_order: bool,
    /// The seed of the random choices (the same seed replays the same faults).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE.json")]
    report: Option<std::path::PathBuf>,
    /// Draw one drill's timeline here (the first region-down, else the first).
    #[arg(long, value_name = "FILE.svg")]
    timeline: Option<std::path::PathBuf>,
    /// Kills a region ({region} is replaced); default: the local stack's.
    #[arg(long, default_value = "bash e2e/stack/stack.sh region-down {region}")]
    region_down_cmd: String,
    /// Restores a region ({region} is replaced).
    #[arg(long, default_value = "bash e2e/stack/stack.sh region-up {region}")]
    region_up_cmd: String,
    /// aggregate-down: kills only a region's aggregate cluster ({region} is replaced).
    #[arg(
        long,
        default_value = "bash e2e/stack/kafka.sh kafka_kill {region}-aggregate"
    )]
    aggregate_down_cmd: String,
    /// aggregate-down: restarts it.
    #[arg(
        long,
        default_value = "bash e2e/stack/kafka.sh kafka_start {region}-aggregate"
    )]
    aggregate_up_cmd: String,
    /// region-isolate: cuts a region's path to the coordination apiserver ({region} is
    /// replaced); the region keeps running.
    #[arg(
        long,
        default_value = "bash e2e/stack/stack.sh region-isolate {region}"
    )]
    region_isolate_cmd: String,
    /// region-isolate: restores the path.
    #[arg(long, default_value = "bash e2e/stack/stack.sh region-heal {region}")]
    region_heal_cmd: String,
    /// While the group settles: when the operator reports members of the group in a
    /// standby region (Degraded StandbyHasMembers), run this once per region and drill
    /// ({region} is replaced), e.g. a clean restart of that region's aggregate broker.
    /// Reported in the report and the summary line. Default: no repair.
    #[arg(long)]
    standby_members_repair_cmd: Option<String>,
    /// The per-region topology: the kubeconfig of REGION's own cluster (repeat for every
    /// region, or comma-separate). The drill reads each region's status, ConfigMap and
    /// workload there and edits spec.activeRegion in every one.
    #[arg(long, value_name = "REGION=PATH", value_delimiter = ',')]
    region_kubeconfig: Vec<String>,
    /// The per-region topology: the coordination apiserver's kubeconfig (the active-region
    /// Lease; read directly, not through a region's path).
    #[arg(long, value_name = "PATH")]
    coordination_kubeconfig: Option<std::path::PathBuf>,
    /// The Java classpath with Kafka's tools (org.apache.kafka.tools.VerifiableProducer).
    #[arg(long, env = "TRIBUTARY_DRILL_KAFKA_CLASSPATH", default_value_t = default_kafka_classpath())]
    kafka_classpath: String,
    /// The java binary.
    #[arg(long, default_value = "java")]
    java: String,
    /// Records per second each region's producer sends.
    #[arg(long, default_value_t = 20)]
    rate: u32,
    /// The topic to produce into (default: the group's first topic).
    #[arg(long)]
    topic: Option<String>,
    /// Where the consumers' events are read: `files` (the local stack's node agent files,
    /// --pod-logs) or `api` (`pods/log` of the workloads' pods, followed; any cluster).
    #[arg(long, value_enum, default_value = "files")]
    consumer_events: tributary_cli::drill::consumer_events::ConsumerEventsFrom,
    /// --consumer-events files: where the consumers' pod logs are (the local stack's state
    /// dir: agent-*/pods/*/*.log).
    #[arg(long, env = "TRIBUTARY_STATE_DIR", default_value = "e2e/.state")]
    pod_logs: std::path::PathBuf,
    /// Where to keep the producers' event streams (default: a new temporary directory).
    #[arg(long)]
    work_dir: Option<std::path::PathBuf>,
    /// Regional bootstrap servers, REGION=HOST:PORT (default: from the RegionalStreams).
    #[arg(long)]
    bootstrap: Vec<String>,
    /// Take spec.activeRegion from another field manager (see failover --force).
    #[arg(long)]
    force: bool,
    /// operator-kill: the namespace of the operator's pods.
    #[arg(long, default_value = "tributary-system")]
    operator_namespace: String,
    /// operator-kill: the label selector of the operator's pods (all are deleted).
    #[arg(
        long,
        default_value = "app.kubernetes.io/name=tributary,app.kubernetes.io/component=operator"
    )]
    operator_selector: String,
    /// How long one move may take, fault to first record consumed.
    #[arg(long, default_value = "3m", value_parser = tributary_cli::failover::parse_duration)]
    move_timeout: std::time::Duration,
    /// How long the group may take to settle after a drill.
    #[arg(long, default_value = "4m", value_parser = tributary_cli::failover::parse_duration)]
    settle_timeout: std::time::Duration,
    /// How long to wait at the end for every acknowledged record to be consumed.
    #[arg(long, default_value = "2m", value_parser = tributary_cli::failover::parse_duration)]
    drain_timeout: std::time::Duration,
}

fn default_kafka_classpath() -> String {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    format!("{home}/.cache/tributary/kafka-4.2.0/lib/*")
}

impl DrillArgs {
    fn options(self) -> tributary_cli::drill::DrillOptions {
        tributary_cli::drill::DrillOptions {
            group: self.group,
            drills: self.drills,
            faults: self.faults,
            in_order: self.in_order,
            seed: self.seed,
            report: self.report,
            timeline: self.timeline,
            region_down_cmd: self.region_down_cmd,
            region_up_cmd: self.region_up_cmd,
            aggregate_down_cmd: self.aggregate_down_cmd,
            aggregate_up_cmd: self.aggregate_up_cmd,
            region_isolate_cmd: self.region_isolate_cmd,
            region_heal_cmd: self.region_heal_cmd,
            standby_members_repair_cmd: self.standby_members_repair_cmd,
            region_kubeconfigs: self.region_kubeconfig,
            coordination_kubeconfig: self.coordination_kubeconfig,
            kafka_classpath: self.kafka_classpath,
            java: self.java,
            rate: self.rate,
            topic: self.topic,
            consumer_events: self.consumer_events,
            pod_logs: self.pod_logs,
            work_dir: self.work_dir,
            bootstrap: self.bootstrap,
            force: self.force,
            operator_namespace: self.operator_namespace,
            operator_selector: self.operator_selector,
            move_timeout: self.move_timeout,
            settle_timeout: self.settle_timeout,
            drain_timeout: self.drain_timeout,
        }
    }
}

#[derive(Debug, clap::Args)]
struct MoveArgs {
    /// Take spec.activeRegion even when another field manager (a GitOps tool, kubectl edit)
    /// owns it; change it in Git too, or the tool will set it back.
    #[arg(long)]
    force: bool,
    /// Set the spec and return without waiting for the move.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for the move: 90s, 5m, 1h.
    #[arg(long, default_value = "5m", value_parser = tributary_cli::failover::parse_duration)]
    timeout: std::time::Duration,
}

impl MoveArgs {
    fn options(&self) -> commands::MoveOptions {
        commands::MoveOptions {
            force: self.force,
            wait: !self.no_wait,
            timeout: self.timeout,
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // `Ok(false)`: the command ran and its verdict failed (drill): it said so, exit 1.
    let result: anyhow::Result<bool> = async {
        let conn = cli.connect.connect().await?;
        match cli.command {
            Command::Status {
                all_namespaces,
                output,
                colour,
            } => commands::status(&conn, all_namespaces, output, colour)
                .await
                .map(|()| true),
            Command::Failover { group, to, options } => {
                commands::move_group(&conn, &group, Some(&to), &options.options())
                    .await
                    .map(|()| true)
            }
            Command::Failback { group, options } => {
                commands::move_group(&conn, &group, None, &options.options())
                    .await
                    .map(|()| true)
            }
            Command::Plan { group, output } => {
                commands::plan(&conn, &group, output).await.map(|()| true)
            }
            Command::Translate {
                group,
                to,
                bootstrap,
                catch_up_timeout,
                output,
            } => {
                commands::translate(&conn, &group, &to, &bootstrap, catch_up_timeout, output).await
            }
            Command::Drill(args) => tributary_cli::drill::drill(&conn, args.options()).await,
        }
    }
    .await;
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        // The summary line is the drill's last word.
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
