//! The kubelet's pod phase rule (pkg/kubelet/kubelet_pods.go `getPhase`), over a summary of
//! container states, so that Deployments, Jobs and tests see the phases they expect.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("Never") => RestartPolicy::Never,
            Some("OnFailure") => RestartPolicy::OnFailure,
            _ => RestartPolicy::Always,
        }
    }

    /// Whether a container that exited with `exit_code` runs again.
    pub fn restarts(self, exit_code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        }
    }
}

/// One container as the phase rule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Running,
    Terminated {
        exit_code: i32,
    },
    /// Not running; `last_exit` is the exit code of the previous run, if any.
    Waiting {
        last_exit: Option<i32>,
    },
}

/// `terminal`: the pod is being deleted and none of its containers will run again.
pub fn pod_phase(
    policy: RestartPolicy,
    init: &[Seen],
    main: &[Seen],
    terminal: bool,
) -> &'static str {
    let mut pending_init = 0;
    let mut failed_init = 0;
    for s in init {
        match s {
            Seen::Running => pending_init += 1,
            Seen::Terminated { exit_code } => failed_init += usize::from(*exit_code != 0),
            Seen::Waiting {
                last_exit: Some(code),
            } => failed_init += usize::from(*code != 0),
            Seen::Waiting { last_exit: None } => pending_init += 1,
        }
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in main {
        match s {
            Seen::Running => running += 1,
            Seen::Terminated { exit_code } => {
                stopped += 1;
                succeeded += usize::from(*exit_code == 0);
            }
            Seen::Waiting { last_exit: Some(_) } => stopped += 1,
            Seen::Waiting { last_exit: None } => waiting += 1,
        }
    }
    if failed_init > 0 && policy == RestartPolicy::Never {
        return "Failed";
    }
    if terminal && running == 0 {
        return if stopped == main.len() && stopped == succeeded && failed_init == 0 {
            "Succeeded"
        } else {
            "Failed"
        };
    }
    if pending_init > 0 || failed_init > 0 || waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        return match policy {
            RestartPolicy::Always => "Running",
            _ if stopped == succeeded => "Succeeded",
            RestartPolicy::Never => "Failed",
            RestartPolicy::OnFailure => "Running",
        };
    }
    "Pending"
}

#[cfg(test)]
mod tests {
    use super::RestartPolicy::*;
    use super::Seen::*;
    use super::*;

    #[test]
    fn job_pods_end_succeeded_or_failed() {
        assert_eq!(
            pod_phase(Never, &[], &[Terminated { exit_code: 0 }], false),
            "Succeeded"
        );
        assert_eq!(
            pod_phase(Never, &[], &[Terminated { exit_code: 1 }], false),
            "Failed"
        );
        assert_eq!(
            pod_phase(OnFailure, &[], &[Terminated { exit_code: 0 }], false),
            "Succeeded"
        );
        assert_eq!(
            pod_phase(OnFailure, &[], &[Waiting { last_exit: Some(1) }], false),
            "Running"
        );
    }

    #[test]
    fn always_pods_stay_running_while_crash_looping() {
        assert_eq!(
            pod_phase(Always, &[], &[Waiting { last_exit: Some(2) }], false),
            "Running"
        );
        assert_eq!(
            pod_phase(Always, &[], &[Terminated { exit_code: 0 }], false),
            "Running"
        );
        assert_eq!(
            pod_phase(Always, &[], &[Waiting { last_exit: None }], false),
            "Pending"
        );
        assert_eq!(pod_phase(Always, &[], &[Running], false), "Running");
    }

    #[test]
    fn init_containers_gate_the_pod() {
        assert_eq!(
            pod_phase(Always, &[Running], &[Waiting { last_exit: None }], false),
            "Pending"
        );
        assert_eq!(
            pod_phase(
                Never,
                &[Terminated { exit_code: 3 }],
                &[Waiting { last_exit: None }],
                false
            ),
            "Failed"
        );
        assert_eq!(
            pod_phase(Always, &[Terminated { exit_code: 0 }], &[Running], false),
            "Running"
        );
    }

    #[test]
    fn deleted_pods_end_terminal() {
        assert_eq!(
            pod_phase(Always, &[], &[Terminated { exit_code: 143 }], true),
            "Failed"
        );
        assert_eq!(
            pod_phase(Always, &[], &[Terminated { exit_code: 0 }], true),
            "Succeeded"
        );
    }
}
