//! The kubelet's Ready rule (pkg/kubelet/status/generate.go `GeneratePodReadyCondition`):
//! a pod is Ready only when its containers are ready **and** the condition of every
//! `spec.readinessGates` entry is `True`. Containers come first; then each unmet gate is
//! named, with the kubelet's reason and messages.

use k8s_openapi::api::core::v1::{PodCondition, PodReadinessGate};

/// The kubelet's reason when the containers are ready and a readiness gate is not.
pub const READINESS_GATES_NOT_READY: &str = "ReadinessGatesNotReady";

/// Ready, with the reason and message of a `False`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadyCondition {
    pub ready: bool,
    pub reason: Option<String>,
    pub message: Option<String>,
}

/// `containers`: `Ok` when every container is ready, else the reason and message the
/// kubelet gives for them (`ContainersNotReady` / `PodCompleted`).
pub fn ready_condition(
    containers: Result<(), (&str, String)>,
    gates: &[PodReadinessGate],
    conditions: &[PodCondition],
) -> ReadyCondition {
    if let Err((reason, message)) = containers {
        return ReadyCondition {
            ready: false,
            reason: Some(reason.to_string()),
            message: Some(message),
        };
    }
    let unmet: Vec<String> = gates
        .iter()
        .filter_map(
            |g| match conditions.iter().find(|c| c.type_ == g.condition_type) {
                None => Some(format!(
                    "corresponding condition of pod readiness gate {:?} does not exist.",
                    g.condition_type
                )),
                Some(c) if c.status != "True" => Some(format!(
                    "the status of pod readiness gate {:?} is not \"True\", but {}",
                    g.condition_type, c.status
                )),
                Some(_) => None,
            },
        )
        .collect();
    if unmet.is_empty() {
        ReadyCondition {
            ready: true,
            reason: None,
            message: None,
        }
    } else {
        ReadyCondition {
            ready: false,
            reason: Some(READINESS_GATES_NOT_READY.to_string()),
            message: Some(unmet.join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(t: &str) -> PodReadinessGate {
        PodReadinessGate {
            condition_type: t.into(),
        }
    }

    fn condition(t: &str, status: &str) -> PodCondition {
        PodCondition {
            type_: t.into(),
            status: status.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_pod_is_ready_only_when_its_containers_and_every_readiness_gate_are() {
        let gates = [gate("tributary.dev/active"), gate("example.com/lb")];
        let both = [
            condition("tributary.dev/active", "True"),
            condition("example.com/lb", "True"),
        ];
        assert!(ready_condition(Ok(()), &gates, &both).ready);
        assert!(
            ready_condition(Ok(()), &[], &[]).ready,
            "no gates: containers decide"
        );

        let one_false = [
            condition("tributary.dev/active", "False"),
            condition("example.com/lb", "True"),
        ];
        let r = ready_condition(Ok(()), &gates, &one_false);
        assert!(!r.ready);
        assert_eq!(r.reason.as_deref(), Some(READINESS_GATES_NOT_READY));
        assert_eq!(
            r.message.as_deref(),
            Some(
                r#"the status of pod readiness gate "tributary.dev/active" is not "True", but False"#
            )
        );

        let missing = ready_condition(Ok(()), &gates, &both[..1]);
        assert!(!missing.ready);
        assert_eq!(
            missing.message.as_deref(),
            Some(
                r#"corresponding condition of pod readiness gate "example.com/lb" does not exist."#
            )
        );

        // Unready containers win, whatever the gates say.
        let r = ready_condition(
            Err((
                "ContainersNotReady",
                "containers with unready status: [app]".into(),
            )),
            &gates,
            &both,
        );
        assert_eq!(
            (r.ready, r.reason.as_deref()),
            (false, Some("ContainersNotReady"))
        );
    }
}
