//! The in-between process of every container: `tributary-node-agent __mount-exec <spec.json>`
//! enters a private mount namespace, bind-mounts the pod's volumes at their `mountPath`,
//! changes to the working dir and `exec`s the container's program (same pid, same process
//! group), so the program sees the paths a real pod would.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use serde::{Deserialize, Serialize};

pub const SUBCOMMAND: &str = "__mount-exec";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchSpec {
    pub mounts: Vec<MountSpec>,
    /// The container's `workingDir`, used when it exists (after mounting).
    pub working_dir: Option<PathBuf>,
    /// The per-pod dir used otherwise.
    pub fallback_dir: PathBuf,
    pub program: PathBuf,
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountSpec {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// Runs the helper; returns only on failure (the error goes to the container's log).
pub fn run(spec_path: &Path) -> anyhow::Error {
    match prepare(spec_path) {
        Ok(mut command) => {
            anyhow::Error::from(command.exec()).context("exec of the container's program failed")
        }
        Err(e) => e,
    }
}

fn prepare(spec_path: &Path) -> anyhow::Result<std::process::Command> {
    let spec: LaunchSpec = serde_json::from_slice(&std::fs::read(spec_path)?)?;
    if !spec.mounts.is_empty() {
        unshare(CloneFlags::CLONE_NEWNS).map_err(|e| {
            anyhow::anyhow!("unshare(CLONE_NEWNS): {e} (the node agent must run as root)")
        })?;
        // Our mounts must not propagate back to the host's namespace.
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(|e| anyhow::anyhow!("making / private: {e}"))?;
        let mut mounts = spec.mounts.clone();
        mounts.sort_by_key(|m| m.target.components().count()); // parents before children
        for m in &mounts {
            bind(m)?;
        }
    }
    let dir = match &spec.working_dir {
        Some(d) if d.is_dir() => d.clone(),
        _ => spec.fallback_dir.clone(),
    };
    let mut command = std::process::Command::new(&spec.program);
    command.args(&spec.args).current_dir(dir);
    Ok(command)
}

fn bind(m: &MountSpec) -> anyhow::Result<()> {
    let source_is_dir = m.source.is_dir();
    if source_is_dir {
        std::fs::create_dir_all(&m.target)?;
    } else if !m.target.exists() {
        if let Some(parent) = m.target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::File::create(&m.target)?;
    }
    mount(
        Some(&m.source),
        &m.target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "bind-mounting {} at {}: {e}",
            m.source.display(),
            m.target.display()
        )
    })?;
    if m.read_only {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC;
        mount(None::<&str>, &m.target, None::<&str>, flags, None::<&str>)
            .map_err(|e| anyhow::anyhow!("remounting {} read-only: {e}", m.target.display()))?;
    }
    Ok(())
}
