//! The binary's behaviour without Kafka: bad flags and unreachable clusters fail loudly,
//! naming what to fix, and never leave a plan behind.

use std::process::Command;

fn sync() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tributary-checkpoint-sync"));
    command.env("RUST_BACKTRACE", "0").env("RUST_LOG", "error");
    command
}

#[test]
fn final_against_an_unreachable_cluster_fails_naming_it_and_writes_no_plan()
-> Result<(), Box<dyn std::error::Error>> {
    let plan_file =
        std::env::temp_dir().join(format!("cs-unreachable-{}.json", std::process::id()));
    let output = sync()
        .args([
            "--group",
            "billing",
            "--topics",
            "orders",
            "--from-region",
            "east",
            "--to-region",
            "west",
            "--from-bootstrap",
            "127.0.0.1:1",
            "--to-bootstrap",
            "127.0.0.1:2",
            "--sources",
            "east,west",
            "--once",
            "--final",
            "--plan-file",
        ])
        .arg(&plan_file)
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(output.stdout.is_empty(), "no plan printed");
    assert!(!plan_file.exists(), "no plan file written");
    assert!(
        stderr.contains("east aggregate cluster (127.0.0.1:1) is unreachable")
            && stderr.contains("check the bootstrap servers"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn bad_flags_are_refused_with_the_flag_named() -> Result<(), Box<dyn std::error::Error>> {
    let output = sync()
        .args([
            "--group",
            "billing",
            "--topics",
            "orders",
            "--from-region",
            "east",
            "--to-region",
            "east",
            "--from-bootstrap",
            "a:1",
            "--to-bootstrap",
            "b:1",
            "--sources",
            "east",
        ])
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--from-region and --to-region"), "{stderr}");
    let output = sync().args(["--group", "g", "--final"]).output()?;
    assert!(!output.status.success());
    Ok(())
}
