//! The collector's accept loop and per-connection HTTP/1 serving, with the `[server]`
//! connection limits: a header timeout (from accept, or from the first byte of the next
//! request, to complete headers), a body timeout (from the headers to the end of the
//! body), an idle keep-alive timeout, a cap on open connections, and with TLS on a
//! handshake timeout.
//!
//! At the cap, a new connection takes the place of the one that has gone longest
//! without serving a request (a slow or idle client, never one with a request in
//! flight), so `/healthz` still gets through thousands of slowloris connections; only
//! when every connection is busy is the new one refused. Each limit has a metric.
//!
//! Plain HTTP and HTTPS share this one accept loop: with TLS on, the handshake runs in
//! the connection's own task once the connection has its place under the cap (a client
//! stuck in its handshake is evicted like a slow one), and the header timeout starts
//! when the handshake ends. [`serve_connection`] then serves the decrypted stream.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{IntCounterVec, IntGauge, Opts};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::tls::{PeerCertificate, TlsSetup};

/// The `[server]` connection limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// `tls_handshake_timeout`: from the connection's admission to the end of TLS.
    pub handshake_timeout: Duration,
}

/// Open connections and why connections were closed, on `/metrics`.
#[derive(Debug, Clone)]
pub struct ConnectionMetrics {
    /// `postflight_http_connections_open`.
    pub open: IntGauge,
    /// `postflight_http_connections_closed_total{reason}`: header_timeout, idle_timeout,
    /// evicted (made room at the cap), refused (cap with all busy); body_timeout counts
    /// requests whose body ran out of time (answered 408).
    pub closed: IntCounterVec,
    /// `postflight_tls_handshakes_failed_total{reason}`: timeout (past
    /// `server.tls_handshake_timeout`), failed (not TLS, a refused certificate, a
    /// protocol error).
    pub handshakes_failed: IntCounterVec,
}

impl ConnectionMetrics {
    /// Create and register on `metrics`.
    pub fn register(metrics: &Metrics) -> Result<Self, prometheus::Error> {
        let open = IntGauge::new(
            "postflight_http_connections_open",
            "Open HTTP connections (capped by server.max_connections).",
        )?;
        let closed = IntCounterVec::new(
            Opts::new(
                "postflight_http_connections_closed_total",
                "HTTP connections closed by a server limit, by reason.",
            ),
            &["reason"],
        )?;
        let handshakes_failed = IntCounterVec::new(
            Opts::new(
                "postflight_tls_handshakes_failed_total",
                "TLS handshakes that did not complete, by reason.",
            ),
            &["reason"],
        )?;
        metrics.register(Box::new(open.clone()));
        metrics.register(Box::new(closed.clone()));
        metrics.register(Box::new(handshakes_failed.clone()));
        Ok(ConnectionMetrics {
            open,
            closed,
            handshakes_failed,
        })
    }

    fn count(&self, reason: &str) {
        self.closed.with_label_values(&[reason]).inc();
    }
}

/// What every connection's task shares: the router, the limits, the metrics, TLS (when
/// on) and the shutdown signal.
#[derive(Clone)]
pub struct Serving {
    pub app: Router,
    pub limits: ConnectionLimits,
    pub metrics: ConnectionMetrics,
    pub tls: Option<Arc<TlsSetup>>,
    pub shutdown: watch::Receiver<bool>,
}

/// Accept connections until `shutdown` turns true, then let open ones finish their
/// request (bounded by the timeouts) and return.
pub async fn run(listener: TcpListener, serving: Serving) {
    let table = Arc::new(ConnectionTable::new(cap_within_file_limit(
        serving.limits.max_connections,
    )));
    let mut shutdown = serving.shutdown.clone();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        while tasks.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // Out of file descriptors and the like: wait briefly rather than spin.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = table.admit(&serving.metrics) else {
            serving.metrics.count("refused");
            continue;
        };
        let _ = stream.set_nodelay(true);
        tasks.spawn(serve_accepted(stream, peer, slot, serving.clone()));
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

/// One admitted connection: the TLS handshake when TLS is on, then HTTP.
async fn serve_accepted(stream: TcpStream, addr: SocketAddr, slot: Slot, serving: Serving) {
    let Some(tls) = serving.tls.clone() else {
        let peer = Peer {
            addr,
            certificate: None,
        };
        return serve_connection(stream, peer, slot, serving).await;
    };
    let mut shutdown = serving.shutdown.clone();
    let handshake = tls.handshake(stream, serving.limits.handshake_timeout);
    let (stream, certificate) = tokio::select! {
        done = handshake => match done {
            Ok(done) => done,
            Err(error) => {
                tracing::debug!(%addr, %error, "TLS handshake did not complete");
                serving.metrics.handshakes_failed.with_label_values(&[error.reason()]).inc();
                return;
            }
        },
        _ = slot.entry.evict.notified() => {
            serving.metrics.count("evicted");
            return;
        }
        _ = shutdown.wait_for(|stop| *stop) => return,
    };
    // The request head is owed from the end of the handshake on.
    slot.entry.restart_head();
    serve_connection(stream, Peer { addr, certificate }, slot, serving).await;
}

/// Who is at the other end of a connection; added to each of its requests.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The verified client certificate's names (mTLS), when one was presented.
    pub certificate: Option<PeerCertificate>,
}

/// File descriptors kept free of connections (sled, spool of own checks, logs, DNS).
const RESERVED_FILES: u64 = 64;

/// `max` connections, or fewer if the open-file limit cannot hold them: the soft limit is
/// raised towards the hard one first, so `accept` never fails for lack of descriptors.
fn cap_within_file_limit(max: usize) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    #[allow(unsafe_code)]
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    let files = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return max;
        }
        let wanted = (max as u64).saturating_add(RESERVED_FILES);
        if limit.rlim_cur < wanted {
            let raised = libc::rlimit {
                rlim_cur: wanted.min(limit.rlim_max),
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = raised.rlim_cur;
            }
        }
        limit.rlim_cur
    };
    let fits = usize::try_from(files.saturating_sub(RESERVED_FILES)).unwrap_or(usize::MAX);
    if fits < max {
        tracing::warn!(
            configured = max,
            used = fits,
            open_file_limit = files,
            "server.max_connections lowered to fit the open-file limit (raise LimitNOFILE)"
        );
    }
    max.min(fits).max(1)
}

/// Serve HTTP/1 on one accepted stream (plain TCP, or TLS around it) under the limits.
/// Each request carries `ConnectInfo<SocketAddr>` and, when the client presented one,
/// its [`PeerCertificate`].
pub async fn serve_connection<I>(io: I, peer: Peer, slot: Slot, serving: Serving)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Serving {
        app,
        limits,
        metrics,
        mut shutdown,
        ..
    } = serving;
    let entry = slot.entry.clone();
    let service_entry = entry.clone();
    let timeouts = metrics.closed.with_label_values(&["body_timeout"]);
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let in_flight = RequestInFlight::begin(service_entry.clone());
        let body_timeout = limits.body_timeout;
        let timeouts = timeouts.clone();
        let mut app = app.clone();
        let peer = peer.clone();
        async move {
            let mut request =
                request.map(|body| Body::new(DeadlineBody::new(body, body_timeout, timeouts)));
            request.extensions_mut().insert(ConnectInfo(peer.addr));
            if let Some(certificate) = peer.certificate {
                request.extensions_mut().insert(certificate);
            }
            let response = tower_service::Service::call(&mut app, request).await;
            drop(in_flight);
            response
        }
    });
    let io = TokioIo::new(WatchedIo {
        inner: io,
        entry: entry.clone(),
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(connection);
    // Once closing, the connection finishes what it serves, within the timeouts.
    let mut closing: Option<Instant> = None;
    let grace = limits.header_timeout + limits.body_timeout;
    loop {
        tokio::select! {
            _ = connection.as_mut() => break,
            _ = tokio::time::sleep_until(closing.unwrap_or_else(Instant::now)), if closing.is_some() => break,
            _ = entry.evict.notified() => {
                metrics.count("evicted");
                break;
            }
            expired = entry.expiry(&limits), if closing.is_none() => {
                metrics.count(expired);
                if expired == "header_timeout" {
                    break;
                }
                connection.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + grace);
            }
            _ = shutdown.wait_for(|stop| *stop), if closing.is_none() => {
                connection.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + grace);
            }
        }
    }
    drop(slot);
}

/// The open connections, for the cap and for choosing whom to evict.
struct ConnectionTable {
    max: usize,
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<ConnectionEntry>>>,
}

/// One connection's activity, shared by its task, its I/O and the table.
pub struct ConnectionEntry {
    id: u64,
    epoch: Instant,
    /// Milliseconds since `epoch` when the last request ended (or the connection opened).
    last_active_ms: AtomicU64,
    /// Milliseconds since `epoch` + 1 when the bytes of a not yet served request head
    /// began arriving; 0 while none is pending.
    head_started_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// Told to close at once (evicted at the cap).
    evict: Notify,
    /// Woken when the deadline may have moved earlier (a new request head began).
    changed: Notify,
}

/// A connection's place in the table; freed on drop.
pub struct Slot {
    entry: Arc<ConnectionEntry>,
    table: Arc<ConnectionTable>,
    open: IntGauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.table.open.lock() {
            open.remove(&self.entry.id);
        }
        self.open.dec();
    }
}

impl ConnectionTable {
    fn new(max: usize) -> Self {
        ConnectionTable {
            max: max.max(1),
            epoch: Instant::now(),
            next_id: AtomicU64::new(1),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for a new connection, evicting the longest-idle one at the cap; `None` when
    /// every open connection is serving a request.
    fn admit(self: &Arc<Self>, metrics: &ConnectionMetrics) -> Option<Slot> {
        let mut open = self.open.lock().ok()?;
        if open.len() >= self.max {
            let victim = open
                .values()
                .filter(|entry| entry.in_flight.load(Ordering::Acquire) == 0)
                .min_by_key(|entry| entry.last_active_ms.load(Ordering::Acquire))
                .map(|entry| entry.id)?;
            if let Some(entry) = open.remove(&victim) {
                entry.evict.notify_one();
            }
        }
        let now = self.epoch.elapsed().as_millis() as u64;
        let entry = Arc::new(ConnectionEntry {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            epoch: self.epoch,
            last_active_ms: AtomicU64::new(now),
            // A new connection owes its first request head within the header timeout.
            head_started_ms: AtomicU64::new(now + 1),
            in_flight: AtomicUsize::new(0),
            evict: Notify::new(),
            changed: Notify::new(),
        });
        open.insert(entry.id, entry.clone());
        metrics.open.inc();
        Some(Slot {
            entry,
            table: self.clone(),
            open: metrics.open.clone(),
        })
    }
}

impl ConnectionEntry {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The first request head is owed from now on (after a TLS handshake).
    fn restart_head(&self) {
        self.head_started_ms
            .store(self.now_ms() + 1, Ordering::Release);
        self.changed.notify_one();
    }

    /// Bytes arrived: with no request in flight they start the next request's head.
    fn saw_bytes(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_started_ms.load(Ordering::Acquire) == 0
        {
            self.head_started_ms
                .store(self.now_ms() + 1, Ordering::Release);
            self.changed.notify_one();
        }
    }

    /// Resolves with the limit that expired: `header_timeout` (a head is pending too
    /// long) or `idle_timeout` (nothing pending, nothing in flight, too long).
    async fn expiry(&self, limits: &ConnectionLimits) -> &'static str {
        loop {
            if self.in_flight.load(Ordering::Acquire) > 0 {
                // Served requests are bounded by the body timeout and the handler; the
                // end of the request wakes this up again.
                self.changed.notified().await;
                continue;
            }
            let head = self.head_started_ms.load(Ordering::Acquire);
            let (since, limit, reason) = if head > 0 {
                (head - 1, limits.header_timeout, "header_timeout")
            } else {
                let last = self.last_active_ms.load(Ordering::Acquire);
                (last, limits.idle_timeout, "idle_timeout")
            };
            let deadline = self.epoch + Duration::from_millis(since) + limit;
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.changed.notified() => continue,
            }
            let still_same = self.head_started_ms.load(Ordering::Acquire) == head
                && self.in_flight.load(Ordering::Acquire) == 0
                && (head > 0 || self.last_active_ms.load(Ordering::Acquire) == since);
            if still_same {
                return reason;
            }
        }
    }
}

/// Marks a request as in flight from its head until its response is ready.
struct RequestInFlight(Arc<ConnectionEntry>);

impl RequestInFlight {
    fn begin(entry: Arc<ConnectionEntry>) -> Self {
        entry.in_flight.fetch_add(1, Ordering::AcqRel);
        entry.head_started_ms.store(0, Ordering::Release);
        entry.changed.notify_one();
        RequestInFlight(entry)
    }
}

impl Drop for RequestInFlight {
    fn drop(&mut self) {
        let entry = &self.0;
        entry
            .last_active_ms
            .store(entry.now_ms(), Ordering::Release);
        entry.in_flight.fetch_sub(1, Ordering::AcqRel);
        entry.changed.notify_one();
    }
}

/// The stream with reads reported to its [`ConnectionEntry`].
struct WatchedIo<I> {
    inner: I,
    entry: Arc<ConnectionEntry>,
}

impl<I: AsyncRead + Unpin> AsyncRead for WatchedIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.entry.saw_bytes();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WatchedIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The request body ran past `server.body_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the request body took longer than server.body_timeout")]
pub struct BodyTimeout;

/// Is `BodyTimeout` somewhere in this error's chain (e.g. from `axum::body::to_bytes`)?
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<BodyTimeout>() {
            return true;
        }
        current = error.source();
    }
    false
}

/// A request body that fails with [`BodyTimeout`] once its deadline passes (and counts it).
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeouts: prometheus::IntCounter,
}

impl DeadlineBody {
    fn new(inner: Incoming, limit: Duration, timeouts: prometheus::IntCounter) -> Self {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            timeouts,
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.timeouts.inc();
                Poll::Ready(Some(Err(Box::new(BodyTimeout))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
