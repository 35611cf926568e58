//! Helpers for tests that drive processes and Kafka from plain threads (the replicator's and
//! the checkpoint sync's binary tests): unique names, free ports, a runtime for the odd async
//! call, a bare HTTP GET of a process's health endpoints, and polling with a deadline.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name no other test run uses: `<prefix>-<pid>-<ms>-<n>`.
pub fn unique(prefix: &str) -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() % 100_000_000);
    format!(
        "{prefix}-{}-{ms}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A free TCP port on 127.0.0.1 (bound and released: good enough for a test's processes).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A small multi-threaded runtime for blocking on async helpers.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"))
}

/// `GET path` on 127.0.0.1:`port`; the whole response, status line and headers included.
pub fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    http_get_from(("127.0.0.1", port), path)
}

/// `GET path` on `addr`; the whole response, status line and headers included.
pub fn http_get_from(addr: impl std::net::ToSocketAddrs, path: &str) -> std::io::Result<String> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body)
}

/// Waits until `check` holds, or panics with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, check: impl FnMut() -> bool) {
    wait_for_or_show(what, timeout, check, String::new);
}

/// [`wait_for`], showing `context()` (a process log) when it times out.
pub fn wait_for_or_show(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
