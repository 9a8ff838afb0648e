//! Serving with limits: axum::serve runs hyper without a timer, so a client that trickles
//! its headers (slowloris) or goes quiet holds a connection for ever. Here every connection
//! has a header-read deadline and an idle timeout between requests, connections are capped, and the
//! service's routes are capped in concurrency (503 beyond, not a queue that eats memory).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;

/// What a connection and a request may take. From the environment, range-checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Whole request head (`HTTP_HEADER_READ_TIMEOUT_SECONDS`, default 10).
    pub header_read_timeout: Duration,
    /// Longest wait for the client's next request (`HTTP_IDLE_TIMEOUT_SECONDS`, default 75):
    /// ends idle keep-alive connections. During a request handlers bound their own body
    /// reads with it (see the recorder's upload).
    pub idle_timeout: Duration,
    /// Whole handling of a buffered request (`HTTP_REQUEST_TIMEOUT_SECONDS`, default 60);
    /// streamed uploads are bounded by the idle timeout and their byte limit instead.
    pub request_timeout: Duration,
    /// Open connections (`HTTP_MAX_CONNECTIONS`, default 512); beyond, new ones are closed.
    pub max_connections: usize,
    /// Requests handled at once on the service's routes (`HTTP_MAX_CONCURRENT_REQUESTS`,
    /// default 64); beyond, 503 with Retry-After. Probes and metrics are not counted.
    pub max_concurrent_requests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            request_timeout: Duration::from_secs(60),
            max_connections: 512,
            max_concurrent_requests: 64,
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
        Ok(Self {
            header_read_timeout: seconds(
                "HTTP_HEADER_READ_TIMEOUT_SECONDS",
                d.header_read_timeout,
            )?,
            idle_timeout: seconds("HTTP_IDLE_TIMEOUT_SECONDS", d.idle_timeout)?,
            request_timeout: seconds("HTTP_REQUEST_TIMEOUT_SECONDS", d.request_timeout)?,
            max_connections: count("HTTP_MAX_CONNECTIONS", d.max_connections)?,
            max_concurrent_requests: count(
                "HTTP_MAX_CONCURRENT_REQUESTS",
                d.max_concurrent_requests,
            )?,
        })
    }
}

/// Accepts on `listener` until `shutdown` resolves, then lets connections finish their
/// requests (for at most 25 s: the pod's grace period is 30).
pub async fn serve_listener(
    listener: TcpListener,
    router: Router,
    limits: &Limits,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
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
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; closing a new connection");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        // The idle timer runs only between requests: while a handler works hyper may wait
        // on a read, and that wait is not the client idling. Handlers bound their own
        // body reads (request timeout, per-piece idle timeouts).
        let in_flight = Arc::new(AtomicUsize::new(0));
        let io = TokioIo::new(IdleStream::new(
            stream,
            limits.idle_timeout,
            in_flight.clone(),
        ));
        let service = TowerToHyperService::new(Tracked {
            router: router.clone(),
            in_flight,
            peer,
        });
        let connection = graceful.watch(http.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
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

/// Binds `addr` and serves; a helper for the admin port and tests.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// The router, counting the connection's requests in flight until their response is ready.
#[derive(Clone)]
struct Tracked {
    router: Router,
    in_flight: Arc<AtomicUsize>,
    /// The client's address, for handlers as axum's `ConnectInfo` (brute-force limits).
    peer: SocketAddr,
}

struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
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
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(self.in_flight.clone());
        let future = tower_service::Service::call(&mut self.router, request);
        Box::pin(async move {
            let response = future.await;
            drop(guard);
            response
        })
    }
}

/// A TCP stream whose reads fail with `TimedOut` after waiting `idle` for bytes while no
/// request is in flight (an idle keep-alive connection, a request head that never comes).
struct IdleStream {
    inner: tokio::net::TcpStream,
    idle: Duration,
    in_flight: Arc<AtomicUsize>,
    /// Armed when a read starts waiting, cleared when bytes come or go.
    waiting: Option<Pin<Box<Sleep>>>,
}

impl IdleStream {
    fn new(inner: tokio::net::TcpStream, idle: Duration, in_flight: Arc<AtomicUsize>) -> Self {
        Self {
            inner,
            idle,
            in_flight,
            waiting: None,
        }
    }
}

impl AsyncRead for IdleStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.waiting = None;
                Poll::Ready(r)
            }
            Poll::Pending if this.in_flight.load(Ordering::SeqCst) > 0 => {
                this.waiting = None;
                Poll::Pending
            }
            Poll::Pending => {
                let idle = this.idle;
                let sleep = this
                    .waiting
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client sent nothing for the idle timeout",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
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
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            // Sending a response is activity: the idle wait starts after it.
            self.waiting = None;
        }
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
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
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
        ] {
            let err = Limits::from_lookup(|x| (x == k).then(|| v.to_string())).unwrap_err();
            assert!(err.to_string().contains(k), "{err}");
        }
    }
}
