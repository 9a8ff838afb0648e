//! Serving with limits: axum::serve runs hyper without a timer, so a client that trickles
//! its headers (slowloris) or goes quiet holds a connection for ever. Here every connection
//! has a header-read deadline (from the head's first byte) and an idle timeout between
//! requests, connections are capped (at the cap the longest-idle connection makes room for
//! a new one), and the service's routes are capped in concurrency (503 beyond, not a queue
//! that eats memory).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use futures::task::AtomicWaker;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;

use crate::throttle::Throttle;

/// What a connection and a request may take. From the environment, range-checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Whole request head from its first byte (`HTTP_HEADER_READ_TIMEOUT_SECONDS`,
    /// default 10); a new connection's first head from the accept.
    pub header_read_timeout: Duration,
    /// Longest wait for the client's next request (`HTTP_IDLE_TIMEOUT_SECONDS`, default 75):
    /// ends idle keep-alive connections. During a request handlers bound their own body
    /// reads with it (see the recorder's upload).
    pub idle_timeout: Duration,
    /// Whole handling of a buffered request (`HTTP_REQUEST_TIMEOUT_SECONDS`, default 60);
    /// streamed uploads are bounded by the idle timeout, the minimum rate and their byte
    /// limit instead.
    pub request_timeout: Duration,
    /// The whole body of a buffered request (`HTTP_BODY_READ_TIMEOUT_SECONDS`, default 20):
    /// 408 past it, so a slow body cannot hold a request slot for the request timeout.
    pub body_read_timeout: Duration,
    /// Streamed bodies (uploads): at least this many bytes a second over every rate window
    /// (`HTTP_BODY_MIN_BYTES_PER_SECOND`, default 1024), else 408: a trickle that never
    /// stalls long enough for the idle timeout still ends.
    pub body_min_rate: u64,
    /// The window the minimum rate is measured over (`HTTP_BODY_RATE_WINDOW_SECONDS`,
    /// default 30): a short pause (a phone changing networks) passes.
    pub body_rate_window: Duration,
    /// Open connections (`HTTP_MAX_CONNECTIONS`, default 512); at the cap the longest-idle
    /// connection is closed to make room; with none idle, the new one is closed.
    pub max_connections: usize,
    /// Requests handled at once on the service's routes (`HTTP_MAX_CONCURRENT_REQUESTS`,
    /// default 64); beyond, 503 with Retry-After. Probes and metrics are not counted.
    pub max_concurrent_requests: usize,
    /// After SIGTERM, how long the service goes on accepting, `/ready` answering 503,
    /// before it stops accepting and drains (`SHUTDOWN_DELAY_SECONDS`, default 5, 0 for
    /// none). Kubernetes removes a terminating pod from its Service's endpoints while the
    /// pod is told to stop; kube-proxy on every node takes a moment to follow, and a new
    /// connection routed to a pod that already stopped accepting is refused. Seen in a
    /// `kubectl drain` on three nodes.
    pub shutdown_delay: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            request_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(20),
            body_min_rate: 1024,
            body_rate_window: Duration::from_secs(30),
            max_connections: 512,
            max_concurrent_requests: 64,
            shutdown_delay: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid setting {variable}={value:?}: expected {expected}")]
pub struct LimitError {
    pub variable: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl Limits {
    pub fn from_env() -> Result<Self, LimitError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, LimitError> {
        let d = Self::default();
        let seconds = |variable: &'static str, default: Duration| match get(variable) {
            None => Ok(default),
            Some(v) => match v.trim().parse::<f64>() {
                Ok(s) if s.is_finite() && (0.1..=3600.0).contains(&s) => {
                    Ok(Duration::from_secs_f64(s))
                }
                _ => Err(LimitError {
                    variable,
                    value: v,
                    expected: "seconds from 0.1 to 3600",
                }),
            },
        };
        let count = |variable: &'static str, default: usize| match get(variable) {
            None => Ok(default),
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if (1..=100_000).contains(&n) => Ok(n),
                _ => Err(LimitError {
                    variable,
                    value: v,
                    expected: "a whole number from 1 to 100000",
                }),
            },
        };
        let rate = |variable: &'static str, default: u64| match get(variable) {
            None => Ok(default),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if n <= 1 << 30 => Ok(n),
                _ => Err(LimitError {
                    variable,
                    value: v,
                    expected: "bytes a second from 0 (no minimum) to 1073741824",
                }),
            },
        };
        Ok(Self {
            header_read_timeout: seconds(
                "HTTP_HEADER_READ_TIMEOUT_SECONDS",
                d.header_read_timeout,
            )?,
            idle_timeout: seconds("HTTP_IDLE_TIMEOUT_SECONDS", d.idle_timeout)?,
            request_timeout: seconds("HTTP_REQUEST_TIMEOUT_SECONDS", d.request_timeout)?,
            body_read_timeout: seconds("HTTP_BODY_READ_TIMEOUT_SECONDS", d.body_read_timeout)?,
            body_min_rate: rate("HTTP_BODY_MIN_BYTES_PER_SECOND", d.body_min_rate)?,
            body_rate_window: seconds("HTTP_BODY_RATE_WINDOW_SECONDS", d.body_rate_window)?,
            max_connections: count("HTTP_MAX_CONNECTIONS", d.max_connections)?,
            max_concurrent_requests: count(
                "HTTP_MAX_CONCURRENT_REQUESTS",
                d.max_concurrent_requests,
            )?,
            shutdown_delay: match get("SHUTDOWN_DELAY_SECONDS") {
                None => d.shutdown_delay,
                Some(v) => match v.trim().parse::<f64>() {
                    Ok(s) if s.is_finite() && (0.0..=60.0).contains(&s) => {
                        Duration::from_secs_f64(s)
                    }
                    _ => {
                        return Err(LimitError {
                            variable: "SHUTDOWN_DELAY_SECONDS",
                            value: v,
                            expected: "seconds from 0 to 60",
                        });
                    }
                },
            },
        })
    }

    /// How streamed bodies are paced (see [`crate::body::paced`]).
    pub fn pace(&self) -> crate::body::Pace {
        crate::body::Pace {
            idle: self.idle_timeout,
            min_rate: self.body_min_rate,
            window: self.body_rate_window,
        }
    }
}

/// What the accept loop counts: connections closed to make room, new ones refused.
#[derive(Clone, Default)]
pub struct ConnectionCounters {
    pub evicted: Counter,
    pub refused: Counter,
}

/// What the accept loop and one connection share.
struct Conn {
    /// Requests of this connection in a handler now.
    in_flight: AtomicUsize,
    /// Requests this connection started: a head deadline armed before the last one began
    /// is stale.
    started: AtomicU64,
    /// Milliseconds since the loop began, at the last request's start or end: the
    /// longest-idle connection is closed first.
    last_active: AtomicU64,
    /// Milliseconds since the loop began (plus one; 0: none) when the bytes of a request
    /// head began to come: such a connection is closed only when none is idle.
    head_since: AtomicU64,
    /// Set by the accept loop to close this connection while it waits for a request.
    evicted: AtomicBool,
    /// The connection's pending read, woken on eviction.
    waker: AtomicWaker,
    epoch: Instant,
}

impl Conn {
    fn new(epoch: Instant) -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            last_active: AtomicU64::new(epoch.elapsed().as_millis() as u64),
            head_since: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            epoch,
        }
    }
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
    fn touch(&self) {
        self.last_active.store(self.now(), Ordering::SeqCst);
    }
}

/// The open connections, so that one idle can be closed when the cap is reached.
#[derive(Default)]
struct Open {
    next: u64,
    conns: HashMap<u64, Arc<Conn>>,
}

impl Open {
    /// Marks for closing the longest-idle connection with no request in a handler (one
    /// that sends nothing first, else the one whose head has been coming the longest: a
    /// slowloris before a request about to start); false when every connection is busy.
    fn evict_idlest(&self) -> bool {
        let victim = self
            .conns
            .values()
            .filter(|c| {
                c.in_flight.load(Ordering::SeqCst) == 0 && !c.evicted.load(Ordering::SeqCst)
            })
            .min_by_key(|c| match c.head_since.load(Ordering::SeqCst) {
                0 => (false, c.last_active.load(Ordering::SeqCst)),
                since => (true, since),
            });
        match victim {
            Some(c) => {
                c.evicted.store(true, Ordering::SeqCst);
                c.waker.wake();
                true
            }
            None => false,
        }
    }
}

/// How long a new connection waits for the slot an evicted one frees.
const EVICTION_WAIT: Duration = Duration::from_secs(2);

/// Accepts on `listener` until `shutdown` resolves, then lets connections finish their
/// requests (for at most 25 s: the pod's grace period is 30).
pub async fn serve_listener(
    listener: TcpListener,
    router: Router,
    limits: &Limits,
    counters: ConnectionCounters,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper's own header timer starts as soon as it waits for a head, so it would close
    // an idle keep-alive connection after the header timeout instead of the idle timeout:
    // the head deadline is kept by `IdleStream` instead, from the head's first byte.
    http.timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let open = Arc::new(Mutex::new(Open::default()));
    let epoch = Instant::now();
    // One warning per 10 s at most, with the count: a flood of refusals must not become
    // a flood of log lines.
    let refusals = Arc::new(Throttle::new(Duration::from_secs(10)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning on the error.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let serve = {
            let (http, router, open) = (http.clone(), router.clone(), open.clone());
            let limits = limits.clone();
            move |stream: tokio::net::TcpStream,
                  permit: tokio::sync::OwnedSemaphorePermit,
                  watcher: hyper_util::server::graceful::Watcher| {
                let _ = stream.set_nodelay(true);
                let conn = Arc::new(Conn::new(epoch));
                let id = {
                    let mut o = open.lock().unwrap_or_else(|p| p.into_inner());
                    o.next += 1;
                    let id = o.next;
                    o.conns.insert(id, conn.clone());
                    id
                };
                let io = TokioIo::new(IdleStream::new(stream, &limits, conn.clone()));
                let service = TowerToHyperService::new(Tracked { router, conn, peer });
                let connection = watcher.watch(http.serve_connection(io, service));
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    open.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .conns
                        .remove(&id);
                    drop(permit);
                });
            }
        };
        let watcher = graceful.watcher();
        if let Ok(permit) = connections.clone().try_acquire_owned() {
            serve(stream, permit, watcher);
            continue;
        }
        // At the cap: an idle connection (a keep-alive one, or one that never sent a
        // request) makes room; one that is being served never does.
        let evicted = open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .evict_idlest();
        if evicted {
            counters.evicted.inc();
            let (connections, counters, refusals) =
                (connections.clone(), counters.clone(), refusals.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(EVICTION_WAIT, connections.acquire_owned()).await {
                    Ok(Ok(permit)) => serve(stream, permit, watcher),
                    _ => refuse(&counters, &refusals, peer),
                }
            });
        } else {
            drop(stream);
            refuse(&counters, &refusals, peer);
        }
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(25), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after 25 s; stopping anyway");
    }
    Ok(())
}

fn refuse(counters: &ConnectionCounters, refusals: &Throttle, peer: SocketAddr) {
    counters.refused.inc();
    if let Some(since_last) = refusals.allow() {
        tracing::warn!(
            %peer,
            refused = since_last + 1,
            "connection limit reached and every connection busy; closing new connections"
        );
    }
}

/// Binds `addr` and serves; a helper for the admin port and tests.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// The router, counting the connection's requests in flight until their response is ready.
#[derive(Clone)]
struct Tracked {
    router: Router,
    conn: Arc<Conn>,
    /// The client's address, for handlers as axum's `ConnectInfo` (brute-force limits).
    peer: SocketAddr,
}

struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<B> tower_service::Service<axum::http::Request<B>> for Tracked
where
    Router: tower_service::Service<axum::http::Request<B>>,
    <Router as tower_service::Service<axum::http::Request<B>>>::Future: Send + 'static,
{
    type Response = <Router as tower_service::Service<axum::http::Request<B>>>::Response;
    type Error = <Router as tower_service::Service<axum::http::Request<B>>>::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower_service::Service::<axum::http::Request<B>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, mut request: axum::http::Request<B>) -> Self::Future {
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        self.conn.in_flight.fetch_add(1, Ordering::SeqCst);
        self.conn.started.fetch_add(1, Ordering::SeqCst);
        self.conn.head_since.store(0, Ordering::SeqCst);
        self.conn.touch();
        let guard = InFlight(self.conn.clone());
        let future = tower_service::Service::call(&mut self.router, request);
        Box::pin(async move {
            let response = future.await;
            drop(guard);
            response
        })
    }
}

/// A TCP stream that, while no request is in a handler, fails its reads with `TimedOut`
/// when the client sends nothing for `idle` (an idle keep-alive connection) or when a
/// request head is not whole within `head` of its first byte (slowloris; a new
/// connection's first head: of the accept), and with `ConnectionAborted` once the accept
/// loop evicted it.
struct IdleStream {
    inner: tokio::net::TcpStream,
    idle: Duration,
    head: Duration,
    conn: Arc<Conn>,
    /// One timer, moved (`reset`) as the phase changes: hyper's task stays registered on
    /// it, so a deadline moved while hyper waits for a read still wakes it.
    timer: Pin<Box<Sleep>>,
    phase: Phase,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// A request head is coming (or a new connection's first is due); `started`: the
    /// connection's request count when it was armed.
    Head { started: u64 },
    /// Waiting for the next request.
    Idle,
    /// A handler runs: its own limits apply.
    Serving,
}

impl IdleStream {
    fn new(inner: tokio::net::TcpStream, limits: &Limits, conn: Arc<Conn>) -> Self {
        Self {
            inner,
            idle: limits.idle_timeout,
            head: limits.header_read_timeout,
            conn,
            timer: Box::pin(tokio::time::sleep(limits.header_read_timeout)),
            phase: Phase::Head { started: 0 },
        }
    }

    fn enter(&mut self, phase: Phase, after: Duration) {
        self.phase = phase;
        self.timer
            .as_mut()
            .reset(tokio::time::Instant::now() + after);
    }

    /// Sending a response is activity: the idle wait starts after it (on the one timer,
    /// which hyper's pending read is registered on).
    fn wrote(&mut self, written: &Poll<std::io::Result<usize>>) {
        if matches!(written, Poll::Ready(Ok(n)) if *n > 0)
            && self.conn.in_flight.load(Ordering::SeqCst) == 0
        {
            self.enter(Phase::Idle, self.idle);
        }
    }

    fn expired(&self) -> std::io::Error {
        let why = match self.phase {
            Phase::Head { .. } => "the request head did not come whole within the header timeout",
            _ => "the client sent nothing for the idle timeout",
        };
        std::io::Error::new(std::io::ErrorKind::TimedOut, why)
    }
}

impl AsyncRead for IdleStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.conn.in_flight.load(Ordering::SeqCst) > 0 {
            // A handler reads the body: its own limits apply, not the connection's.
            this.phase = Phase::Serving;
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        if this.conn.evicted.load(Ordering::SeqCst) {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "closed to make room for a new connection",
            )));
        }
        this.conn.waker.register(cx.waker());
        let started = this.conn.started.load(Ordering::SeqCst);
        match this.phase {
            // A request ran since (its head deadline is stale), or one just ended.
            Phase::Head { started: armed } if armed != started => {
                this.enter(Phase::Idle, this.idle)
            }
            Phase::Serving => this.enter(Phase::Idle, this.idle),
            _ => {}
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                if this.phase == Phase::Idle {
                    // The first byte of a head: it has the header timeout to be whole.
                    this.enter(Phase::Head { started }, this.head);
                }
                if this.conn.head_since.load(Ordering::SeqCst) == 0 {
                    this.conn
                        .head_since
                        .store(this.conn.now() + 1, Ordering::SeqCst);
                }
                // By the clock: a timer never polled (bytes always ready) never fires.
                if tokio::time::Instant::now() >= this.timer.deadline() {
                    return Poll::Ready(Err(this.expired()));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(this.expired())),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for IdleStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&written);
        written
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        // hyper writes vectored: the same activity as `poll_write`.
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&written);
        written
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_range_checked() {
        assert_eq!(Limits::from_lookup(|_| None).unwrap(), Limits::default());
        for (k, v) in [
            ("HTTP_IDLE_TIMEOUT_SECONDS", "1e300"),
            ("HTTP_HEADER_READ_TIMEOUT_SECONDS", "0"),
            ("HTTP_MAX_CONCURRENT_REQUESTS", "0"),
            ("SHUTDOWN_DELAY_SECONDS", "-1"),
            ("SHUTDOWN_DELAY_SECONDS", "61"),
        ] {
            let err = Limits::from_lookup(|x| (x == k).then(|| v.to_string())).unwrap_err();
            assert!(err.to_string().contains(k), "{err}");
        }
    }
}
