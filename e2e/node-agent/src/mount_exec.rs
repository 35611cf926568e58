//! The in-between process of every container: `tributary-node-agent __mount-exec <spec.json>`
//! enters a private mount namespace, bind-mounts the pod's volumes at their `mountPath`,
//! changes to the working dir and `exec`s the container's program (same pid, same process
//! group), so the program sees the paths a real pod would. Before the `exec` it becomes the
//! container's user (`securityContext`: uid, gid, supplementary groups incl. `fsGroup`,
//! `no_new_privs`) and, for `readOnlyRootFilesystem`, makes every mount but the pod's volumes
//! read-only in its namespace, so file permissions bind the program as on a real node.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};
use serde::{Deserialize, Serialize};

use crate::security::Identity;

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
    /// Who the program runs as; `None`: the helper's own user (root).
    #[serde(default)]
    pub identity: Option<Identity>,
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
    let read_only_root = spec.identity.as_ref().is_some_and(|i| i.read_only_root);
    if !spec.mounts.is_empty() || read_only_root {
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
        if read_only_root {
            let volumes: Vec<&Path> = mounts.iter().map(|m| m.target.as_path()).collect();
            read_only_except(&volumes)?;
        }
    }
    if let Some(id) = &spec.identity {
        become_user(id)?;
    }
    let dir = match &spec.working_dir {
        Some(d) if d.is_dir() => d.clone(),
        _ => spec.fallback_dir.clone(),
    };
    let mut command = std::process::Command::new(&spec.program);
    command.args(&spec.args).current_dir(dir);
    Ok(command)
}

/// Root first: supplementary groups, then group, then user (after `setuid` nothing else can
/// change). `exec`'s `chdir` then runs as that user, as a runtime's would.
fn become_user(id: &Identity) -> anyhow::Result<()> {
    let groups: Vec<Gid> = id.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    setgroups(&groups).map_err(|e| anyhow::anyhow!("setgroups({:?}): {e}", id.groups))?;
    setgid(Gid::from_raw(id.gid)).map_err(|e| anyhow::anyhow!("setgid({}): {e}", id.gid))?;
    setuid(Uid::from_raw(id.uid)).map_err(|e| anyhow::anyhow!("setuid({}): {e}", id.uid))?;
    if id.no_new_privs {
        nix::sys::prctl::set_no_new_privs().map_err(|e| anyhow::anyhow!("no_new_privs: {e}"))?;
    }
    Ok(())
}

/// `readOnlyRootFilesystem`, approximated: every mount of this (private) namespace becomes
/// read-only except the pod's volumes (and what lies under them) and the kernel's
/// `/proc`, `/sys`, `/dev`, which a runtime mounts writable as well. Files the agent opened
/// before (the log) stay writable: they belong to the host's mounts, not these copies.
fn read_only_except(volumes: &[&Path]) -> anyhow::Result<()> {
    // mountinfo names mounts by their resolved path: a volume at /var/run/x (/var/run a
    // symlink to /run) is mounted at /run/x, and must stay writable there.
    let volumes: Vec<PathBuf> = volumes
        .iter()
        .map(|v| std::fs::canonicalize(v).unwrap_or_else(|_| v.to_path_buf()))
        .collect();
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    for (target, options) in mount_points(&info) {
        let kernel = ["/proc", "/sys", "/dev"]
            .iter()
            .any(|k| target.starts_with(k));
        if kernel || volumes.iter().any(|v| target.starts_with(v)) {
            continue;
        }
        let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        for (name, flag) in [
            ("nosuid", MsFlags::MS_NOSUID),
            ("nodev", MsFlags::MS_NODEV),
            ("noexec", MsFlags::MS_NOEXEC),
            ("noatime", MsFlags::MS_NOATIME),
            ("nodiratime", MsFlags::MS_NODIRATIME),
            ("relatime", MsFlags::MS_RELATIME),
        ] {
            if options.split(',').any(|o| o == name) {
                flags |= flag;
            }
        }
        match mount(None::<&str>, &target, None::<&str>, flags, None::<&str>) {
            Ok(()) => {}
            // A mount point under another one that was shadowed or went away.
            Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => anyhow::bail!("remounting {} read-only: {e}", target.display()),
        }
    }
    Ok(())
}

/// (mount point, per-mount options) of each line of `/proc/self/mountinfo`.
fn mount_points(info: &str) -> Vec<(PathBuf, String)> {
    info.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let target = fields.nth(4)?;
            let options = fields.next()?;
            Some((PathBuf::from(unescape(target)), options.to_string()))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_give_mount_points_and_their_options() {
        let info = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    30 22 0:26 / /tmp/a\\040b rw,nosuid,nodev shared:2 - tmpfs tmpfs rw\n";
        let points = mount_points(info);
        assert_eq!(points[0], (PathBuf::from("/"), "rw,relatime".to_string()));
        assert_eq!(
            points[1],
            (PathBuf::from("/tmp/a b"), "rw,nosuid,nodev".to_string())
        );
    }
}
