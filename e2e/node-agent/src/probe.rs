//! Readiness probes against the pod's IP (an address of its own in 127.0.0.0/8).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// What the agent can check for a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    HttpGet {
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
    TcpSocket {
        port: u16,
    },
    /// A probe kind the agent cannot run (exec, grpc, https): the container counts as passing.
    Unsupported(String),
}

/// Resolves a probe's handler, named ports included, against the container.
pub fn check_for(probe: &Probe, container: &Container) -> Result<Check, String> {
    let port = |p: &IntOrString| -> Result<u16, String> {
        match p {
            IntOrString::Int(n) => {
                u16::try_from(*n).map_err(|_| format!("probe port {n} out of range"))
            }
            IntOrString::String(name) => container
                .ports
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                .and_then(|cp| u16::try_from(cp.container_port).ok())
                .or_else(|| name.parse().ok())
                .ok_or_else(|| format!("probe port {name:?} names no containerPort")),
        }
    };
    if let Some(h) = &probe.http_get {
        if h.scheme
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"))
        {
            return Ok(Check::Unsupported("httpGet with scheme HTTPS".into()));
        }
        let headers = h
            .http_headers
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|hh| (hh.name.clone(), hh.value.clone()))
            .collect();
        return Ok(Check::HttpGet {
            port: port(&h.port)?,
            path: h.path.clone().unwrap_or_else(|| "/".into()),
            headers,
        });
    }
    if let Some(t) = &probe.tcp_socket {
        return Ok(Check::TcpSocket {
            port: port(&t.port)?,
        });
    }
    if probe.exec.is_some() {
        return Ok(Check::Unsupported("exec".into()));
    }
    if probe.grpc.is_some() {
        return Ok(Check::Unsupported("grpc".into()));
    }
    Ok(Check::Unsupported("no handler".into()))
}

/// Runs the check once; `Ok` means the probe passed (HTTP 200-399, as the kubelet counts).
pub async fn run(check: &Check, ip: &str, timeout: Duration) -> Result<(), String> {
    let attempt = async {
        match check {
            Check::HttpGet {
                port,
                path,
                headers,
            } => http_get(ip, *port, path, headers).await,
            Check::TcpSocket { port } => TcpStream::connect((ip, *port))
                .await
                .map(|_| ())
                .map_err(|e| format!("connect {ip}:{port}: {e}")),
            Check::Unsupported(_) => Ok(()),
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("timed out after {timeout:?}")))
}

async fn http_get(
    ip: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
) -> Result<(), String> {
    let mut stream = TcpStream::connect((ip, port))
        .await
        .map_err(|e| format!("GET {ip}:{port}{path}: {e}"))?;
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {ip}:{port}\r\nUser-Agent: kube-probe/1.35\r\nAccept: */*\r\n"
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("GET :{port}{path}: {e}"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 8192 {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("GET :{port}{path}: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("GET :{port}{path}: no HTTP status line"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("GET :{port}{path}: HTTP {code}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn serve_once(status: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            if let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        port
    }

    #[tokio::test]
    async fn http_probe_passes_on_2xx_and_fails_on_5xx_or_refused() {
        let ok = Check::HttpGet {
            port: serve_once("200 OK").await,
            path: "/readyz".into(),
            headers: vec![],
        };
        assert!(run(&ok, "127.0.0.1", Duration::from_secs(2)).await.is_ok());
        let bad = Check::HttpGet {
            port: serve_once("503 Service Unavailable").await,
            path: "/readyz".into(),
            headers: vec![],
        };
        assert!(
            run(&bad, "127.0.0.1", Duration::from_secs(2))
                .await
                .expect_err("503 fails")
                .contains("503")
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let closed = listener.local_addr().expect("addr").port();
        drop(listener);
        assert!(
            run(
                &Check::HttpGet {
                    port: closed,
                    path: "/".into(),
                    headers: vec![]
                },
                "127.0.0.1",
                Duration::from_secs(2)
            )
            .await
            .is_err()
        );
    }
}
