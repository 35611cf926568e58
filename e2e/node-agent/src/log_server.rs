//! The kubelet's container-log endpoint, so that the apiserver's `pods/log` (`kubectl logs`,
//! `Api::<Pod>::logs`) works for the pods this agent runs: HTTPS on 127.0.0.1 (the Node's
//! InternalIP) at the port the Node reports in `status.daemonEndpoints.kubeletEndpoint`,
//! `GET /containerLogs/{namespace}/{pod}/{container}` with `follow`, `timestamps`,
//! `sinceTime`, `sinceSeconds`, `tailLines`, `limitBytes` and `previous`.
//!
//! A client must present a certificate of the stack's CA (the apiserver's
//! `--kubelet-client-certificate`); there is no authorization beyond that (a kubelet asks
//! the apiserver with a SubjectAccessReview; the apiserver has checked `pods/log` already).
//!
//! The agent keeps one log file per container across restarts, each start opened by a
//! `=== ... node agent: starting container` line: the current container's log is what follows
//! the last such line, `previous=true` the part before it. A follow ends when the container
//! restarts (as a kubelet's does when its container exits) or when it has stopped for a second
//! with nothing left to send.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::SinkExt as _;
use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::log_stamps::{now_ns, read_stretches, times_path};
use crate::pod_runner::Agent;

const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// A follow of a container that stopped ends once this long passed with nothing new.
const FOLLOW_GRACE: Duration = Duration::from_secs(1);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The serving certificate, its key, and the CA whose clients may read logs.
#[derive(Clone, Debug)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

struct Logs {
    pods: PathBuf,
    /// Whose process table says which containers run.
    agent: Arc<Agent>,
}

/// Binds `127.0.0.1:port` (0: any free port), returns the port and the server's future.
pub async fn bind(
    tls: &Tls,
    port: u16,
    agent: Arc<Agent>,
) -> anyhow::Result<(u16, impl std::future::Future<Output = ()> + Send + 'static)> {
    let acceptor = TlsAcceptor::from(Arc::new(server_config(tls)?));
    let tcp = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding the log endpoint on 127.0.0.1:{port}"))?;
    let port = tcp.local_addr()?.port();
    let app = Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .with_state(Arc::new(Logs {
            pods: agent.state_dir.join("pods"),
            agent,
        }));
    let listener = TlsListener { tcp, acceptor };
    let serve = async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the log endpoint stopped");
        }
    };
    Ok((port, serve))
}

fn server_config(tls: &Tls) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("--tls-cert-file {}", tls.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .with_context(|| format!("--tls-private-key-file {}", tls.key.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&tls.client_ca)
        .with_context(|| format!("--client-ca-file {}", tls.client_ca.display()))?
    {
        roots.add(ca.with_context(|| format!("--client-ca-file {}", tls.client_ca.display()))?)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (tcp, addr) = match self.tcp.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "log endpoint: accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => return (tls, addr),
                Ok(Err(e)) => tracing::debug!(%addr, error = %e, "log endpoint: TLS handshake"),
                Err(_) => tracing::debug!(%addr, "log endpoint: TLS handshake timed out"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// The query of `pods/log` as the apiserver passes it on.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogQuery {
    #[serde(default)]
    pub follow: bool,
    #[serde(default)]
    pub timestamps: bool,
    #[serde(default)]
    pub previous: bool,
    pub since_time: Option<String>,
    pub since_seconds: Option<i64>,
    pub tail_lines: Option<usize>,
    pub limit_bytes: Option<usize>,
}

/// One line of a log file (without its newline) and its stamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StampedLine {
    pub ns: i128,
    pub text: Vec<u8>,
}

impl StampedLine {
    /// The agent's own line opening a container start.
    fn is_start(&self) -> bool {
        self.text.starts_with(b"=== ")
            && self
                .text
                .windows(START.len())
                .any(|w| w == START.as_bytes())
    }
}

const START: &str = " node agent: starting container ";

/// Reads a log file's stamped lines, from the start and then as they are stamped.
struct StampedLog {
    log: PathBuf,
    times: PathBuf,
    log_pos: u64,
    times_pos: u64,
}

impl StampedLog {
    fn open(log: PathBuf) -> Self {
        StampedLog {
            times: times_path(&log),
            log,
            log_pos: 0,
            times_pos: 0,
        }
    }

    fn read_new(&mut self) -> std::io::Result<Vec<StampedLine>> {
        use std::io::{Read as _, Seek as _};
        let (stretches, times_pos) = read_stretches(&self.times, self.times_pos)?;
        let mut lines = Vec::new();
        let Some(end) = stretches.last().map(|s| s.end) else {
            return Ok(lines);
        };
        let mut f = std::fs::File::open(&self.log)?;
        f.seek(std::io::SeekFrom::Start(self.log_pos))?;
        let mut buf = Vec::new();
        (&mut f)
            .take(end.saturating_sub(self.log_pos))
            .read_to_end(&mut buf)?;
        let mut at = self.log_pos;
        let mut rest = &buf[..];
        for s in stretches.iter().filter(|s| s.end > self.log_pos) {
            let take = ((s.end - at) as usize).min(rest.len());
            let (chunk, more) = rest.split_at(take);
            for (k, text) in chunk.split(|b| *b == b'\n').enumerate() {
                if k as i128 >= s.next_ns - s.first_ns {
                    break; // after the stretch's last newline
                }
                lines.push(StampedLine {
                    ns: s.first_ns + k as i128,
                    text: text.to_vec(),
                });
            }
            rest = more;
            at = s.end;
        }
        self.log_pos = at;
        self.times_pos = times_pos;
        Ok(lines)
    }
}

/// The lines of the container run asked for: the current one (after the last start line),
/// or with `previous` the one before it (`None`: there is none).
pub fn select_run(lines: &[StampedLine], previous: bool) -> Option<&[StampedLine]> {
    let starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.is_start())
        .map(|(i, _)| i)
        .collect();
    match (previous, starts.as_slice()) {
        (false, []) => Some(lines),
        (false, [.., last]) => Some(&lines[last + 1..]),
        (true, [.., before, last]) => Some(&lines[before + 1..*last]),
        (true, _) => None,
    }
}

/// `sinceTime`/`sinceSeconds` as a stamp: lines stamped at or after it are sent (the kubelet's rule).
fn since_ns(q: &LogQuery) -> Result<Option<i128>, String> {
    if let Some(t) = &q.since_time {
        let t: Timestamp = t
            .parse()
            .map_err(|e| format!("sinceTime {t:?} is not an RFC 3339 time: {e}"))?;
        return Ok(Some(t.as_nanosecond()));
    }
    Ok(q.since_seconds
        .map(|s| now_ns() - i128::from(s) * 1_000_000_000))
}

fn render(line: &StampedLine, timestamps: bool, out: &mut Vec<u8>) {
    if timestamps {
        let t = Timestamp::from_nanosecond(line.ns).unwrap_or(Timestamp::UNIX_EPOCH);
        // The kubelet's format: RFC 3339 with nine fraction digits.
        out.extend_from_slice(format!("{t:.9} ").as_bytes());
    }
    out.extend_from_slice(&line.text);
    out.push(b'\n');
}

fn plain(status: StatusCode, message: String) -> Response {
    (status, message).into_response()
}

async fn container_logs(
    State(logs): State<Arc<Logs>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(q): Query<LogQuery>,
) -> Response {
    let name_ok = |s: &str| !s.is_empty() && !s.contains('/') && s != "." && s != "..";
    if ![&namespace, &pod, &container].iter().all(|s| name_ok(s)) {
        return plain(StatusCode::BAD_REQUEST, "bad pod or container name".into());
    }
    let path = logs
        .pods
        .join(format!("{namespace}_{pod}"))
        .join(format!("{container}.log"));
    if !path.is_file() {
        return plain(
            StatusCode::NOT_FOUND,
            format!(
                "container {container:?} in pod {namespace}/{pod} has no log on this node (not started yet, or not this node's)"
            ),
        );
    }
    let since = match since_ns(&q) {
        Ok(s) => s,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e),
    };
    let mut reader = StampedLog::open(path.clone());
    let (first, reader) = match tokio::task::spawn_blocking(move || {
        let lines = reader.read_new();
        (lines, reader)
    })
    .await
    {
        Ok((Ok(lines), reader)) => (lines, reader),
        Ok((Err(e), _)) => {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading {}: {e}", path.display()),
            );
        }
        Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let Some(run) = select_run(&first, q.previous) else {
        return plain(
            StatusCode::BAD_REQUEST,
            format!("previous terminated container {container:?} in pod {pod:?} not found"),
        );
    };
    let mut run: Vec<&StampedLine> = run
        .iter()
        .filter(|l| since.is_none_or(|s| l.ns >= s))
        .collect();
    if let Some(n) = q.tail_lines {
        run.drain(..run.len().saturating_sub(n));
    }
    let mut out = Vec::new();
    for l in run {
        render(l, q.timestamps, &mut out);
    }
    if let Some(limit) = q.limit_bytes {
        out.truncate(limit);
    }
    if !q.follow || q.previous {
        return (StatusCode::OK, out).into_response();
    }
    // The body ends when `follow` returns (its sender dropped); a client that goes away drops
    // the receiver, and `follow` returns at its next send.
    let (tx, rx) = futures::channel::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(16);
    let key = format!("{namespace}/{pod}");
    tokio::spawn(follow(logs.clone(), reader, key, container, q, out, tx));
    Response::builder()
        .header("content-type", "text/plain")
        .body(Body::from_stream(rx))
        .unwrap_or_else(|e| plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn follow(
    logs: Arc<Logs>,
    mut reader: StampedLog,
    pod: String,
    container: String,
    q: LogQuery,
    first: Vec<u8>,
    mut tx: futures::channel::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
) {
    let mut sent = first.len();
    if !first.is_empty() && tx.send(Ok(first)).await.is_err() {
        return;
    }
    let mut idle_since: Option<tokio::time::Instant> = None;
    loop {
        tokio::time::sleep(FOLLOW_POLL).await;
        if tx.is_closed() {
            return; // the client went away while there was nothing to send
        }
        let (lines, r) =
            match tokio::task::spawn_blocking(move || (reader.read_new(), reader)).await {
                Ok((Ok(lines), r)) => (lines, r),
                Ok((Err(e), _)) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                Err(_) => return,
            };
        reader = r;
        let mut out = Vec::new();
        let mut restarted = false;
        for l in &lines {
            if l.is_start() {
                restarted = true;
                break;
            }
            render(l, q.timestamps, &mut out);
        }
        if let Some(limit) = q.limit_bytes {
            out.truncate(limit.saturating_sub(sent));
        }
        sent += out.len();
        if !out.is_empty() && tx.send(Ok(out)).await.is_err() {
            return; // the client went away
        }
        if restarted || q.limit_bytes.is_some_and(|l| sent >= l) {
            return;
        }
        if lines.is_empty() && !logs.agent.procs.runs(&pod, &container) {
            let since = *idle_since.get_or_insert_with(tokio::time::Instant::now);
            if since.elapsed() >= FOLLOW_GRACE {
                return;
            }
        } else {
            idle_since = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(ns: i128, text: &str) -> StampedLine {
        StampedLine {
            ns,
            text: text.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_current_run_follows_the_last_start_and_previous_the_one_before() {
        let lines = vec![
            line(
                1,
                "=== 2026 node agent: starting container c (restart 0) as uid=0",
            ),
            line(2, "first run"),
            line(
                3,
                "=== 2026 node agent: starting container c (restart 1) as uid=0",
            ),
            line(4, "second run"),
        ];
        assert_eq!(select_run(&lines, false), Some(&lines[3..]));
        assert_eq!(select_run(&lines, true), Some(&lines[1..2]));
        assert_eq!(select_run(&lines[..2], true), None);
        assert_eq!(select_run(&lines[1..2], false), Some(&lines[1..2]));
    }

    #[test]
    fn timestamps_have_nine_fraction_digits() {
        let mut out = Vec::new();
        render(&line(1_700_000_000_000_000_001, "x"), true, &mut out);
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "2023-11-14T22:13:20.000000001Z x\n"
        );
    }

    #[test]
    fn stamped_lines_are_read_as_they_are_stamped() {
        let dir = std::env::temp_dir().join(format!("logsrv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let log = dir.join("c.log");
        std::fs::write(&log, "a\nb\n").expect("write");
        let mut stamper = crate::log_stamps::Stamper::default();
        stamper.stamp(&log, 10).expect("stamp");
        std::fs::write(&log, "a\nb\nc\nunstamped").expect("write");
        let mut r = StampedLog::open(log.clone());
        assert_eq!(
            r.read_new().expect("read"),
            vec![line(10, "a"), line(11, "b")]
        );
        stamper.stamp(&log, 20).expect("stamp");
        assert_eq!(r.read_new().expect("read"), vec![line(20, "c")]);
        assert_eq!(r.read_new().expect("read"), vec![]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
