//! A container's environment, resolved as the kubelet does: `envFrom` first, then `env` in
//! order (each value may reference earlier ones with `$(VAR)`).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::launch::expand;
use crate::sources::{Sources, field_ref};

/// Resolves `envFrom` and `env`. An error is the message of a `CreateContainerConfigError`.
pub async fn container_env(
    sources: &mut Sources,
    pod: &Pod,
    container: &Container,
    node_name: &str,
) -> Result<HashMap<String, String>, String> {
    let mut env: HashMap<String, String> = HashMap::new();
    for from in container.env_from.as_deref().unwrap_or_default() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (kv, what) = if let Some(r) = &from.config_map_ref {
            (
                optional_source(
                    sources.config_map(&r.name).await?,
                    r.optional,
                    "configmap",
                    &r.name,
                )?,
                "configmap",
            )
        } else if let Some(r) = &from.secret_ref {
            (
                optional_source(
                    sources.secret(&r.name).await?,
                    r.optional,
                    "secret",
                    &r.name,
                )?,
                "secret",
            )
        } else {
            continue;
        };
        for (k, v) in kv {
            let name = format!("{prefix}{k}");
            if name.is_empty() || name.contains('=') {
                tracing::warn!(%name, source = what, "skipping invalid environment variable name from envFrom");
                continue;
            }
            env.insert(name, String::from_utf8_lossy(&v).into_owned());
        }
    }
    for var in container.env.as_deref().unwrap_or_default() {
        let value = match &var.value_from {
            None => {
                let lookup = |n: &str| env.get(n).cloned();
                Some(expand(var.value.as_deref().unwrap_or_default(), &lookup))
            }
            Some(from) => {
                if let Some(f) = &from.field_ref {
                    Some(field_ref(pod, node_name, &f.field_path)?)
                } else if let Some(r) = &from.config_map_key_ref {
                    sources
                        .key(false, &r.name, &r.key, r.optional.unwrap_or(false))
                        .await?
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                } else if let Some(r) = &from.secret_key_ref {
                    sources
                        .key(true, &r.name, &r.key, r.optional.unwrap_or(false))
                        .await?
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                } else {
                    tracing::warn!(var = %var.name, "env valueFrom resourceFieldRef/fileKeyRef is not supported by the node agent; variable left unset");
                    None
                }
            }
        };
        if let Some(v) = value {
            env.insert(var.name.clone(), v);
        }
    }
    Ok(env)
}

fn optional_source<T>(
    found: Option<T>,
    optional: Option<bool>,
    kind: &str,
    name: &str,
) -> Result<T, String>
where
    T: Default,
{
    match found {
        Some(v) => Ok(v),
        None if optional.unwrap_or(false) => Ok(T::default()),
        None => Err(format!("{kind} \"{name}\" not found")),
    }
}
