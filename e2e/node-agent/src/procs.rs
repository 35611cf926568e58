//! The table of container processes this agent started, persisted in the state dir so that
//! a later agent run (after a crash or a region-down) can kill leftovers before adopting pods.
//! Every container runs in its own process group (pgid = pid); signals go to the group.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    pid: i32,
    /// Field 22 of /proc/<pid>/stat: tells our process from a later one with the same pid.
    start_time: u64,
    pod: String,
    container: String,
}

#[derive(Default)]
struct Table {
    stopping: bool,
    procs: BTreeMap<String, Record>,
}

pub struct ProcessTable {
    path: PathBuf,
    table: Mutex<Table>,
}

/// The agent is stopping; no new process may run.
#[derive(Debug)]
pub struct Stopping;

impl ProcessTable {
    /// Kills the process groups a previous agent run left behind, then starts empty.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let path = path.to_path_buf();
        if let Ok(text) = std::fs::read_to_string(&path) {
            let old: BTreeMap<String, Record> = serde_json::from_str(&text).unwrap_or_default();
            let alive: Vec<&Record> = old.values().filter(|r| is_same_process(r)).collect();
            for r in &alive {
                tracing::info!(pid = r.pid, pod = %r.pod, container = %r.container, "killing process left by a previous agent run");
                signal_group(r.pid, Signal::SIGKILL);
            }
            for _ in 0..50 {
                if !alive.iter().any(|r| is_same_process(r)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let table = ProcessTable {
            path,
            table: Mutex::new(Table::default()),
        };
        table.persist(&BTreeMap::new());
        Ok(table)
    }

    /// Records a started process; if the agent is stopping, kills it at once instead.
    pub fn register(
        &self,
        key: &str,
        pid: i32,
        pod: &str,
        container: &str,
    ) -> Result<(), Stopping> {
        let mut t = self.lock();
        if t.stopping {
            signal_group(pid, Signal::SIGKILL);
            return Err(Stopping);
        }
        let record = Record {
            pid,
            start_time: start_time(pid).unwrap_or(0),
            pod: pod.into(),
            container: container.into(),
        };
        t.procs.insert(key.to_string(), record);
        self.persist(&t.procs);
        Ok(())
    }

    pub fn unregister(&self, key: &str) {
        let mut t = self.lock();
        if t.procs.remove(key).is_some() {
            self.persist(&t.procs);
        }
    }

    /// Whether a process of `container` of `pod` (`namespace/name`) is running.
    pub fn runs(&self, pod: &str, container: &str) -> bool {
        self.lock()
            .procs
            .values()
            .any(|r| r.pod == pod && r.container == container)
    }

    pub fn is_stopping(&self) -> bool {
        self.lock().stopping
    }

    /// Region down: SIGKILL every process group at once; nothing starts afterwards.
    /// Returns the number of groups signalled.
    pub fn kill_all(&self) -> usize {
        let mut t = self.lock();
        t.stopping = true;
        for r in t.procs.values() {
            signal_group(r.pid, Signal::SIGKILL);
        }
        let n = t.procs.len();
        // Wait briefly so the caller can report them dead; they are ours, they die fast.
        let records: Vec<Record> = t.procs.values().cloned().collect();
        for _ in 0..50 {
            if !records.iter().any(is_same_process) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        t.procs.clear();
        self.persist(&t.procs);
        n
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn persist(&self, procs: &BTreeMap<String, Record>) {
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(procs).unwrap_or_else(|_| "{}".into());
        if let Err(e) = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, &self.path)) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot persist the process table");
        }
    }
}

/// Sends a signal to the process group led by `pid`; a group already gone is fine.
pub fn signal_group(pid: i32, signal: Signal) {
    if pid <= 1 {
        return;
    }
    match killpg(Pid::from_raw(pid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pid, ?signal, error = %e, "cannot signal process group"),
    }
}

/// (state, starttime) from /proc/<pid>/stat.
fn stat(pid: i32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Fields after `comm` start at field 3 (state); starttime is field 22.
    let mut fields = after_comm.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(22 - 4)?.parse().ok()?;
    Some((state, start))
}

fn start_time(pid: i32) -> Option<u64> {
    stat(pid).map(|(_, start)| start)
}

/// Alive (zombies are dead) and not a later process that reused the pid.
fn is_same_process(r: &Record) -> bool {
    match stat(r.pid) {
        Some((state, t)) => state != 'Z' && (r.start_time == 0 || t == r.start_time),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_identifies_a_live_process() {
        let me = std::process::id() as i32;
        let t = start_time(me).expect("own /proc/<pid>/stat");
        assert!(is_same_process(&Record {
            pid: me,
            start_time: t,
            pod: "p".into(),
            container: "c".into()
        }));
        assert!(!is_same_process(&Record {
            pid: me,
            start_time: t + 1,
            pod: "p".into(),
            container: "c".into()
        }));
    }
}
