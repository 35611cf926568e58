//! The official Apache Kafka image (`apache/kafka:<version>`) on the node agent. There is no
//! image and no shell here: a container that runs one of the image's tool scripts
//! (`/opt/kafka/bin/kafka-<tool>.sh`) becomes a JVM running that script's main class from
//! the stack's cached Kafka jars, with the JVM options the script would give it.
//! The rules are pure; only [`KafkaTools::discover`] looks at the file system.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::launch::{Launch, expand};

/// Where the image keeps its tool scripts.
pub const BIN_DIR: &str = "/opt/kafka/bin/";

/// Tool script → main class (Kafka 4.x; each class checked against the cached jars, see the
/// test `every_tool_class_is_in_the_cached_jars`).
pub const TOOLS: &[(&str, &str)] = &[
    ("kafka-acls.sh", "org.apache.kafka.tools.AclCommand"),
    (
        "kafka-broker-api-versions.sh",
        "org.apache.kafka.tools.BrokerApiVersionsCommand",
    ),
    ("kafka-configs.sh", "kafka.admin.ConfigCommand"),
    (
        "kafka-console-consumer.sh",
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
    ),
    (
        "kafka-console-producer.sh",
        "org.apache.kafka.tools.ConsoleProducer",
    ),
    (
        "kafka-consumer-groups.sh",
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    ),
    (
        "kafka-consumer-perf-test.sh",
        "org.apache.kafka.tools.ConsumerPerformance",
    ),
    (
        "kafka-delete-records.sh",
        "org.apache.kafka.tools.DeleteRecordsCommand",
    ),
    (
        "kafka-get-offsets.sh",
        "org.apache.kafka.tools.GetOffsetShell",
    ),
    (
        "kafka-leader-election.sh",
        "org.apache.kafka.tools.LeaderElectionCommand",
    ),
    (
        "kafka-metadata-quorum.sh",
        "org.apache.kafka.tools.MetadataQuorumCommand",
    ),
    (
        "kafka-producer-perf-test.sh",
        "org.apache.kafka.tools.ProducerPerformance",
    ),
    (
        "kafka-reassign-partitions.sh",
        "org.apache.kafka.tools.reassign.ReassignPartitionsCommand",
    ),
    ("kafka-topics.sh", "org.apache.kafka.tools.TopicCommand"),
    (
        "kafka-transactions.sh",
        "org.apache.kafka.tools.TransactionsCommand",
    ),
    (
        "kafka-verifiable-consumer.sh",
        "org.apache.kafka.tools.VerifiableConsumer",
    ),
    (
        "kafka-verifiable-producer.sh",
        "org.apache.kafka.tools.VerifiableProducer",
    ),
];

/// The heap unless the container sets `KAFKA_HEAP_OPTS` (as Kafka's scripts honour it).
pub const DEFAULT_HEAP_OPTS: &str = "-Xms64m -Xmx256m";
/// Small, fast-starting JVM (as `_kafka_tool_jvm_opts` in e2e/stack/kafka.sh) unless the
/// container sets `KAFKA_JVM_PERFORMANCE_OPTS`. JVM warnings go to stderr, never stdout,
/// where tools print what tests parse.
pub const DEFAULT_JVM_OPTS: &str = "-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss512k \
     -XX:+PerfDisableSharedMem -Djava.awt.headless=true -Xlog:disable -Xlog:all=warning:stderr";

/// The JVM and jars that apache/kafka containers run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaTools {
    pub java: PathBuf,
    /// The dir of Kafka's jars (classpath `<lib>/*`).
    pub lib: PathBuf,
    /// log4j2 config given to every tool (`-Dlog4j2.configurationFile`).
    pub log4j: Option<PathBuf>,
}

impl KafkaTools {
    /// From the agent's `--kafka-lib` / `--kafka-log4j` and its own `JAVA_HOME` / `PATH`.
    /// The error is the message apache/kafka containers wait with.
    pub fn discover(lib: Option<&Path>, log4j: Option<&Path>) -> Result<Self, String> {
        let lib = lib.ok_or(
            "the node agent was started without --kafka-lib, so it cannot run apache/kafka containers",
        )?;
        let lib = std::fs::canonicalize(lib)
            .map_err(|e| format!("--kafka-lib {}: {e}", lib.display()))?;
        let has_tools = std::fs::read_dir(&lib)
            .map_err(|e| format!("--kafka-lib {}: {e}", lib.display()))?
            .filter_map(Result::ok)
            .any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("kafka-tools-") && name.ends_with(".jar")
            });
        if !has_tools {
            return Err(format!(
                "--kafka-lib {} holds no kafka-tools-*.jar",
                lib.display()
            ));
        }
        let log4j = match log4j {
            Some(f) if f.is_file() => Some(std::fs::canonicalize(f).unwrap_or(f.to_path_buf())),
            Some(f) => return Err(format!("--kafka-log4j {}: no such file", f.display())),
            None => None,
        };
        let java_home = std::env::var_os("JAVA_HOME").filter(|h| !h.is_empty());
        let java = find_java(
            java_home.as_deref(),
            std::env::var_os("PATH").as_deref(),
            &|p| p.is_file(),
        )
        .ok_or_else(|| match &java_home {
            Some(home) => format!(
                "no java for apache/kafka containers: JAVA_HOME={} has no bin/java",
                Path::new(home).display()
            ),
            None => "no java for apache/kafka containers: JAVA_HOME is unset and there is no java on the node agent's PATH".into(),
        })?;
        Ok(KafkaTools { java, lib, log4j })
    }
}

/// `$JAVA_HOME/bin/java` when `JAVA_HOME` is set, else the first `java` on `PATH`.
pub fn find_java(
    java_home: Option<&OsStr>,
    path: Option<&OsStr>,
    exists: &dyn Fn(&Path) -> bool,
) -> Option<PathBuf> {
    if let Some(home) = java_home.filter(|h| !h.is_empty()) {
        let java = Path::new(home).join("bin").join("java");
        return exists(&java).then_some(java);
    }
    std::env::split_paths(path?)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join("java"))
        .find(|java| exists(java))
}

/// The official image: repository `apache/kafka` on any registry, any tag or digest
/// (`apache/kafka:4.2.0`, `docker.io/apache/kafka:4.1.1`). Not `apache/kafka-native`,
/// `bitnami/kafka`, or the Docker library's `kafka`.
pub fn is_kafka_image(image: &str) -> bool {
    repository(image) == "apache/kafka"
}

/// The repository path of an image reference, without registry, `:tag` and `@digest`:
/// `localhost:5000/apache/kafka:4.2.0` → `apache/kafka`.
fn repository(image: &str) -> &str {
    let name = image.split('@').next().unwrap_or(image);
    // A tag can only follow the last `/` (a registry's `:port` comes before it).
    let name = match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => &name[..colon],
        _ => name,
    };
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            rest
        }
        _ => name,
    }
}

/// The main class of a tool script of the image (`/opt/kafka/bin/kafka-topics.sh`).
pub fn main_class(script: &str) -> Option<&'static str> {
    let name = script.strip_prefix(BIN_DIR)?;
    TOOLS
        .iter()
        .find(|(s, _)| *s == name)
        .map(|(_, class)| *class)
}

/// The tool a container runs and its arguments: `command[0]` is the script (the rest of
/// `command`, then `args`, are its arguments); with no `command`, `args[0]` is (the image's
/// entrypoint runs its arguments). The error says why the container cannot run.
pub fn tool<'a>(
    command: &'a [String],
    args: &'a [String],
) -> Result<(&'static str, Vec<&'a String>), String> {
    let (script, tool_args): (&String, Vec<&String>) = match (command.split_first(), args) {
        (Some((first, rest)), _) => (first, rest.iter().chain(args).collect()),
        (None, [first, rest @ ..]) => (first, rest.iter().collect()),
        (None, []) => {
            return Err(format!(
                "apache/kafka without command or args starts a Kafka broker, which the node agent does not run; \
                 give command: [{BIN_DIR}kafka-<tool>.sh]"
            ));
        }
    };
    if let Some(class) = main_class(script) {
        return Ok((class, tool_args));
    }
    let known: Vec<&str> = TOOLS.iter().map(|(s, _)| *s).collect();
    let why = if script.starts_with(BIN_DIR) {
        format!("{script} is not a Kafka tool the node agent runs")
    } else {
        format!(
            "{script:?} is not a Kafka tool script; the node agent runs only {BIN_DIR}kafka-*.sh tools of apache/kafka"
        )
    };
    Err(format!("{why} (it runs: {})", known.join(", ")))
}

/// The JVM launch of an apache/kafka container, composed as `kafka-run-class.sh` does:
/// `java $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS $KAFKA_LOG4J_OPTS -cp <lib>/* $KAFKA_OPTS
/// <MainClass> <args>`, each variable from the container's `env` (defaults above; the log4j
/// default is `--kafka-log4j`). `$(VAR)` references in `command`/`args` are expanded first.
pub fn build_kafka_launch(
    tools: &KafkaTools,
    command: &[String],
    args: &[String],
    env: &HashMap<String, String>,
) -> Result<Launch, String> {
    let lookup = |name: &str| env.get(name).cloned();
    let command: Vec<String> = command.iter().map(|c| expand(c, &lookup)).collect();
    let args: Vec<String> = args.iter().map(|a| expand(a, &lookup)).collect();
    let (class, tool_args) = tool(&command, &args)?;
    let opts = |name: &str, default: &str| -> Vec<String> {
        let value = env.get(name).map(String::as_str).unwrap_or(default);
        value.split_whitespace().map(str::to_string).collect()
    };
    let log4j = tools
        .log4j
        .as_ref()
        .map(|f| format!("-Dlog4j2.configurationFile={}", f.display()))
        .unwrap_or_default();
    let mut jvm = Vec::new();
    jvm.extend(opts("KAFKA_HEAP_OPTS", DEFAULT_HEAP_OPTS));
    jvm.extend(opts("KAFKA_JVM_PERFORMANCE_OPTS", DEFAULT_JVM_OPTS));
    jvm.extend(opts("KAFKA_LOG4J_OPTS", &log4j));
    jvm.push("-cp".into());
    jvm.push(tools.lib.join("*").display().to_string());
    jvm.extend(opts("KAFKA_OPTS", ""));
    jvm.push(class.to_string());
    jvm.extend(tool_args.into_iter().cloned());
    Ok(Launch {
        program: tools.java.clone(),
        args: jvm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn tools() -> KafkaTools {
        KafkaTools {
            java: PathBuf::from("/usr/bin/java"),
            lib: PathBuf::from("/cache/kafka-4.2.0/lib"),
            log4j: Some(PathBuf::from("/repo/e2e/kafka/log4j2-tools.properties")),
        }
    }

    fn tool_of(command: &[&str], args: &[&str]) -> Result<(&'static str, Vec<String>), String> {
        let (command, args) = (strings(command), strings(args));
        tool(&command, &args).map(|(class, rest)| (class, rest.into_iter().cloned().collect()))
    }

    fn class_of(command: &[&str], args: &[&str]) -> Result<&'static str, String> {
        tool_of(command, args).map(|(class, _)| class)
    }

    #[test]
    fn apache_kafka_images_match_on_any_registry_and_tag() {
        for image in [
            "apache/kafka",
            "apache/kafka:4.2.0",
            "docker.io/apache/kafka:4.1.1",
            "registry-1.docker.io/apache/kafka:latest",
            "localhost:5000/apache/kafka:4.2.0",
            "localhost/apache/kafka",
            "apache/kafka@sha256:abc",
            "apache/kafka:4.2.0@sha256:abc",
        ] {
            assert!(is_kafka_image(image), "{image}");
        }
        for image in [
            "kafka:4.2.0",
            "docker.io/library/kafka:4",
            "bitnami/kafka:4.0",
            "apache/kafka-native:4.2.0",
            "confluentinc/cp-kafka:7.9.0",
            "example/apache/kafka:4.2.0",
            "tributary:dev",
            "",
        ] {
            assert!(!is_kafka_image(image), "{image}");
        }
    }

    #[test]
    fn the_tool_scripts_map_to_their_kafka_4_main_classes() {
        for (script, class) in [
            (
                "kafka-verifiable-consumer.sh",
                "org.apache.kafka.tools.VerifiableConsumer",
            ),
            (
                "kafka-verifiable-producer.sh",
                "org.apache.kafka.tools.VerifiableProducer",
            ),
            (
                "kafka-console-consumer.sh",
                "org.apache.kafka.tools.consumer.ConsoleConsumer",
            ),
            (
                "kafka-console-producer.sh",
                "org.apache.kafka.tools.ConsoleProducer",
            ),
            (
                "kafka-consumer-groups.sh",
                "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
            ),
            ("kafka-topics.sh", "org.apache.kafka.tools.TopicCommand"),
            (
                "kafka-producer-perf-test.sh",
                "org.apache.kafka.tools.ProducerPerformance",
            ),
        ] {
            assert_eq!(main_class(&format!("/opt/kafka/bin/{script}")), Some(class));
        }
        // Only the image's own path names a script.
        assert_eq!(main_class("kafka-topics.sh"), None);
        assert_eq!(main_class("/usr/bin/kafka-topics.sh"), None);
        assert_eq!(main_class("/opt/kafka/bin/"), None);
    }

    #[test]
    fn the_script_is_command0_or_with_no_command_args0() {
        let (class, rest) = tool_of(
            &["/opt/kafka/bin/kafka-topics.sh", "--list"],
            &["--bootstrap-server", "127.0.0.1:19092"],
        )
        .expect("command form");
        assert_eq!(class, "org.apache.kafka.tools.TopicCommand");
        assert_eq!(rest, ["--list", "--bootstrap-server", "127.0.0.1:19092"]);

        let (class, rest) = tool_of(
            &[],
            &[
                "/opt/kafka/bin/kafka-verifiable-consumer.sh",
                "--topic",
                "orders",
            ],
        )
        .expect("args form");
        assert_eq!(class, "org.apache.kafka.tools.VerifiableConsumer");
        assert_eq!(rest, ["--topic", "orders"]);

        // With a command, args are the command's arguments, never the script.
        assert!(
            class_of(
                &["/bin/sh", "-c"],
                &["/opt/kafka/bin/kafka-topics.sh --list"]
            )
            .is_err()
        );
    }

    #[test]
    fn unknown_scripts_and_other_commands_are_refused_with_a_message() {
        let e = class_of(
            &["/opt/kafka/bin/kafka-server-start.sh"],
            &["server.properties"],
        )
        .expect_err("the broker script");
        assert!(
            e.contains(
                "/opt/kafka/bin/kafka-server-start.sh is not a Kafka tool the node agent runs"
            ),
            "{e}"
        );
        assert!(e.contains("kafka-verifiable-consumer.sh"), "{e}");

        let e = class_of(&["sleep", "3600"], &[]).expect_err("not a script");
        assert!(e.contains("\"sleep\" is not a Kafka tool script"), "{e}");

        let e = class_of(&[], &[]).expect_err("the image's default");
        assert!(e.contains("starts a Kafka broker"), "{e}");
    }

    #[test]
    fn the_launch_is_a_small_jvm_on_the_cached_jars() {
        let env = HashMap::from([("TOPIC".to_string(), "orders".to_string())]);
        let l = build_kafka_launch(
            &tools(),
            &strings(&["/opt/kafka/bin/kafka-verifiable-consumer.sh"]),
            &strings(&["--topic", "$(TOPIC)", "--group-id", "billing"]),
            &env,
        )
        .expect("launch");
        assert_eq!(l.program, Path::new("/usr/bin/java"));
        let mut want = strings(&["-Xms64m", "-Xmx256m"]);
        want.extend(DEFAULT_JVM_OPTS.split_whitespace().map(str::to_string));
        want.extend(strings(&[
            "-Dlog4j2.configurationFile=/repo/e2e/kafka/log4j2-tools.properties",
            "-cp",
            "/cache/kafka-4.2.0/lib/*",
            "org.apache.kafka.tools.VerifiableConsumer",
            "--topic",
            "orders",
            "--group-id",
            "billing",
        ]));
        assert_eq!(l.args, want);
        assert!(l.args.iter().any(|a| a == "-XX:+UseSerialGC"));
    }

    #[test]
    fn kafka_heap_opts_and_the_other_script_variables_are_honoured() {
        let env = HashMap::from([
            (
                "KAFKA_HEAP_OPTS".to_string(),
                " -Xmx128m  -Xms32m ".to_string(),
            ),
            ("KAFKA_OPTS".to_string(), "-Dfoo=bar".to_string()),
            (
                "KAFKA_LOG4J_OPTS".to_string(),
                "-Dlog4j2.configurationFile=/x".to_string(),
            ),
            (
                "KAFKA_JVM_PERFORMANCE_OPTS".to_string(),
                "-XX:+UseG1GC".to_string(),
            ),
        ]);
        let l = build_kafka_launch(
            &KafkaTools {
                log4j: None,
                ..tools()
            },
            &[],
            &strings(&["/opt/kafka/bin/kafka-topics.sh", "--list"]),
            &env,
        )
        .expect("launch");
        assert_eq!(
            l.args,
            strings(&[
                "-Xmx128m",
                "-Xms32m",
                "-XX:+UseG1GC",
                "-Dlog4j2.configurationFile=/x",
                "-cp",
                "/cache/kafka-4.2.0/lib/*",
                "-Dfoo=bar",
                "org.apache.kafka.tools.TopicCommand",
                "--list",
            ])
        );

        // Without --kafka-log4j and KAFKA_LOG4J_OPTS there is no log4j option at all.
        let l = build_kafka_launch(
            &KafkaTools {
                log4j: None,
                ..tools()
            },
            &strings(&["/opt/kafka/bin/kafka-topics.sh"]),
            &[],
            &HashMap::new(),
        )
        .expect("launch");
        assert!(!l.args.iter().any(|a| a.contains("log4j")), "{:?}", l.args);
        assert!(!l.args.iter().any(String::is_empty), "{:?}", l.args);
    }

    #[test]
    fn java_comes_from_java_home_else_from_path() {
        let have = |p: &Path| p == Path::new("/jdk/bin/java") || p == Path::new("/usr/bin/java");
        let path = OsStr::new("relative:/usr/local/bin:/usr/bin:/bin");
        assert_eq!(
            find_java(Some(OsStr::new("/jdk")), Some(path), &have),
            Some(PathBuf::from("/jdk/bin/java"))
        );
        assert_eq!(
            find_java(None, Some(path), &have),
            Some(PathBuf::from("/usr/bin/java"))
        );
        assert_eq!(
            find_java(Some(OsStr::new("")), Some(path), &have),
            Some(PathBuf::from("/usr/bin/java"))
        );
        // A JAVA_HOME without java is an answer, not a reason to look elsewhere.
        assert_eq!(
            find_java(Some(OsStr::new("/nojdk")), Some(path), &have),
            None
        );
        assert_eq!(find_java(None, None, &have), None);
    }

    /// Checks the table against the stack's cached jars when they are on this machine
    /// (`TRIBUTARY_KAFKA_LIB`, else `~/.cache/tributary/kafka-*/lib`); zip archives keep
    /// entry names uncompressed, so a byte search finds each class file.
    #[test]
    fn every_tool_class_is_in_the_cached_jars() {
        let lib = std::env::var_os("TRIBUTARY_KAFKA_LIB")
            .map(PathBuf::from)
            .or_else(|| {
                let cache = PathBuf::from(std::env::var_os("HOME")?).join(".cache/tributary");
                std::fs::read_dir(cache)
                    .ok()?
                    .filter_map(Result::ok)
                    .map(|e| e.path().join("lib"))
                    .find(|p| {
                        p.parent()
                            .and_then(|d| d.file_name())
                            .is_some_and(|n| n.to_string_lossy().starts_with("kafka-"))
                            && p.is_dir()
                    })
            });
        let Some(lib) = lib.filter(|l| l.is_dir()) else {
            eprintln!("no cached Kafka jars on this machine: skipped");
            return;
        };
        let jars: Vec<Vec<u8>> = std::fs::read_dir(&lib)
            .expect("read the lib dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("kafka"))
            })
            .map(|p| std::fs::read(p).expect("read a jar"))
            .collect();
        for (script, class) in TOOLS {
            let entry = format!("{}.class", class.replace('.', "/"));
            let found = jars
                .iter()
                .any(|jar| jar.windows(entry.len()).any(|w| w == entry.as_bytes()));
            assert!(found, "{script}: {entry} is in no jar of {}", lib.display());
        }
    }
}
