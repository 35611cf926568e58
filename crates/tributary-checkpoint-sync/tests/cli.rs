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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(28997)
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let _ = write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    );
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body);
    body
}

#[test]
fn standby_keeps_serving_and_counts_errors_while_a_cluster_is_unreachable()
-> Result<(), Box<dyn std::error::Error>> {
    let port = free_port();
    // A standby needs its epoch (fencing fails closed).
    let epoch_file = std::env::temp_dir().join(format!("cs-cli-epoch-{}", std::process::id()));
    std::fs::write(&epoch_file, "1\n")?;
    let mut child = sync()
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
            "--interval",
            "200ms",
            "--epoch",
            "1",
            "--epoch-file",
            epoch_file.to_str().unwrap_or_default(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    let mut metrics = String::new();
    while std::time::Instant::now() < deadline
        && !metrics.contains("tributary_checkpoint_sync_errors_total{category=\"Unreachable\"}")
    {
        std::thread::sleep(std::time::Duration::from_millis(300));
        metrics = http_get(port, "/metrics");
    }
    let healthz = http_get(port, "/healthz");
    let readyz = http_get(port, "/readyz");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait()?;
    let _ = std::fs::remove_file(&epoch_file);
    assert!(
        metrics.contains("tributary_checkpoint_sync_errors_total{category=\"Unreachable\"}"),
        "{metrics}"
    );
    assert!(healthz.contains("200 OK"), "{healthz}");
    assert!(
        readyz.contains("503"),
        "not ready without a completed round: {readyz}"
    );
    assert!(status.success(), "SIGTERM ends a standby sync with exit 0");
    Ok(())
}
