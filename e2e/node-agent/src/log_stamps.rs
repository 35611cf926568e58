//! Per-line timestamps of the containers' log files, as a container runtime keeps them (CRI
//! logs stamp every line; `kubectl logs --timestamps` and `sinceTime` rest on them).
//!
//! A container writes its `<container>.log` directly (the agent opens the file, the process
//! inherits it), so the stamper stamps after the fact: every 100 ms it appends one
//! [`Stretch`] per file that gained complete lines to `<container>.log.times`. Line *k* of a
//! stretch is stamped `first_ns + k`: stamps are unique and strictly rising within a file, so
//! a client that resumes with `sinceTime` and drops what it already has loses nothing.
//! Lines a container wrote while the agent was down are stamped when it is back.

use std::collections::HashMap;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const PERIOD: Duration = Duration::from_millis(100);
/// At most this much of a file is stamped per pass (a pass never stalls on a huge file).
const MAX_PASS_BYTES: u64 = 8 << 20;

/// Complete lines of a log file up to byte `end` (exclusive) that follow the previous
/// stretch; its first line is stamped `first_ns`, the next stretch starts at `next_ns` or later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stretch {
    pub end: u64,
    pub first_ns: i128,
    pub next_ns: i128,
}

impl Stretch {
    fn line(&self) -> String {
        format!("{} {} {}\n", self.end, self.first_ns, self.next_ns)
    }

    fn parse(line: &str) -> Option<Stretch> {
        let mut f = line.split(' ');
        let s = Stretch {
            end: f.next()?.parse().ok()?,
            first_ns: f.next()?.parse().ok()?,
            next_ns: f.next()?.parse().ok()?,
        };
        f.next().is_none().then_some(s)
    }
}

pub fn times_path(log: &Path) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(".times");
    PathBuf::from(p)
}

/// The stretches of `times` from byte `from` on (complete lines only), and where to go on.
pub fn read_stretches(times: &Path, from: u64) -> std::io::Result<(Vec<Stretch>, u64)> {
    let mut f = match std::fs::File::open(times) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), from)),
        Err(e) => return Err(e),
    };
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let Some(last) = buf.iter().rposition(|b| *b == b'\n') else {
        return Ok((Vec::new(), from));
    };
    let text = String::from_utf8_lossy(&buf[..last]);
    let stretches = text.lines().filter_map(Stretch::parse).collect();
    Ok((stretches, from + last as u64 + 1))
}

pub fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or_default()
}

/// Stamps every `<state-dir>/pods/*/*.log` until the process ends (a thread of its own: it
/// only does file I/O).
pub fn spawn_log_stamper(state_dir: PathBuf) {
    let run = move || {
        let mut stamper = Stamper::default();
        loop {
            stamper.pass(&state_dir.join("pods"));
            std::thread::sleep(PERIOD);
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("log-stamper".into())
        .spawn(run)
    {
        tracing::warn!(error = %e, "cannot start the log stamper: container logs get no timestamps");
    }
}

#[derive(Default)]
pub struct Stamper {
    /// The last stretch of each file seen.
    last: HashMap<PathBuf, Stretch>,
}

impl Stamper {
    pub fn pass(&mut self, pods: &Path) {
        let Ok(dirs) = std::fs::read_dir(pods) else {
            return;
        };
        for pod in dirs.flatten() {
            let Ok(files) = std::fs::read_dir(pod.path()) else {
                continue;
            };
            for f in files.flatten() {
                let path = f.path();
                if path.extension().is_some_and(|e| e == "log")
                    && let Err(e) = self.stamp(&path, now_ns())
                {
                    tracing::debug!(log = %path.display(), error = %e, "stamping a container log");
                }
            }
        }
    }

    /// Appends a stretch for the complete lines `log` gained since its last one.
    pub fn stamp(&mut self, log: &Path, now_ns: i128) -> std::io::Result<()> {
        let times = times_path(log);
        let len = std::fs::metadata(log)?.len();
        let last = match self.last.get(log) {
            Some(s) => *s,
            None => {
                let (all, _) = read_stretches(&times, 0)?;
                all.last().copied().unwrap_or(Stretch {
                    end: 0,
                    first_ns: 0,
                    next_ns: 0,
                })
            }
        };
        if len <= last.end {
            self.last.insert(log.to_path_buf(), last);
            return Ok(());
        }
        let mut f = std::fs::File::open(log)?;
        f.seek(SeekFrom::Start(last.end))?;
        let mut buf = Vec::new();
        f.take((len - last.end).min(MAX_PASS_BYTES))
            .read_to_end(&mut buf)?;
        let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
            self.last.insert(log.to_path_buf(), last);
            return Ok(()); // a line still being written
        };
        let lines = buf[..=end].iter().filter(|b| **b == b'\n').count() as i128;
        let first_ns = now_ns.max(last.next_ns);
        let next = Stretch {
            end: last.end + end as u64 + 1,
            first_ns,
            next_ns: first_ns + lines,
        };
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&times)?
            .write_all(next.line().as_bytes())?;
        self.last.insert(log.to_path_buf(), next);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_gets_a_unique_rising_stamp_and_partial_lines_wait() {
        let dir = std::env::temp_dir().join(format!("stamps-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let log = dir.join("c.log");
        std::fs::write(&log, "a\nb\npart").expect("write");
        let mut s = Stamper::default();
        s.stamp(&log, 1_000).expect("stamp");
        // The clock went back: the next stretch still starts after the last stamp.
        std::fs::write(&log, "a\nb\npartial\nc\n").expect("write");
        s.stamp(&log, 500).expect("stamp");
        s.stamp(&log, 2_000).expect("stamp (nothing new)");
        let (all, _) = read_stretches(&times_path(&log), 0).expect("read");
        assert_eq!(
            all,
            vec![
                Stretch {
                    end: 4,
                    first_ns: 1_000,
                    next_ns: 1_002
                },
                Stretch {
                    end: 14,
                    first_ns: 1_002,
                    next_ns: 1_004
                },
            ]
        );
        // A new stamper (the agent restarted) goes on from the file.
        std::fs::write(&log, "a\nb\npartial\nc\nd\n").expect("write");
        let mut again = Stamper::default();
        again.stamp(&log, 900).expect("stamp");
        let (all, _) = read_stretches(&times_path(&log), 0).expect("read");
        assert_eq!(
            all.last(),
            Some(&Stretch {
                end: 16,
                first_ns: 1_004,
                next_ns: 1_005
            })
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
