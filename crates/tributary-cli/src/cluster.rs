//! The plugin's I/O with the API server: a client built the way kubectl builds one
//! (`--kubeconfig`, `KUBECONFIG`, `~/.kube/config`, in-cluster; `--context`; the context's
//! namespace), and reading the Tributary objects of a scope.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tributary_api::{AggregateCluster, ConsumerGroupFailover, RegionalStream};

use crate::snapshot::{Scope, Snapshot};

/// How to reach the cluster, as kubectl's flags say it.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ConnectOptions {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The namespace (default: the context's namespace, then `default`).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
}

/// A client and the namespace commands default to.
pub struct Connection {
    pub client: Client,
    pub default_namespace: String,
}

impl ConnectOptions {
    pub async fn connect(&self) -> Result<Connection> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..KubeConfigOptions::default()
        };
        let config = match (&self.kubeconfig, &self.context) {
            (Some(path), _) => {
                let file = Kubeconfig::read_from(path)
                    .with_context(|| format!("reading kubeconfig {}", path.display()))?;
                Config::from_custom_kubeconfig(file, &options)
                    .await
                    .with_context(|| format!("using kubeconfig {}", path.display()))?
            }
            (None, Some(context)) => Config::from_kubeconfig(&options)
                .await
                .with_context(|| format!("using context {context} of the kubeconfig"))?,
            (None, None) => Config::infer()
                .await
                .context("no cluster to talk to: set KUBECONFIG or pass --kubeconfig")?,
        };
        let default_namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).context("building the Kubernetes client")?;
        Ok(Connection {
            client,
            default_namespace,
        })
    }
}

impl Connection {
    /// The scope of a command: `-A` or the namespace.
    pub fn scope(&self, all_namespaces: bool) -> Scope {
        if all_namespaces {
            Scope::AllNamespaces
        } else {
            Scope::Namespace(self.default_namespace.clone())
        }
    }

    fn api<K>(&self, scope: &Scope) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match scope {
            Scope::Namespace(ns) => Api::namespaced(self.client.clone(), ns),
            Scope::AllNamespaces => Api::all(self.client.clone()),
        }
    }

    /// Lists the three kinds of a scope.
    pub async fn snapshot(&self, scope: &Scope) -> Result<Snapshot> {
        let lp = ListParams::default();
        let streams: Api<RegionalStream> = self.api(scope);
        let aggregates: Api<AggregateCluster> = self.api(scope);
        let groups: Api<ConsumerGroupFailover> = self.api(scope);
        let (streams, aggregates, groups) =
            tokio::try_join!(streams.list(&lp), aggregates.list(&lp), groups.list(&lp))
                .map_err(explain_list_error)?;
        Ok(Snapshot {
            scope: scope.clone(),
            taken_at: Timestamp::now(),
            streams: streams.items,
            aggregates: aggregates.items,
            groups: groups.items,
        }
        .sorted())
    }
}

/// A list error, phrased for a person: a 404 means the CRDs are not installed.
pub fn explain_list_error(e: kube::Error) -> anyhow::Error {
    match &e {
        kube::Error::Api(s) if s.code == 404 => anyhow::anyhow!(
            "the Tributary CRDs (tributary.dev/v1alpha1) are not installed in this cluster: \
             kubectl apply --server-side -f crds/"
        ),
        kube::Error::Api(s) if s.code == 403 => anyhow::anyhow!(
            "not allowed to list Tributary resources here: {} (check your RBAC, or pick \
             another namespace with -n)",
            s.message
        ),
        _ => anyhow::Error::new(e).context("listing Tributary resources"),
    }
}
