//! The node agent's container helper (`__mount-exec`) binds a process as a real node would:
//! the container's user and groups, file modes and ownership, a read-only root. Runs the
//! agent's binary on launch specs directly (the agent runs as root, so must this test).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::json;

const AGENT: &str = env!("CARGO_BIN_EXE_tributary-node-agent");

fn scratch(name: &str) -> PathBuf {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the node agent (and this test of it) must run as root"
    );
    let dir = std::env::temp_dir().join(format!("agent-fidelity-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("work")).expect("scratch dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(dir.join("work"), std::fs::Permissions::from_mode(0o1777))
        .expect("chmod");
    dir
}

fn secret_file(dir: &Path, mode: u32, gid: u32) -> PathBuf {
    let path = dir.join("password");
    std::fs::write(&path, "hunter2").expect("write");
    std::os::unix::fs::chown(&path, Some(0), Some(gid)).expect("chown");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

/// Runs `program args` through the helper as `identity`, with `mounts`.
fn run_as(
    dir: &Path,
    identity: serde_json::Value,
    mounts: serde_json::Value,
    program: &str,
    args: &[&str],
) -> Output {
    let spec = json!({
        "mounts": mounts,
        "working_dir": null,
        "fallback_dir": dir.join("work"),
        "program": program,
        "args": args,
        "identity": identity,
    });
    let spec_path = dir.join("launch.json");
    std::fs::write(&spec_path, serde_json::to_vec(&spec).expect("json")).expect("spec");
    std::process::Command::new(AGENT)
        .arg("__mount-exec")
        .arg(&spec_path)
        .output()
        .expect("run the helper")
}

fn nonroot(groups: &[u32], read_only_root: bool) -> serde_json::Value {
    json!({"uid": 65532, "gid": 65532, "groups": groups, "read_only_root": read_only_root, "no_new_privs": true})
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_root_owned_0400_file_is_unreadable_to_a_nonroot_container() {
    let dir = scratch("0400");
    let file = secret_file(&dir, 0o400, 0);
    let out = run_as(
        &dir,
        nonroot(&[], false),
        json!([]),
        "/bin/cat",
        &[&file.display().to_string()],
    );
    assert!(!out.status.success(), "read as uid 65532: {}", text(&out));
    assert!(text(&out).contains("Permission denied"), "{}", text(&out));
    // The same file is readable to the helper's own user (root): the refusal is the uid's.
    let out = run_as(
        &dir,
        json!(null),
        json!([]),
        "/bin/cat",
        &[&file.display().to_string()],
    );
    assert_eq!(text(&out), "hunter2");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_0440_secret_is_readable_only_through_the_fs_group() {
    let dir = scratch("fsgroup");
    // What the kubelet leaves for defaultMode 0440: root:root without fsGroup ...
    let file = secret_file(&dir, 0o440, 0);
    let out = run_as(
        &dir,
        nonroot(&[], false),
        json!([]),
        "/bin/cat",
        &[&file.display().to_string()],
    );
    assert!(!out.status.success(), "no fsGroup: {}", text(&out));
    // ... and root:<fsGroup> with fsGroup 2000, a supplementary group of the process.
    let file = secret_file(&dir, 0o440, 2000);
    let out = run_as(
        &dir,
        nonroot(&[2000], false),
        json!([]),
        "/bin/cat",
        &[&file.display().to_string()],
    );
    assert_eq!(text(&out), "hunter2");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_process_has_the_container_identity() {
    let dir = scratch("id");
    let out = run_as(
        &dir,
        nonroot(&[2000, 3000], false),
        json!([]),
        "/bin/sh",
        &["-c", "id -u; id -g; id -G"],
    );
    assert_eq!(text(&out), "65532\n65532\n65532 2000 3000\n");
    let status = run_as(
        &dir,
        nonroot(&[], false),
        json!([]),
        "/bin/sh",
        &["-c", "grep NoNewPrivs /proc/self/status"],
    );
    assert!(
        text(&status).contains("NoNewPrivs:\t1"),
        "{}",
        text(&status)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_read_only_root_refuses_writes_outside_the_pods_volumes() {
    let dir = scratch("rofs");
    let volume = dir.join("volume");
    std::fs::create_dir_all(&volume).expect("volume");
    std::fs::set_permissions(&volume, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let target = dir.join("mounted");
    let mounts = json!([{"source": volume, "target": target, "read_only": false}]);
    let outside = dir.join("work/outside");
    let inside = target.join("inside");
    let script = format!(
        "echo x > {}; echo \"outside=$?\"; echo y > {}; echo \"inside=$?\"",
        outside.display(),
        inside.display()
    );
    let out = run_as(
        &dir,
        nonroot(&[], true),
        mounts.clone(),
        "/bin/sh",
        &["-c", &script],
    );
    let t = text(&out);
    assert!(
        t.contains("Read-only file system") && t.contains("outside=") && !t.contains("outside=0"),
        "{t}"
    );
    assert!(t.contains("inside=0"), "{t}");
    assert!(
        volume.join("inside").exists(),
        "the write went to the volume"
    );
    // Without readOnlyRootFilesystem the same write succeeds.
    let out = run_as(
        &dir,
        nonroot(&[], false),
        mounts,
        "/bin/sh",
        &["-c", &script],
    );
    assert!(text(&out).contains("outside=0"), "{}", text(&out));
    let _ = std::fs::remove_dir_all(&dir);
}
