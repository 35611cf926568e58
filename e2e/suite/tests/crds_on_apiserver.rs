//! The CRDs on the real API server: they become Established, the valid examples are accepted,
//! and every invalid example is refused with the error its header documents.

use tributary_e2e::kube_util::{create, install_crds, parse_yaml_docs, replace};
use tributary_e2e::{Stack, TestNamespace, repo_path};

fn header(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
        .unwrap_or_else(|| panic!("example lacks `# {key}:`"))
        .to_string()
}

fn yaml_files(dir: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(repo_path(dir))
        .expect("examples dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn valid_examples_are_accepted_by_the_api_server() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    install_crds(&stack.client).await;
    TestNamespace::run(&stack, "valid-examples", |ns| async move {
        for file in yaml_files("examples/three-regions") {
            for obj in parse_yaml_docs(&std::fs::read_to_string(&file).expect("readable")) {
                create(&ns.stack.client, &ns.name, &obj)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("{}: {:?} refused: {e}", file.display(), obj.metadata.name)
                    });
            }
        }
    })
    .await;
}

#[tokio::test]
async fn invalid_examples_are_refused_with_a_message_naming_the_field() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    install_crds(&stack.client).await;
    TestNamespace::run(&stack, "invalid-examples", |ns| async move {
        let files = yaml_files("examples/invalid");
        assert!(files.len() >= 15);
        for file in files {
            let text = std::fs::read_to_string(&file).expect("readable");
            let (field, expected) = (header(&text, "field"), header(&text, "error"));
            let docs = parse_yaml_docs(&text);
            let refused = match docs.as_slice() {
                [obj] => create(&ns.stack.client, &ns.name, obj).await,
                [original, update] => {
                    create(&ns.stack.client, &ns.name, original)
                        .await
                        .unwrap_or_else(|e| {
                            panic!("{}: the original must be accepted: {e}", file.display())
                        });
                    replace(&ns.stack.client, &ns.name, update).await
                }
                _ => panic!("{}: one document, or two for an update", file.display()),
            };
            let message = match refused {
                Err(kube::Error::Api(status)) => status.message,
                Err(other) => panic!("{}: unexpected error {other}", file.display()),
                Ok(_) => panic!(
                    "{}: the API server accepted an invalid object",
                    file.display()
                ),
            };
            assert!(
                message.contains(&expected) && message.contains(&field),
                "{}: expected a message naming `{field}` containing `{expected}`, got: {message}",
                file.display()
            );
        }
    })
    .await;
}
