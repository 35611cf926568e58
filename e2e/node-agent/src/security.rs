//! The `securityContext` rules a kubelet and container runtime apply, as pure functions: which
//! user, group and supplementary groups a container's process runs as, whether its root
//! filesystem is read-only, and who owns the files of a pod's volumes (`fsGroup`). The agent
//! runs as root, so without these a pod that a real kubelet would break (a Secret file it
//! cannot read, a write to a read-only root) passes here.

use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, SecurityContext};
use serde::{Deserialize, Serialize};

use crate::launch::ImageKind;

/// The project image's `USER` (Dockerfile: distroless `nonroot`, `USER 65532:65532`).
pub const PROJECT_IMAGE_USER: (u32, u32) = (65532, 65532);

/// Who a container's process is, and what it may do to the root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: `fsGroup` first, then `supplementalGroups`.
    pub groups: Vec<u32>,
    /// `readOnlyRootFilesystem`: every mount but the pod's volumes is read-only.
    pub read_only_root: bool,
    /// `allowPrivilegeEscalation: false` (`no_new_privs`).
    pub no_new_privs: bool,
}

/// The image's own user when neither the pod nor the container sets one. The project's image
/// runs as 65532. The apache/kafka image's user (`appuser`, 1000) is not used: here its tools
/// run on jars under the agent's home, which only root can read; such containers run as root
/// unless their `securityContext` says otherwise.
pub fn image_user(kind: ImageKind) -> (u32, u32) {
    match kind {
        ImageKind::Project => PROJECT_IMAGE_USER,
        ImageKind::Kafka | ImageKind::Other => (0, 0),
    }
}

/// The identity of container `c` of `pod`: the container's `securityContext` wins over the
/// pod's, which wins over the image's user. As containerd does, a `runAsUser` without
/// `runAsGroup` takes the image user's group when it is the image's user, else group 0.
/// `runAsNonRoot` with an effective uid 0 is refused, with the kubelet's message.
pub fn identity(pod: &Pod, c: &Container, kind: ImageKind) -> Result<Identity, String> {
    let pod_sc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    let (image_uid, image_gid) = image_user(kind);
    let uid = id(sc.run_as_user.or(pod_sc.run_as_user)).unwrap_or(image_uid);
    let gid = id(sc.run_as_group.or(pod_sc.run_as_group)).unwrap_or(if uid == image_uid {
        image_gid
    } else {
        0
    });
    let non_root = sc.run_as_non_root.or(pod_sc.run_as_non_root) == Some(true);
    if non_root && uid == 0 {
        return Err(format!(
            "container {:?} has runAsNonRoot and image will run as root",
            c.name
        ));
    }
    let mut groups: Vec<u32> = Vec::new();
    for g in fs_group(&pod_sc).into_iter().chain(
        pod_sc
            .supplemental_groups
            .iter()
            .flatten()
            .filter_map(|g| id(Some(*g))),
    ) {
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    Ok(Identity {
        uid,
        gid,
        groups,
        read_only_root: sc.read_only_root_filesystem == Some(true),
        no_new_privs: allows_no_escalation(&sc),
    })
}

fn allows_no_escalation(sc: &SecurityContext) -> bool {
    sc.allow_privilege_escalation == Some(false)
}

/// The pod's `fsGroup`, if any.
pub fn pod_fs_group(pod: &Pod) -> Option<u32> {
    pod.spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(fs_group)
}

fn fs_group(sc: &PodSecurityContext) -> Option<u32> {
    id(sc.fs_group)
}

fn id(v: Option<i64>) -> Option<u32> {
    v.and_then(|v| u32::try_from(v).ok())
}

/// Owner and mode of a file of a read-only volume (Secret, ConfigMap, downward API,
/// projected), as the kubelet leaves it: owned by root; with an `fsGroup`, group-owned by it
/// and group-readable (`mode | 0440`, kubelet's `SetVolumeOwnership` for read-only volumes);
/// without one, root's group and exactly the requested mode.
pub fn volume_file_owner(mode: u32, fs_group: Option<u32>) -> (u32, u32, u32) {
    match fs_group {
        Some(g) => (0, g, mode | 0o440),
        None => (0, 0, mode),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn pod(sc: Option<PodSecurityContext>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                security_context: sc,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn container(sc: Option<SecurityContext>) -> Container {
        Container {
            name: "c".into(),
            security_context: sc,
            ..Default::default()
        }
    }

    #[test]
    fn the_project_image_runs_as_its_nonroot_user_by_default() -> Result<(), String> {
        let id = identity(&pod(None), &container(None), ImageKind::Project)?;
        assert_eq!((id.uid, id.gid), (65532, 65532));
        assert!(id.groups.is_empty());
        assert!(!id.read_only_root);
        Ok(())
    }

    #[test]
    fn the_container_context_wins_over_the_pod_and_fs_group_is_a_supplementary_group()
    -> Result<(), String> {
        let p = pod(Some(PodSecurityContext {
            run_as_user: Some(1000),
            run_as_group: Some(1000),
            fs_group: Some(2000),
            supplemental_groups: Some(vec![3000, 2000]),
            ..Default::default()
        }));
        let c = container(Some(SecurityContext {
            run_as_user: Some(1234),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            ..Default::default()
        }));
        let id = identity(&p, &c, ImageKind::Project)?;
        assert_eq!((id.uid, id.gid), (1234, 1000));
        assert_eq!(id.groups, vec![2000, 3000]);
        assert!(id.read_only_root && id.no_new_privs);
        Ok(())
    }

    #[test]
    fn a_foreign_uid_without_run_as_group_gets_group_zero() -> Result<(), String> {
        let p = pod(Some(PodSecurityContext {
            run_as_user: Some(1000),
            ..Default::default()
        }));
        let id = identity(&p, &container(None), ImageKind::Project)?;
        assert_eq!((id.uid, id.gid), (1000, 0));
        Ok(())
    }

    #[test]
    fn run_as_non_root_refuses_uid_zero() {
        let p = pod(Some(PodSecurityContext {
            run_as_non_root: Some(true),
            ..Default::default()
        }));
        let err = identity(&p, &container(None), ImageKind::Kafka).err();
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("runAsNonRoot and image will run as root")),
            "{err:?}"
        );
        assert!(identity(&p, &container(None), ImageKind::Project).is_ok());
    }

    #[test]
    fn volume_files_are_group_readable_only_with_an_fs_group() {
        assert_eq!(volume_file_owner(0o440, None), (0, 0, 0o440));
        assert_eq!(volume_file_owner(0o400, Some(65532)), (0, 65532, 0o440));
        assert_eq!(volume_file_owner(0o644, Some(7)), (0, 7, 0o644));
    }
}
