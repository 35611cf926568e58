//! `tributary-node-agent`: the e2e stack's stand-in for kubelet and scheduler, one process per
//! region. It registers the region's Node, binds pods to it, and runs the containers of
//! Tributary's own image (and the tool containers of the apache/kafka image, on the stack's
//! cached Kafka jars) as local processes. Test infrastructure only; not shipped.
//! SIGTERM/SIGINT = "stop region": Node NotReady, every pod process SIGKILLed, exit 0.

mod env;
mod kafka_image;
mod launch;
mod log_server;
mod log_stamps;
mod mount_exec;
mod node;
mod phase;
mod pod_runner;
mod pod_watch;
mod probe;
mod procs;
mod readiness;
mod scheduling;
mod security;
mod sources;
mod token;
mod volumes;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::signal::unix::{SignalKind, signal};

use crate::node::NodeRegistration;
use crate::pod_runner::Agent;
use crate::procs::ProcessTable;
use crate::token::ApiServer;

/// Node agent of the Tributary e2e stack: registers one Node for a region, schedules pods to
/// it and runs the containers of Tributary's image (and apache/kafka tools) as local processes.
#[derive(Parser, Debug)]
#[command(name = "tributary-node-agent", version)]
struct Cli {
    /// Admin kubeconfig of the stack's API server.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// Region of this node (label topology.kubernetes.io/region).
    #[arg(long)]
    region: String,
    /// The program run for containers of the matching image (the `tributary` binary).
    #[arg(long)]
    binary: PathBuf,
    /// Other builds of the project's binary, by image tag: a container of image
    /// `<image-match>:<tag>` runs `<dir>/<tag>` when that file exists (so a second checkout
    /// can test its own build on the shared stack), else `--binary`.
    #[arg(long)]
    binaries_dir: Option<PathBuf>,
    /// Containers run only if their image's repository name (last path segment, no tag or
    /// digest) equals this.
    #[arg(long, default_value = "tributary")]
    image_match: String,
    /// Kafka's jars (the stack's Maven-fetched lib dir): containers of the `apache/kafka`
    /// image run their `/opt/kafka/bin/kafka-*.sh` tool as a JVM on `<dir>/*`. Without it
    /// they wait with reason ImageNotRunnable.
    #[arg(long)]
    kafka_lib: Option<PathBuf>,
    /// log4j2 config for those Kafka tools (`-Dlog4j2.configurationFile`).
    #[arg(long)]
    kafka_log4j: Option<PathBuf>,
    /// Where pod dirs, logs and the process table live.
    #[arg(long)]
    state_dir: PathBuf,
    /// Node name; default `tributary-<region>`.
    #[arg(long)]
    node_name: Option<String>,
    /// The kubelet's log endpoint (HTTPS, for the apiserver's `pods/log`): its serving
    /// certificate (for 127.0.0.1). Without it there is no endpoint and the Node reports port 0.
    #[arg(long, requires_all = ["tls_private_key_file", "client_ca_file"])]
    tls_cert_file: Option<PathBuf>,
    /// The serving certificate's key.
    #[arg(long)]
    tls_private_key_file: Option<PathBuf>,
    /// The CA whose client certificates may read logs (the apiserver's kubelet client's).
    #[arg(long)]
    client_ca_file: Option<PathBuf>,
    /// Port of the log endpoint on 127.0.0.1, reported in the Node's
    /// `status.daemonEndpoints.kubeletEndpoint`; 0 = a free port (several agents share a host).
    #[arg(long, default_value_t = 0)]
    kubelet_port: u16,
}

fn main() -> anyhow::Result<()> {
    // The in-between process of each container: mount namespace, bind mounts, exec.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == mount_exec::SUBCOMMAND) {
        let spec = argv.get(2).map(PathBuf::from).unwrap_or_default();
        let err = mount_exec::run(&spec);
        eprintln!("tributary-node-agent: cannot start the container: {err:#}");
        std::process::exit(127);
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,kube_client=warn,kube_runtime=warn")
            }),
        )
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let node_name = cli
        .node_name
        .clone()
        .unwrap_or_else(|| format!("tributary-{}", cli.region));
    let binary = std::fs::canonicalize(&cli.binary)
        .with_context(|| format!("--binary {}", cli.binary.display()))?;
    std::fs::create_dir_all(cli.state_dir.join("pods"))
        .with_context(|| format!("--state-dir {}", cli.state_dir.display()))?;
    let state_dir = std::fs::canonicalize(&cli.state_dir)?;
    let kafka =
        kafka_image::KafkaTools::discover(cli.kafka_lib.as_deref(), cli.kafka_log4j.as_deref());
    match &kafka {
        Ok(k) => {
            tracing::info!(lib = %k.lib.display(), java = %k.java.display(), "apache/kafka containers run on the cached Kafka jars")
        }
        Err(why) if cli.kafka_lib.is_some() => {
            tracing::warn!(%why, "apache/kafka containers cannot run")
        }
        Err(why) => tracing::info!(%why, "apache/kafka containers will not run"),
    }
    let (client, api) = connect(&cli.kubeconfig).await?;

    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;

    // Leftovers of an earlier run of this node's agent die before anything is adopted.
    let procs = ProcessTable::open(&state_dir.join(format!("processes-{node_name}.json")))?;
    let agent = Arc::new(Agent {
        client: client.clone(),
        node_name: node_name.clone(),
        binary,
        binaries_dir: cli.binaries_dir.clone(),
        image_match: cli.image_match.clone(),
        kafka,
        state_dir,
        agent_exe: std::env::current_exe()?,
        api,
        procs,
    });
    // Every container log gets per-line stamps, endpoint or not (they are cheap).
    log_stamps::spawn_log_stamper(agent.state_dir.clone());
    let kubelet_port = match (
        &cli.tls_cert_file,
        &cli.tls_private_key_file,
        &cli.client_ca_file,
    ) {
        (Some(cert), Some(key), Some(ca)) => {
            let tls = log_server::Tls {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: ca.clone(),
            };
            let (port, serve) = log_server::bind(&tls, cli.kubelet_port, agent.clone()).await?;
            tokio::spawn(serve);
            tracing::info!(
                port,
                "container logs served at https://127.0.0.1:{port}/containerLogs/"
            );
            port
        }
        _ => 0,
    };
    let mut registration = NodeRegistration::new(
        client.clone(),
        node_name.clone(),
        cli.region.clone(),
        kubelet_port,
    );
    loop {
        tokio::select! {
            r = registration.register() => match r {
                Ok(()) => break,
                Err(e) => tracing::warn!(node = %node_name, error = %e, "registering the node failed (retrying)"),
            },
            _ = sigterm.recv() => return Ok(()),
            _ = sigint.recv() => return Ok(()),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    tracing::info!(node = %node_name, region = %cli.region, binary = %agent.binary.display(), "node registered and Ready");

    let heartbeat = tokio::spawn(registration.clone().run_heartbeat());
    let scheduler = tokio::spawn(forever("scheduler", {
        let (client, node_name) = (client.clone(), node_name.clone());
        move || scheduling::run_scheduler(client.clone(), node_name.clone())
    }));
    let pods = tokio::spawn(forever("pod watch", {
        let agent = agent.clone();
        move || pod_watch::run_pod_watch(agent.clone())
    }));

    let signal_name = tokio::select! {
        _ = sigterm.recv() => "SIGTERM",
        _ = sigint.recv() => "SIGINT",
    };
    tracing::info!(node = %node_name, signal = signal_name, "stop requested: region down");
    // Region down: abrupt for the pods, explicit for the Node.
    let killed = agent.procs.kill_all();
    scheduler.abort();
    pods.abort();
    heartbeat.abort();
    let _ = heartbeat.await;
    tracing::info!(node = %node_name, processes = killed, "stopping: killed every pod process (region down)");
    match tokio::time::timeout(Duration::from_secs(5), registration.mark_down()).await {
        Ok(Ok(())) => tracing::info!(node = %node_name, "node marked NotReady (RegionDown)"),
        Ok(Err(e)) => {
            tracing::warn!(node = %node_name, error = %e, "could not mark the node NotReady")
        }
        Err(_) => tracing::warn!(node = %node_name, "timed out marking the node NotReady"),
    }
    // Exit now: pending pod tasks and connections have nothing left to do.
    std::process::exit(0)
}

/// Runs a watch loop again whenever it ends.
async fn forever<F, Fut>(what: &'static str, mut start: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    loop {
        match start().await {
            Ok(()) => tracing::warn!(what, "loop ended (restarting)"),
            Err(e) => tracing::warn!(what, error = %e, "loop failed (restarting)"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// A client from the admin kubeconfig, and the server/CA that pod kubeconfigs will use.
async fn connect(path: &Path) -> anyhow::Result<(kube::Client, ApiServer)> {
    let kubeconfig = Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig.clone(), &KubeConfigOptions::default())
            .await
            .with_context(|| format!("loading kubeconfig {}", path.display()))?;
    let context_name = kubeconfig.current_context.clone().unwrap_or_default();
    let cluster_name = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .unwrap_or_default();
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster.clone())
        .unwrap_or_default();
    let base = path.parent().unwrap_or(Path::new("."));
    let api = ApiServer {
        server: config
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_string(),
        ca_data: cluster.certificate_authority_data.clone(),
        ca_file: cluster.certificate_authority.as_ref().map(|f| base.join(f)),
        insecure: cluster.insecure_skip_tls_verify.unwrap_or(false),
    };
    let client = kube::Client::try_from(config)?;
    Ok((client, api))
}
