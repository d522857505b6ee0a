//! `/metrics`, `/healthz` and `/workloads` over HTTP/1.1 on a local TCP address or a unix
//! socket: hyper's server on a thread of its own, so that neither a rescan nor a stuck event
//! loop silences `/healthz` (which then says why). Local users are not trusted: at most
//! `max_connections` at once, the head of the one request a connection may carry within
//! `header_timeout`, the whole exchange within `deadline`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

use super::health::{Shared, SharedState, lock};
use super::metrics::label;
use crate::report::printable;

/// Bounds on what clients may hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections open at once; a scraper needs one.
    pub max_connections: usize,
    /// From accept to the end of the request head.
    pub header_timeout: Duration,
    /// From accept to the end of the answer, however slowly the client reads it.
    pub deadline: Duration,
}

pub const LIMITS: Limits = Limits {
    max_connections: 128,
    header_timeout: Duration::from_secs(5),
    deadline: Duration::from_secs(30),
};

/// Read buffer per connection (hyper's smallest): a request head larger than this is refused.
const MAX_BUF: usize = 8192;
/// The pause after a failed accept (out of fds): a retry at once would spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Where to listen: `127.0.0.1:9782` or `unix:/run/ckpt-watch.sock`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
}

impl std::str::FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a path (unix:/run/ckpt-watch.sock)".into());
            }
            return Ok(Listen::Unix(path.into()));
        }
        s.parse().map(Listen::Tcp).map_err(|e| {
            format!(
                "`{}` is neither ADDR:PORT nor unix:/path ({e})",
                printable(s)
            )
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("{0} exists and is not a socket: not replaced")]
    NotASocket(String),
    #[error("{0}: a process is listening on this socket (another ckpt-watch?)")]
    InUse(String),
    #[error("{0}: cannot tell whether the socket there is in use ({1}): not replaced")]
    Unsure(String, io::Error),
    #[error(transparent)]
    Io(#[from] io::Error),
}

pub enum Listener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

/// A bound listener, and the socket file this daemon created for it, if any.
pub struct Bound {
    pub listener: Listener,
    pub socket: Option<SocketFile>,
}

/// The unix socket this daemon created: removed when dropped (at exit, on an error too), unless
/// something else has been put at its path since.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| (m.dev(), m.ino()) == (self.dev, self.ino))
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds `listen` (before the daemon starts work, so a busy port fails early). A unix socket
/// replaces only a socket nobody listens on, and is created for its owner only (0600).
pub async fn bind(listen: &Listen) -> Result<Bound, BindError> {
    match listen {
        Listen::Tcp(addr) => {
            let l = std::net::TcpListener::bind(addr)?;
            l.set_nonblocking(true)?;
            Ok(Bound {
                listener: Listener::Tcp(l),
                socket: None,
            })
        }
        Listen::Unix(path) => {
            remove_stale(path).await?;
            // SAFETY: umask only swaps the process's creation mask; no other thread of this
            // daemon creates files yet (the alert writer and HTTP threads start later).
            let old = unsafe { libc::umask(0o177) };
            let bound = std::os::unix::net::UnixListener::bind(path);
            // SAFETY: as above, restoring the mask it had.
            unsafe { libc::umask(old) };
            let l = bound?;
            let meta = std::fs::symlink_metadata(path)?;
            let socket = SocketFile {
                path: path.clone(),
                dev: meta.dev(),
                ino: meta.ino(),
            };
            l.set_nonblocking(true)?;
            Ok(Bound {
                listener: Listener::Unix(l),
                socket: Some(socket),
            })
        }
    }
}

/// Removes what is at `path` only when it is a socket that refuses connections: left behind by
/// a daemon that died. Anything else there (a file, a directory, a link, a live socket) stays.
async fn remove_stale(path: &Path) -> Result<(), BindError> {
    let shown = || printable(&path.display().to_string());
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
        Ok(m) => m,
    };
    if !meta.file_type().is_socket() {
        return Err(BindError::NotASocket(shown()));
    }
    // A non-blocking connect: a listener with a full backlog answers EAGAIN, never hangs.
    let probe = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::UnixStream::connect(path),
    )
    .await;
    match probe {
        Ok(Ok(_)) => Err(BindError::InUse(shown())),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            // Only the socket just probed, not one put there since.
            let again = std::fs::symlink_metadata(path)?;
            if (again.dev(), again.ino()) != (meta.dev(), meta.ino()) {
                return Err(BindError::Unsure(shown(), io::ErrorKind::Other.into()));
            }
            std::fs::remove_file(path)?;
            tracing::info!(path = %shown(), "removed a stale socket nobody listened on");
            Ok(())
        }
        Ok(Err(e)) => Err(BindError::Unsure(shown(), e)),
        Err(_) => Err(BindError::Unsure(shown(), io::ErrorKind::TimedOut.into())),
    }
}

/// Serves `listener` on a thread of its own until the process exits.
pub fn spawn(listener: Listener, shared: SharedState, limits: Limits) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("ckpt-http".into())
        .spawn(move || {
            if let Err(e) = runtime.block_on(serve(listener, shared, limits)) {
                tracing::error!("HTTP server stopped: {e}");
            }
        })?;
    Ok(())
}

/// An answer, before it becomes an HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
}

/// Answers one request.
pub fn route(method: &str, path: &str, shared: &Shared, now: Instant) -> Reply {
    let json = |status, body: String| Reply {
        status,
        content_type: "application/json",
        body,
    };
    if method != "GET" {
        return Reply {
            status: StatusCode::METHOD_NOT_ALLOWED,
            content_type: "text/plain",
            body: "GET only\n".into(),
        };
    }
    match path {
        "/metrics" => Reply {
            status: StatusCode::OK,
            content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body: shared.metrics.render(),
        },
        "/healthz" => {
            let report = shared.report(now);
            let status = if report.reasons.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json(status, serde_json::to_string(&report).unwrap_or_default())
        }
        "/workloads" => json(
            StatusCode::OK,
            serde_json::to_string(&shared.workloads).unwrap_or_default(),
        ),
        _ => Reply {
            status: StatusCode::NOT_FOUND,
            content_type: "text/plain",
            body: "try /metrics, /healthz or /workloads\n".into(),
        },
    }
}

fn respond(shared: &SharedState, method: &str, path: &str) -> Response<Full<Bytes>> {
    let reply = route(method, path, &lock(shared), Instant::now());
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = reply.status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    if reply.status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(ALLOW, HeaderValue::from_static("GET"));
    }
    response
}

/// The open connections, oldest first.
#[derive(Default)]
struct Slots {
    next: u64,
    open: BTreeMap<u64, Slot>,
}

struct Slot {
    /// Set once the request head is in: from then on the connection is being answered.
    answering: Arc<AtomicBool>,
    /// Closes the connection, to make room for a newer one.
    evict: oneshot::Sender<()>,
}

/// How a new connection got its slot.
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    Free,
    /// The oldest connection that had sent no request yet was closed for it.
    Evicted,
}

impl Slots {
    /// A slot for a new connection: a free one, else that of the oldest connection still
    /// waiting for its request (so idle connections cannot lock scrapers out); none when every
    /// slot is answering a request.
    fn admit(&mut self, max: usize) -> Option<(Admission, Ticket)> {
        let mut admission = Admission::Free;
        if self.open.len() >= max {
            let idle = self
                .open
                .iter()
                .find(|(_, s)| !s.answering.load(Ordering::Relaxed))
                .map(|(id, _)| *id)?;
            if let Some(slot) = self.open.remove(&idle) {
                let _ = slot.evict.send(());
            }
            admission = Admission::Evicted;
        }
        let (evict, evicted) = oneshot::channel();
        let answering = Arc::new(AtomicBool::new(false));
        let id = self.next;
        self.next += 1;
        self.open.insert(
            id,
            Slot {
                answering: answering.clone(),
                evict,
            },
        );
        Some((
            admission,
            Ticket {
                id,
                answering,
                evicted,
            },
        ))
    }
}

struct Ticket {
    id: u64,
    answering: Arc<AtomicBool>,
    evicted: oneshot::Receiver<()>,
}

struct Server {
    shared: SharedState,
    limits: Limits,
    slots: Mutex<Slots>,
}

impl Server {
    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count_closed(&self, reason: &str) {
        lock(&self.shared)
            .metrics
            .http_closed
            .get_or_create(&label("reason", reason))
            .inc();
    }

    fn publish_open(&self, open: usize) {
        lock(&self.shared).metrics.http_connections.set(open as i64);
    }

    /// Gives a new connection a slot and a task, or closes it at once.
    fn admit<S>(self: &Arc<Self>, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (admitted, open) = {
            let mut slots = self.slots();
            let admitted = slots.admit(self.limits.max_connections);
            (admitted, slots.open.len())
        };
        match admitted {
            None => {
                drop(stream);
                self.count_closed("refused");
            }
            Some((admission, ticket)) => {
                if admission == Admission::Evicted {
                    self.count_closed("evicted");
                }
                self.publish_open(open);
                tokio::spawn(connection(stream, self.clone(), ticket));
            }
        }
    }
}

async fn serve(listener: Listener, shared: SharedState, limits: Limits) -> io::Result<()> {
    enum Accept {
        Tcp(tokio::net::TcpListener),
        Unix(tokio::net::UnixListener),
    }
    let listener = match listener {
        Listener::Tcp(l) => Accept::Tcp(tokio::net::TcpListener::from_std(l)?),
        Listener::Unix(l) => Accept::Unix(tokio::net::UnixListener::from_std(l)?),
    };
    let server = Arc::new(Server {
        shared,
        limits,
        slots: Mutex::default(),
    });
    let mut warned: Option<Instant> = None;
    loop {
        let accepted = match &listener {
            Accept::Tcp(l) => l.accept().await.map(|(s, _)| server.admit(s)),
            Accept::Unix(l) => l.accept().await.map(|(s, _)| server.admit(s)),
        };
        if let Err(e) = accepted {
            if warned.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                tracing::warn!("HTTP: accepting a connection: {e}");
                warned = Some(Instant::now());
            }
            tokio::time::sleep(ACCEPT_BACKOFF).await;
        }
    }
}

/// Serves one connection: one request, within the limits, unless evicted first.
async fn connection<S>(stream: S, server: Arc<Server>, ticket: Ticket)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Ticket {
        id,
        answering,
        evicted,
    } = ticket;
    let shared = server.shared.clone();
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        answering.store(true, Ordering::Relaxed);
        let response = respond(&shared, req.method().as_str(), req.uri().path());
        async move { Ok::<_, Infallible>(response) }
    });
    let closed = tokio::select! {
        served = tokio::time::timeout(server.limits.deadline, exchange(stream, service, server.limits)) => {
            match served {
                Ok(Err(e)) if e.is_timeout() => Some("header-timeout"),
                // A client that hung up or sent garbage (answered 400 by hyper) is done with.
                Ok(_) => None,
                Err(_) => Some("deadline"),
            }
        }
        // Counted by whoever evicted it.
        _ = evicted => None,
    };
    if let Some(reason) = closed {
        server.count_closed(reason);
    }
    let open = {
        let mut slots = server.slots();
        slots.open.remove(&id);
        slots.open.len()
    };
    server.publish_open(open);
}

/// One HTTP/1.1 exchange on `stream` with hyper's parser: no keep-alive, a bounded head.
async fn exchange<S, F>(stream: S, service: F, limits: Limits) -> hyper::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = Response<Full<Bytes>>,
            Error = Infallible,
        >,
    F::Future: Send + 'static,
{
    http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(false)
        .max_buf_size(MAX_BUF)
        .serve_connection(TokioIo::new(stream), service)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::daemon::health::Health;
    use proptest::prelude::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn shared() -> Shared {
        Shared::new(Health::default(), Instant::now())
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    const QUICK: Limits = Limits {
        max_connections: 4,
        header_timeout: Duration::from_millis(200),
        deadline: Duration::from_secs(2),
    };

    /// Serves one connection in memory: what a client sending `request` reads back, and how
    /// long until the server closed it.
    fn exchange_bytes(request: &[u8]) -> (String, Duration) {
        runtime().block_on(async {
            let (mut client, server_end) = tokio::io::duplex(64 << 10);
            let shared: SharedState = Arc::new(Mutex::new(shared()));
            let server = Arc::new(Server {
                shared,
                limits: QUICK,
                slots: Mutex::default(),
            });
            let t = Instant::now();
            server.admit(server_end);
            client.write_all(request).await.unwrap();
            let mut out = vec![];
            let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut out))
                .await
                .expect("the server closes every connection within its limits");
            (String::from_utf8_lossy(&out).into_owned(), t.elapsed())
        })
    }

    #[test]
    fn routes() {
        let s = shared();
        let now = Instant::now();
        let metrics = route("GET", "/metrics", &s, now);
        assert!(metrics.body.ends_with("# EOF\n") && metrics.content_type.contains("openmetrics"));
        let health = route("GET", "/healthz", &s, now);
        assert_eq!(health.status, StatusCode::OK);
        assert!(health.body.contains("\"status\":\"ok\""), "{}", health.body);
        assert_eq!(route("GET", "/workloads", &s, now).body, "[]");
        assert_eq!(route("GET", "/x", &s, now).status, StatusCode::NOT_FOUND);
        assert_eq!(
            route("POST", "/metrics", &s, now).status,
            StatusCode::METHOD_NOT_ALLOWED
        );
        let mut failing = shared();
        failing.watch.alert_error = Some("No space left on device".into());
        let health = route("GET", "/healthz", &failing, now);
        assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            health.body.contains("alert-write-failed"),
            "{}",
            health.body
        );
    }

    #[test]
    fn crlf_and_bare_lf_requests_are_answered() {
        for request in [
            &b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"GET /healthz HTTP/1.1\nHost: x\n\n",
            b"GET /healthz HTTP/1.0\n\n",
        ] {
            let (reply, _) = exchange_bytes(request);
            // An HTTP/1.0 request is answered in 1.0.
            assert!(
                reply.starts_with("HTTP/1.") && reply.contains(" 200 OK\r\n"),
                "{reply}"
            );
            assert!(reply.contains("\"status\":\"ok\""), "{reply}");
        }
    }

    #[test]
    fn a_silent_or_slow_client_is_closed_after_the_header_timeout() {
        for partial in [&b""[..], b"GET /healthz HTTP/1.1\r\nHost: x\r\n"] {
            let (reply, took) = exchange_bytes(partial);
            assert!(
                took >= QUICK.header_timeout && took < QUICK.header_timeout * 5,
                "closed after {took:?}"
            );
            assert!(!reply.contains("200 OK"), "{reply}");
        }
    }

    #[test]
    fn a_full_house_evicts_the_oldest_idle_connection_never_one_being_answered() {
        let mut slots = Slots::default();
        let tickets: Vec<Ticket> = (0..3).map(|_| slots.admit(3).expect("room").1).collect();
        tickets[0].answering.store(true, Ordering::Relaxed);
        let (how, _fourth) = slots.admit(3).expect("an idle one makes room");
        assert_eq!(how, Admission::Evicted);
        assert_eq!(slots.open.keys().copied().collect::<Vec<_>>(), [0, 2, 3]);
        for id in [2, 3] {
            slots.open[&id].answering.store(true, Ordering::Relaxed);
        }
        assert!(slots.admit(3).is_none(), "every slot answering: refused");
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
        assert!("unix:".parse::<Listen>().is_err());
    }

    #[test]
    fn unix_sockets_replace_only_stale_sockets_and_go_at_drop() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("ckpt-http-")
            .tempdir()
            .unwrap();
        let rt = runtime();
        let path = dir.path().join("s.sock");
        let listen = Listen::Unix(path.clone());
        std::fs::write(&path, "precious").unwrap();
        let e = rt.block_on(bind(&listen)).err().expect("a file is refused");
        assert!(matches!(e, BindError::NotASocket(_)), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
        std::fs::remove_file(&path).unwrap();
        let live = rt.block_on(bind(&listen)).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let e = rt
            .block_on(bind(&listen))
            .err()
            .expect("a live socket is kept");
        assert!(matches!(e, BindError::InUse(_)), "{e}");
        // A dead daemon's socket: the file stays, nobody listens.
        let Bound { listener, socket } = live;
        drop(listener);
        std::mem::forget(socket);
        let again = rt
            .block_on(bind(&listen))
            .expect("a stale socket is replaced");
        drop(again);
        assert!(!path.exists(), "removed at drop");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_method_and_path_gets_an_answer(method in "\\PC{0,12}", path in "\\PC{0,64}") {
            let s = shared();
            let reply = route(&method, &path, &s, Instant::now());
            prop_assert!(!reply.body.is_empty());
            prop_assert!([200, 404, 405].contains(&reply.status.as_u16()));
        }
    }

    proptest! {
        // Each case may wait for the header timeout: few of them.
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn any_bytes_end_within_the_limits(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let (_, took) = exchange_bytes(&bytes);
            prop_assert!(took < QUICK.header_timeout * 5, "{took:?}");
        }

        #[test]
        fn any_well_formed_request_is_answered(
            path in prop::sample::select(vec!["/metrics", "/healthz", "/workloads", "/nope"]),
            headers in proptest::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,15}", "[ -~]{0,40}"), 0..8),
            bare_lf in any::<bool>(),
        ) {
            let eol = if bare_lf { "\n" } else { "\r\n" };
            let mut request = format!("GET {path} HTTP/1.1{eol}");
            for (name, value) in headers {
                request.push_str(&format!("{name}: {}{eol}", value.trim()));
            }
            request.push_str(eol);
            let (reply, _) = exchange_bytes(request.as_bytes());
            // A header hyper refuses (a second Content-Length, a Transfer-Encoding) is a 400.
            prop_assert!(reply.starts_with("HTTP/1.1 "), "{request:?} -> {reply:?}");
        }
    }
}
