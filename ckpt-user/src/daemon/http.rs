//! `/metrics`, `/healthz` and `/workloads` over HTTP/1.1 on a local TCP address or a unix
//! socket. Three fixed GET routes: a small handler here instead of a web framework (hyper/axum
//! would double the build for no feature we use).

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};

use super::metrics::Metrics;
use super::state::WorkloadStatus;

/// What `/healthz` reports.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Health {
    pub status: &'static str,
    pub backend: String,
    /// Better backends this kernel refused, and why.
    pub passed_over: Vec<String>,
    pub processes: usize,
    pub workloads: usize,
    pub events_lost: u64,
    pub reconciles: u64,
}

pub struct Shared {
    pub metrics: Metrics,
    pub health: Health,
    /// Every workload and its verdict, as of the last settle.
    pub workloads: Vec<WorkloadStatus>,
}

pub type SharedState = Arc<Mutex<Shared>>;

/// Where to listen: `127.0.0.1:9782` or `unix:/run/ckpt-watch.sock`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    Tcp(std::net::SocketAddr),
    Unix(std::path::PathBuf),
}

impl std::str::FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            return Ok(Listen::Unix(path.into()));
        }
        s.parse()
            .map(Listen::Tcp)
            .map_err(|e| format!("`{s}` is neither ADDR:PORT nor unix:/path ({e})"))
    }
}

fn response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Answers one request line.
pub fn route(request_line: &str, shared: &Shared) -> String {
    let mut parts = request_line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some("GET"), Some("/metrics")) => response(
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            &shared.metrics.render(),
        ),
        (Some("GET"), Some("/healthz")) => response(
            "200 OK",
            "application/json",
            &serde_json::to_string(&shared.health).unwrap_or_default(),
        ),
        (Some("GET"), Some("/workloads")) => response(
            "200 OK",
            "application/json",
            &serde_json::to_string(&shared.workloads).unwrap_or_default(),
        ),
        (Some("GET"), _) => response(
            "404 Not Found",
            "text/plain",
            "try /metrics, /healthz or /workloads\n",
        ),
        _ => response("405 Method Not Allowed", "text/plain", "GET only\n"),
    }
}

async fn serve_one<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, shared: SharedState) {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    // The request line is all we route on; stop at the end of the headers or a full buffer.
    while len < buf.len() {
        match stream.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf[..len]);
    let line = text.lines().next().unwrap_or_default().to_string();
    let reply = {
        let shared = shared.lock().expect("metrics lock");
        route(&line, &shared)
    };
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Binds `listen` (before the daemon starts work, so a busy port fails early).
pub async fn bind(listen: &Listen) -> std::io::Result<Bound> {
    Ok(match listen {
        Listen::Tcp(addr) => Bound::Tcp(TcpListener::bind(addr).await?),
        Listen::Unix(path) => {
            let _ = std::fs::remove_file(path);
            Bound::Unix(UnixListener::bind(path)?)
        }
    })
}

pub enum Bound {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Bound {
    pub async fn serve(self, shared: SharedState) {
        loop {
            match &self {
                Bound::Tcp(l) => {
                    if let Ok((s, _)) = l.accept().await {
                        tokio::spawn(serve_one(s, shared.clone()));
                    }
                }
                Bound::Unix(l) => {
                    if let Ok((s, _)) = l.accept().await {
                        tokio::spawn(serve_one(s, shared.clone()));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        Shared {
            metrics: Metrics::default(),
            health: Health {
                status: "ok",
                ..Default::default()
            },
            workloads: vec![],
        }
    }

    #[test]
    fn routes() {
        let s = shared();
        assert!(route("GET /metrics HTTP/1.1", &s).contains("# EOF"));
        let health = route("GET /healthz HTTP/1.1", &s);
        assert!(health.starts_with("HTTP/1.1 200") && health.contains("\"status\":\"ok\""));
        assert!(route("GET /workloads HTTP/1.1", &s).ends_with("\r\n\r\n[]"));
        assert!(route("GET /x HTTP/1.1", &s).starts_with("HTTP/1.1 404"));
        assert!(route("POST /metrics HTTP/1.1", &s).starts_with("HTTP/1.1 405"));
    }

    #[test]
    fn listen_addresses_parse() {
        assert_eq!(
            "127.0.0.1:9782".parse::<Listen>(),
            Ok(Listen::Tcp("127.0.0.1:9782".parse().unwrap()))
        );
        assert_eq!(
            "unix:/run/x.sock".parse::<Listen>(),
            Ok(Listen::Unix("/run/x.sock".into()))
        );
        assert!("nonsense".parse::<Listen>().is_err());
    }
}
