//! Replication and translation over mutual TLS and SASL/SCRAM-SHA-512, against the stack's
//! secure Kafka cluster (`TRIBUTARY_KAFKA_SECURE`: certificates made with openssl and the
//! SCRAM user created with Kafka's storage tool at stack-up): replicators copy into and out
//! of it, checkpoint-sync reads its checkpoints and group offsets through it, a wrong
//! password is a clear, non-fatal error, and no log holds the password or the private key.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{
    Process, commit_offsets, committed, create_topic, end_offsets, free_port, http_get, produce,
    stack_regions, tributary_bin, unique, wait_for,
};

const PARTITIONS: i32 = 2;
const RECORDS: usize = 200;

struct Secure {
    /// SASL_SSL listener: what the components under test use.
    bootstrap: String,
    /// PLAINTEXT listener of the same broker: the test's own setup and checks.
    plaintext: String,
    pki: PathBuf,
}

impl Secure {
    fn from_env() -> Self {
        let var = |name: &str| {
            std::env::var(name)
                .unwrap_or_else(|_| panic!("{name} is not set: the stack must run (make stack-up)"))
        };
        Self {
            bootstrap: var("TRIBUTARY_KAFKA_SECURE"),
            plaintext: var("TRIBUTARY_KAFKA_SECURE_PLAINTEXT"),
            pki: var("TRIBUTARY_KAFKA_SECURE_PKI").into(),
        }
    }

    fn password(&self) -> String {
        std::fs::read_to_string(self.pki.join("tributary.password"))
            .expect("the SCRAM password file")
            .trim()
            .to_owned()
    }

    /// The connection flags of one side (`source`, `dest`, `from`, `to`) over SASL_SSL.
    fn flags(&self, side: &str, password_file: &std::path::Path) -> Vec<String> {
        let pki = |f: &str| self.pki.join(f).display().to_string();
        vec![
            format!("--{side}-bootstrap={}", self.bootstrap),
            format!("--{side}-tls-ca-file={}", pki("ca.crt")),
            format!("--{side}-tls-cert-file={}", pki("client.crt")),
            format!("--{side}-tls-key-file={}", pki("client.key")),
            format!("--{side}-sasl-mechanism=SCRAM-SHA-512"),
            format!("--{side}-sasl-username=tributary"),
            format!("--{side}-sasl-password-file={}", password_file.display()),
        ]
    }
}

fn replicator(name: &str, args: Vec<String>, topic: &str, checkpoints: &str) -> Process {
    let port = free_port();
    let mut command = Command::new(tributary_bin());
    command.arg("replicate").args(args).args([
        "--route",
        &unique(name),
        "--topics",
        topic,
        "--topic-naming",
        "prefixed",
        "--checkpoint-topic",
        checkpoints,
        "--checkpoint-interval",
        "500ms",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    Process::spawn(name, command, port)
}

#[test]
fn replication_and_translation_work_over_mutual_tls_and_scram() {
    // None only with TRIBUTARY_SKIP_E2E=1 (it says SKIPPED); a missing stack fails.
    let Some(regions) = stack_regions() else {
        return;
    };
    let (east, west) = (&regions[0], &regions[1]);
    let secure = Secure::from_env();
    let password_file = secure.pki.join("tributary.password");
    let topic = unique("orders");
    let checkpoints = unique("ckpt");
    let group = unique("billing");
    create_topic(&east.regional, &topic, PARTITIONS);

    // east → secure (destination over SASL_SSL) and east → west (plaintext): the group's
    // records in both aggregates, as `east.<topic>`.
    let mut into_secure = {
        let mut args = vec![
            "--source-region=east".to_owned(),
            "--dest-region=secure".to_owned(),
            format!("--source-bootstrap={}", east.regional),
        ];
        args.extend(secure.flags("dest", &password_file));
        replicator("east-to-secure", args, &topic, &checkpoints)
    };
    let mut into_west = replicator(
        "east-to-west",
        vec![
            "--source-region=east".to_owned(),
            "--dest-region=west".to_owned(),
            format!("--source-bootstrap={}", east.regional),
            format!("--dest-bootstrap={}", west.aggregate),
        ],
        &topic,
        &checkpoints,
    );
    // secure → secure: a source over SASL_SSL too (the broker serves as regional cluster of
    // region `secure` and as its aggregate: `secure.<topic>`).
    let secure_topic = unique("payments");
    create_topic(&secure.plaintext, &secure_topic, PARTITIONS);
    let mut within_secure = {
        let mut args = vec![
            "--source-region=secure".to_owned(),
            "--dest-region=secure".to_owned(),
        ];
        args.extend(secure.flags("source", &password_file));
        args.extend(secure.flags("dest", &password_file));
        replicator("secure-to-secure", args, &secure_topic, &unique("ckpt"))
    };
    produce(&east.regional, &topic, PARTITIONS, "east", RECORDS, 0);
    produce(
        &secure.plaintext,
        &secure_topic,
        PARTITIONS,
        "secure",
        RECORDS,
        0,
    );
    let aggregate_topic = format!("east.{topic}");
    let total = |bootstrap: &str, topic: &str| -> i64 {
        end_offsets(bootstrap, topic, PARTITIONS).values().sum()
    };
    wait_for(
        "east's records copied over TLS + SCRAM",
        Duration::from_secs(60),
        || total(&secure.plaintext, &aggregate_topic) >= RECORDS as i64,
    );
    wait_for("east's records in west", Duration::from_secs(60), || {
        total(&west.aggregate, &aggregate_topic) >= RECORDS as i64
    });
    wait_for(
        "records copied from a source over TLS + SCRAM",
        Duration::from_secs(60),
        || total(&secure.plaintext, &format!("secure.{secure_topic}")) >= RECORDS as i64,
    );
    for r in [&into_secure, &into_west, &within_secure] {
        wait_for(
            &format!("{} ready", r.name),
            Duration::from_secs(30),
            || {
                http_get(r.port, "/readyz")
                    .is_ok_and(|response| response.starts_with("HTTP/1.1 200"))
            },
        );
    }

    // The group consumed everything in `secure`; its standby position in west comes from
    // a sync that reads the secure cluster's checkpoints and offsets over TLS + SCRAM.
    let ends = end_offsets(&secure.plaintext, &aggregate_topic, PARTITIONS);
    commit_offsets(&secure.plaintext, &group, &aggregate_topic, &ends);
    // The last checkpoints (interval 500 ms) reach the checkpoint topic.
    std::thread::sleep(Duration::from_millis(1500));
    let plan_file = std::env::temp_dir().join(format!("{group}.plan.json"));
    let mut sync = Command::new(env!("CARGO_BIN_EXE_tributary-checkpoint-sync"));
    sync.args([
        "--group",
        &group,
        "--topics",
        &aggregate_topic,
        "--topic-naming",
        "prefixed",
        "--from-region",
        "secure",
        "--to-region",
        "west",
        "--to-bootstrap",
        &west.aggregate,
        "--checkpoint-topic",
        &checkpoints,
        "--sources",
        "east",
        "--once",
        "--final",
        "--plan-file",
    ])
    .arg(&plan_file)
    .args(secure.flags("from", &password_file))
    .env("RUST_LOG", "info");
    let output = sync.output().expect("checkpoint-sync runs");
    let sync_log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "--once --final over TLS + SCRAM failed:\n{sync_log}"
    );
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&plan_file).expect("plan file")).expect("plan JSON");
    assert_eq!(plan["exact"], true, "{plan}");
    let in_west = committed(&west.aggregate, &group, &aggregate_topic, PARTITIONS);
    assert_eq!(
        in_west,
        end_offsets(&west.aggregate, &aggregate_topic, PARTITIONS),
        "the group resumes in west after everything it consumed in secure"
    );

    // A wrong password: a clear error, no crash loop, no password in the log.
    let wrong = std::env::temp_dir().join(format!("{group}.wrong-password"));
    let wrong_password = "not-the-password-7f3a";
    std::fs::write(&wrong, wrong_password).expect("writing the wrong password");
    let mut refused = {
        let mut args = vec![
            "--source-region=east".to_owned(),
            "--dest-region=secure".to_owned(),
            format!("--source-bootstrap={}", east.regional),
        ];
        args.extend(secure.flags("dest", &wrong));
        replicator("wrong-password", args, &unique("nothing"), &unique("ckpt"))
    };
    wait_for(
        "the authentication failure reported",
        Duration::from_secs(30),
        || refused.log().to_lowercase().contains("authentication"),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        refused.child.try_wait().ok().flatten().is_none(),
        "a wrong password must not end the replicator (no crash loop):\n{}",
        refused.log()
    );
    let readyz = http_get(refused.port, "/readyz").unwrap_or_default();
    assert!(
        !readyz.starts_with("HTTP/1.1 200"),
        "not ready with a wrong password: {readyz}"
    );

    // No log holds a secret.
    let key = std::fs::read_to_string(secure.pki.join("client.key")).expect("client key");
    let key_line = key
        .lines()
        .find(|l| !l.starts_with("-----") && l.len() > 40)
        .expect("a base64 line of the key")
        .to_owned();
    let logs = [
        ("east-to-secure", into_secure.log()),
        ("east-to-west", into_west.log()),
        ("secure-to-secure", within_secure.log()),
        ("wrong-password", refused.log()),
        ("checkpoint-sync", sync_log),
    ];
    for (name, log) in &logs {
        for (what, secret) in [
            ("the password", secure.password().as_str()),
            ("the wrong password", wrong_password),
            ("the private key", key_line.as_str()),
        ] {
            assert!(!log.contains(secret), "{name}'s log holds {what}:\n{log}");
        }
    }
    for r in [
        &mut into_secure,
        &mut into_west,
        &mut within_secure,
        &mut refused,
    ] {
        r.terminate();
    }
}
