//! Pod volumes as directories under the pod's dir. ConfigMap, Secret, downward API and
//! projected volumes are written with the kubelet's atomic-writer layout (`..data` symlink to
//! a timestamped dir; one symlink per top-level entry), so an update swaps in at once and
//! reaches processes through their bind mounts. emptyDir is a plain dir; hostPath is the path.
//! Ownership and modes follow the kubelet: files owned by root with the requested mode; with
//! the pod's `fsGroup`, group-owned by it and group-readable (see `security`), so a process
//! that is not root reads what it could read on a real node, and nothing more.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Pod, Volume};

use crate::security::volume_file_owner;
use crate::sources::{KeyValues, Sources, field_ref};
use crate::token::PodTokens;

/// Relative path → (content, mode).
pub type Payload = BTreeMap<String, (Vec<u8>, u32)>;

/// What backs a volume on the host.
#[derive(Debug, Clone, PartialEq)]
pub enum Backing {
    /// Files this agent writes (and rewrites on change).
    Payload(Payload),
    /// A directory that lives as long as the pod dir.
    EmptyDir,
    /// A path of the host.
    HostPath(PathBuf),
}

/// Reads what the volume should contain now.
pub async fn resolve(
    volume: &Volume,
    pod: &Pod,
    node_name: &str,
    sources: &mut Sources,
    tokens: &mut PodTokens,
) -> Result<Backing, String> {
    let name = &volume.name;
    if volume.empty_dir.is_some() {
        return Ok(Backing::EmptyDir);
    }
    if let Some(h) = &volume.host_path {
        return Ok(Backing::HostPath(PathBuf::from(&h.path)));
    }
    let mut payload = Payload::new();
    if let Some(cm) = &volume.config_map {
        let kv = sources.config_map(&cm.name).await?;
        add_keys(
            &mut payload,
            "configmap",
            &cm.name,
            kv,
            cm.items.as_deref(),
            cm.optional,
            mode(cm.default_mode),
        )?;
    } else if let Some(s) = &volume.secret {
        let secret_name = s.secret_name.clone().unwrap_or_default();
        let kv = sources.secret(&secret_name).await?;
        add_keys(
            &mut payload,
            "secret",
            &secret_name,
            kv,
            s.items.as_deref(),
            s.optional,
            mode(s.default_mode),
        )?;
    } else if let Some(d) = &volume.downward_api {
        add_downward(
            &mut payload,
            pod,
            node_name,
            d.items.as_deref().unwrap_or_default(),
            mode(d.default_mode),
        )?;
    } else if let Some(p) = &volume.projected {
        let default_mode = mode(p.default_mode);
        for source in p.sources.as_deref().unwrap_or_default() {
            if let Some(cm) = &source.config_map {
                let kv = sources.config_map(&cm.name).await?;
                add_keys(
                    &mut payload,
                    "configmap",
                    &cm.name,
                    kv,
                    cm.items.as_deref(),
                    cm.optional,
                    default_mode,
                )?;
            } else if let Some(s) = &source.secret {
                let kv = sources.secret(&s.name).await?;
                add_keys(
                    &mut payload,
                    "secret",
                    &s.name,
                    kv,
                    s.items.as_deref(),
                    s.optional,
                    default_mode,
                )?;
            } else if let Some(d) = &source.downward_api {
                add_downward(
                    &mut payload,
                    pod,
                    node_name,
                    d.items.as_deref().unwrap_or_default(),
                    default_mode,
                )?;
            } else if let Some(t) = &source.service_account_token {
                let token = tokens
                    .token(
                        pod,
                        t.audience.as_deref(),
                        t.expiration_seconds.unwrap_or(3600),
                    )
                    .await?;
                payload.insert(t.path.clone(), (token.into_bytes(), default_mode));
            } else {
                return Err(format!(
                    "volume {name:?}: this projected source is not supported by the node agent"
                ));
            }
        }
    } else {
        return Err(format!(
            "volume {name:?}: only configMap, secret, projected, downwardAPI, emptyDir and hostPath volumes are supported by the node agent"
        ));
    }
    Ok(Backing::Payload(payload))
}

fn mode(m: Option<i32>) -> u32 {
    m.and_then(|m| u32::try_from(m).ok()).unwrap_or(0o644)
}

fn add_keys(
    payload: &mut Payload,
    kind: &str,
    name: &str,
    kv: Option<KeyValues>,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    default_mode: u32,
) -> Result<(), String> {
    let optional = optional.unwrap_or(false);
    let Some(kv) = kv else {
        return if optional {
            Ok(())
        } else {
            Err(format!("{kind} \"{name}\" not found"))
        };
    };
    match items {
        None => {
            for (k, v) in kv {
                payload.insert(k, (v, default_mode));
            }
        }
        Some(items) => {
            for item in items {
                match kv.get(&item.key) {
                    Some(v) => {
                        let m = item.mode.map(|m| mode(Some(m))).unwrap_or(default_mode);
                        payload.insert(item.path.clone(), (v.clone(), m));
                    }
                    None if optional => {}
                    None => {
                        return Err(format!(
                            "configured key {:?} of {kind} {name:?} is not present",
                            item.key
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

fn add_downward(
    payload: &mut Payload,
    pod: &Pod,
    node_name: &str,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
) -> Result<(), String> {
    for item in items {
        let m = item.mode.map(|m| mode(Some(m))).unwrap_or(default_mode);
        if let Some(f) = &item.field_ref {
            payload.insert(
                item.path.clone(),
                (field_ref(pod, node_name, &f.field_path)?.into_bytes(), m),
            );
        } else {
            tracing::warn!(path = %item.path, "downward API resourceFieldRef is not supported by the node agent; file skipped");
        }
    }
    Ok(())
}

/// Makes the volume's content real under `dir` (`<pod dir>/volumes/<name>`) and returns the
/// host path to bind-mount. `last` is the payload written before (to skip unchanged writes).
pub fn materialize(
    dir: &Path,
    backing: &Backing,
    last: Option<&Backing>,
    fs_group: Option<u32>,
) -> std::io::Result<PathBuf> {
    match backing {
        Backing::HostPath(p) => Ok(p.clone()),
        Backing::EmptyDir => {
            std::fs::create_dir_all(dir)?;
            // The kubelet's emptyDir: world-writable; with an fsGroup, group-owned and setgid.
            let mode = match fs_group {
                Some(g) => {
                    std::os::unix::fs::chown(dir, None, Some(g))?;
                    0o2777
                }
                None => 0o777,
            };
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
            Ok(dir.to_path_buf())
        }
        Backing::Payload(payload) => {
            if last != Some(backing) || !dir.join("..data").exists() {
                write_atomic(dir, payload, fs_group)?;
            }
            Ok(dir.to_path_buf())
        }
    }
}

/// The kubelet's atomic writer: new files in a fresh `..<stamp>` dir, then one rename of the
/// `..data` symlink, then per-entry symlinks; old entries and dirs go last.
pub fn write_atomic(dir: &Path, payload: &Payload, fs_group: Option<u32>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let stamp = format!("..{}", k8s_openapi::jiff::Timestamp::now().as_nanosecond());
    let data_dir = dir.join(&stamp);
    std::fs::create_dir_all(&data_dir)?;
    for (rel, (content, mode)) in payload {
        let path = data_dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, content)?;
        let (uid, gid, mode) = volume_file_owner(*mode, fs_group);
        std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    symlink(&stamp, &tmp_link)?;
    std::fs::rename(&tmp_link, dir.join("..data"))?;

    let top: BTreeSet<String> = payload
        .keys()
        .filter_map(|rel| rel.split('/').next().map(str::to_string))
        .collect();
    for entry in &top {
        let link = dir.join(entry);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new("..data").join(entry), &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = if name.starts_with("..") {
            name != "..data" && name != stamp
        } else {
            !top.contains(&name)
        };
        if stale {
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let _ = if is_dir {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(pairs: &[(&str, &str)]) -> Payload {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), (v.as_bytes().to_vec(), 0o644)))
            .collect()
    }

    #[test]
    fn atomic_writer_swaps_content_and_drops_removed_keys() {
        let dir =
            std::env::temp_dir().join(format!("node-agent-volume-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write_atomic(&dir, &payload(&[("a", "1"), ("sub/b", "2")]), None).expect("first write");
        assert_eq!(std::fs::read_to_string(dir.join("a")).expect("a"), "1");
        assert_eq!(
            std::fs::read_to_string(dir.join("sub/b")).expect("sub/b"),
            "2"
        );
        write_atomic(&dir, &payload(&[("a", "changed")]), None).expect("second write");
        assert_eq!(
            std::fs::read_to_string(dir.join("a")).expect("a"),
            "changed"
        );
        assert!(
            std::fs::symlink_metadata(dir.join("sub")).is_err(),
            "removed key's entry is gone"
        );
        let dot_dirs = std::fs::read_dir(&dir)
            .expect("list")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with(".."))
            })
            .count();
        assert_eq!(dot_dirs, 2, "..data and one data dir remain");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn secret_files_are_root_owned_and_group_readable_only_with_an_fs_group() {
        use std::os::unix::fs::MetadataExt as _;
        let dir =
            std::env::temp_dir().join(format!("node-agent-owner-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let secret: Payload = [("password".to_string(), (b"pw".to_vec(), 0o440))].into();
        write_atomic(&dir.join("plain"), &secret, None).expect("write without fsGroup");
        let meta = std::fs::metadata(dir.join("plain/password")).expect("stat");
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (0, 0, 0o440)
        );
        let secret: Payload = [("password".to_string(), (b"pw".to_vec(), 0o400))].into();
        write_atomic(&dir.join("grouped"), &secret, Some(65532)).expect("write with fsGroup");
        let meta = std::fs::metadata(dir.join("grouped/password")).expect("stat");
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (0, 65532, 0o440)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
