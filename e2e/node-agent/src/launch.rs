//! Pure rules that turn a container spec into a local process: which images this agent runs,
//! the argv (with kubelet's `$(VAR)` expansion) and the program to execute. The project's
//! image is handled here; the apache/kafka image's rules are in `kafka_image`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The repository's last path segment of an image reference, without `:tag` or `@digest`:
/// `registry:5000/org/tributary:1.2@sha256:..` → `tributary`.
pub fn image_name(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

/// Whether this image is the project's (runs the project's binary).
pub fn image_runs_here(image: &str, image_match: &str) -> bool {
    image_name(image) == image_match
}

/// The program for the project's image `image`: `<binaries_dir>/<tag>` when the image has a
/// tag and that file exists, else `default`.
pub fn binary_for_image(image: &str, default: &Path, binaries_dir: Option<&Path>) -> PathBuf {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let tag = last.split_once(':').map(|(_, tag)| tag);
    match (binaries_dir, tag) {
        (Some(dir), Some(tag)) if !tag.contains(['/', '.']) && dir.join(tag).is_file() => {
            dir.join(tag)
        }
        _ => default.to_path_buf(),
    }
}

/// Which launch rules apply to a container's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// The project's image (`--image-match`): [`build_launch`].
    Project,
    /// The official `apache/kafka` image: `kafka_image::build_kafka_launch`.
    Kafka,
    /// Anything else: not run.
    Other,
}

pub fn image_kind(image: &str, image_match: &str) -> ImageKind {
    if image_runs_here(image, image_match) {
        ImageKind::Project
    } else if crate::kafka_image::is_kafka_image(image) {
        ImageKind::Kafka
    } else {
        ImageKind::Other
    }
}

/// What to execute for a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The program: the project's binary, or `command[0]` as given when it names another program.
    pub program: PathBuf,
    /// Arguments after the program (argv[1..]).
    pub args: Vec<String>,
}

/// Builds the launch of a container of the project's image. `command[0]` is replaced by the
/// binary when it names the binary (`tributary`, `/tributary`, `/usr/bin/tributary`, or the
/// image-match name); any other `command[0]` is run as given (resolved on `PATH`), which tests
/// use to run e.g. `sleep` "in" the project's image. An empty `command` means the image's
/// entrypoint, i.e. the binary. `$(VAR)` references are expanded against `env`.
pub fn build_launch(
    binary: &Path,
    image_match: &str,
    command: &[String],
    args: &[String],
    env: &HashMap<String, String>,
) -> Launch {
    let lookup = |name: &str| env.get(name).cloned();
    let command: Vec<String> = command.iter().map(|c| expand(c, &lookup)).collect();
    let args: Vec<String> = args.iter().map(|a| expand(a, &lookup)).collect();
    match command.split_first() {
        None => Launch {
            program: binary.to_path_buf(),
            args,
        },
        Some((first, rest)) => {
            let program = if names_the_binary(first, binary, image_match) {
                binary.to_path_buf()
            } else {
                PathBuf::from(first)
            };
            Launch {
                program,
                args: rest.iter().cloned().chain(args).collect(),
            }
        }
    }
}

fn names_the_binary(arg0: &str, binary: &Path, image_match: &str) -> bool {
    let base = arg0.rsplit('/').next().unwrap_or(arg0);
    base == "tributary"
        || base == image_match
        || binary.file_name().is_some_and(|f| f.to_str() == Some(base))
}

/// Kubelet's `$(VAR)` expansion (k8s.io/kubernetes third_party/forked/golang/expansion):
/// `$(NAME)` becomes the value when `lookup` knows NAME and stays as written otherwise;
/// `$$` is an escaped `$`; anything else is copied.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let (text, advance) = read_variable(rest, lookup);
            out.push_str(&text);
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.push_str(&input[checkpoint.min(input.len())..]);
    out
}

/// After a `$`: returns the replacement text and how far to advance past the `$`.
fn read_variable(rest: &str, lookup: &dyn Fn(&str) -> Option<String>) -> (String, usize) {
    match rest.as_bytes()[0] {
        b'$' => ("$".to_string(), 1),
        b'(' => match rest[1..].find(')') {
            Some(end) => {
                let name = &rest[1..1 + end];
                let text = lookup(name).unwrap_or_else(|| format!("$({name})"));
                (text, end + 2)
            }
            None => ("$(".to_string(), 1),
        },
        _ => {
            // Copy `$` and the next character (which may be multi-byte) unchanged.
            let ch = rest.chars().next().map(|c| c.len_utf8()).unwrap_or(1);
            (format!("${}", &rest[..ch]), ch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_tag_with_a_build_in_the_binaries_dir_runs_that_build() {
        let dir = std::env::temp_dir().join(format!("binaries-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("binaries dir");
        std::fs::write(dir.join("wt-op"), b"").expect("a build");
        let default = Path::new("/bin/tributary");
        let pick = |image: &str| binary_for_image(image, default, Some(&dir));
        assert_eq!(pick("local/tributary:wt-op"), dir.join("wt-op"));
        assert_eq!(pick("local/tributary:dev"), default, "no such build");
        assert_eq!(pick("local/tributary"), default, "no tag");
        assert_eq!(pick("local/tributary:../x"), default, "never a path");
        assert_eq!(
            binary_for_image("local/tributary:wt-op", default, None),
            default
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn image_name_ignores_registry_tag_and_digest() {
        assert_eq!(image_name("tributary"), "tributary");
        assert_eq!(image_name("tributary:dev"), "tributary");
        assert_eq!(image_name("localhost:5000/org/tributary:1.0"), "tributary");
        assert_eq!(image_name("ghcr.io/x/tributary@sha256:abc"), "tributary");
        assert_eq!(image_name("ghcr.io/x/tributary:1@sha256:abc"), "tributary");
        assert!(!image_runs_here("busybox:1.36", "tributary"));
        assert!(!image_runs_here("ghcr.io/tributary/other:1", "tributary"));
    }

    #[test]
    fn image_kind_tells_the_project_kafka_and_other_images_apart() {
        assert_eq!(image_kind("tributary:dev", "tributary"), ImageKind::Project);
        assert_eq!(
            image_kind("apache/kafka:4.2.0", "tributary"),
            ImageKind::Kafka
        );
        assert_eq!(
            image_kind("docker.io/apache/kafka:4.1.1", "tributary"),
            ImageKind::Kafka
        );
        assert_eq!(
            image_kind("bitnami/kafka:4.0", "tributary"),
            ImageKind::Other
        );
        assert_eq!(image_kind("nginx:1.27", "tributary"), ImageKind::Other);
    }

    #[test]
    fn expansion_follows_kubelet_rules() {
        let e = env(&[("A", "1"), ("B", "two")]);
        let lookup = |n: &str| e.get(n).cloned();
        assert_eq!(expand("$(A)-$(B)", &lookup), "1-two");
        assert_eq!(expand("$(MISSING)", &lookup), "$(MISSING)");
        assert_eq!(expand("$$(A)", &lookup), "$(A)");
        assert_eq!(expand("$$$(A)", &lookup), "$1");
        assert_eq!(expand("cost $5", &lookup), "cost $5");
        assert_eq!(expand("tail $", &lookup), "tail $");
        assert_eq!(expand("$(A", &lookup), "$(A");
        assert_eq!(expand("é$é$(A)", &lookup), "é$é1");
        assert_eq!(expand("", &lookup), "");
    }

    #[test]
    fn command_naming_the_binary_is_replaced_other_programs_run_as_given() {
        let bin = Path::new("/work/target/debug/tributary");
        let e = env(&[("PORT", "8080")]);
        let l = build_launch(
            bin,
            "tributary",
            &strings(&["/tributary", "serve"]),
            &strings(&["--port=$(PORT)"]),
            &e,
        );
        assert_eq!(l.program, bin);
        assert_eq!(l.args, strings(&["serve", "--port=8080"]));

        let l = build_launch(bin, "tributary", &[], &strings(&["crd"]), &e);
        assert_eq!(l.program, bin);
        assert_eq!(l.args, strings(&["crd"]));

        let l = build_launch(
            bin,
            "tributary",
            &strings(&["sleep"]),
            &strings(&["3600"]),
            &e,
        );
        assert_eq!(l.program, Path::new("sleep"));
        assert_eq!(l.args, strings(&["3600"]));
    }
}
