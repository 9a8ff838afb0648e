//! Request bodies that cannot hold a request slot for ever: a streamed body must keep a
//! minimum rate over a window (a trickle of a byte every few seconds never trips an idle
//! timeout), and a buffered body must come whole within a deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use futures::{Stream, StreamExt};
use tokio::time::Instant;

/// How a streamed body must move (from [`crate::serve::Limits::pace`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pace {
    /// Longest gap between two pieces.
    pub idle: Duration,
    /// Bytes a second each window must average; 0: no minimum.
    pub min_rate: u64,
    pub window: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("no body data for {0:?}")]
    Stalled(Duration),
    #[error("the body came slower than {rate} bytes a second (HTTP_BODY_MIN_BYTES_PER_SECOND)")]
    TooSlow { rate: u64 },
    #[error("the body was cut short or unreadable ({0})")]
    Read(String),
}

impl BodyError {
    /// Stalled or too slow: the client's pace, answered 408.
    pub fn is_timeout(&self) -> bool {
        !matches!(self, BodyError::Read(_))
    }
}

impl From<BodyError> for std::io::Error {
    fn from(e: BodyError) -> Self {
        let kind = if e.is_timeout() {
            std::io::ErrorKind::TimedOut
        } else {
            std::io::ErrorKind::Other
        };
        std::io::Error::new(kind, e.to_string())
    }
}

struct Paced<S> {
    body: S,
    window_start: Instant,
    window_bytes: u64,
    last: Instant,
    done: bool,
}

impl<S> Paced<S> {
    /// At a window's end: enough bytes came, or the body is too slow.
    fn check_window(&mut self, pace: &Pace, now: Instant) -> Result<(), BodyError> {
        if pace.min_rate == 0 || now < self.window_start + pace.window {
            return Ok(());
        }
        let needed = pace.min_rate as f64 * (now - self.window_start).as_secs_f64();
        if (self.window_bytes as f64) < needed {
            return Err(BodyError::TooSlow {
                rate: pace.min_rate,
            });
        }
        self.window_start = now;
        self.window_bytes = 0;
        Ok(())
    }
}

/// `body`, failing with [`BodyError`] when no piece comes within `pace.idle` or a window
/// of `pace.window` brings less than `pace.min_rate` bytes a second. Ends after an error.
pub fn paced<S, E>(body: S, pace: Pace) -> impl Stream<Item = Result<Bytes, BodyError>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
    E: std::fmt::Display + Send,
{
    let now = Instant::now();
    let state = Paced {
        body,
        window_start: now,
        window_bytes: 0,
        last: now,
        done: false,
    };
    futures::stream::unfold(state, move |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            let idle_end = st.last + pace.idle;
            let wake = if pace.min_rate > 0 {
                idle_end.min(st.window_start + pace.window)
            } else {
                idle_end
            };
            let next = tokio::time::timeout_at(wake, st.body.next()).await;
            let now = Instant::now();
            let failed = match next {
                Ok(Some(Ok(piece))) => {
                    st.window_bytes += piece.len() as u64;
                    st.last = now;
                    match st.check_window(&pace, now) {
                        Ok(()) => return Some((Ok(piece), st)),
                        Err(e) => e,
                    }
                }
                Ok(Some(Err(e))) => BodyError::Read(e.to_string()),
                Ok(None) => return None,
                Err(_) if now >= idle_end => BodyError::Stalled(pace.idle),
                Err(_) => match st.check_window(&pace, now) {
                    Ok(()) => continue,
                    Err(e) => e,
                },
            };
            st.done = true;
            return Some((Err(failed), st));
        }
    })
}

/// `body` failing once `deadline` passed before its end; `fired` tells the caller that
/// this, not the client's data, ended it (answered 408, not 400).
pub fn with_deadline(body: Body, deadline: Duration, fired: Arc<AtomicBool>) -> Body {
    let end = Instant::now() + deadline;
    let stream = futures::stream::unfold(
        (body.into_data_stream(), false),
        move |(mut stream, done)| {
            let fired = fired.clone();
            async move {
                if done {
                    return None;
                }
                match tokio::time::timeout_at(end, stream.next()).await {
                    Ok(Some(item)) => Some((item, (stream, false))),
                    Ok(None) => None,
                    Err(_) => {
                        fired.store(true, Ordering::SeqCst);
                        Some((
                            Err(axum::Error::new(BodyError::Stalled(deadline))),
                            (stream, true),
                        ))
                    }
                }
            }
        },
    );
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trickle(every: Duration) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
        Box::pin(futures::stream::unfold((), move |()| async move {
            tokio::time::sleep(every).await;
            Some((Ok(Bytes::from_static(b"x")), ()))
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_that_never_stalls_is_cut_at_the_first_window() {
        let pace = Pace {
            idle: Duration::from_secs(10),
            min_rate: 100,
            window: Duration::from_secs(3),
        };
        let started = Instant::now();
        let mut s = Box::pin(paced(trickle(Duration::from_secs(1)), pace));
        let mut got = 0;
        let err = loop {
            match s.next().await {
                Some(Ok(b)) => got += b.len(),
                Some(Err(e)) => break e,
                None => panic!("the trickle ended"),
            }
        };
        assert!(matches!(err, BodyError::TooSlow { .. }), "{err}");
        assert!(err.is_timeout());
        assert!(got <= 3, "{got}");
        assert!(started.elapsed() <= Duration::from_secs(4));
        assert!(s.next().await.is_none(), "ends after the error");
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_body_passes_and_a_silent_one_is_cut_at_its_window() {
        let pace = Pace {
            idle: Duration::from_secs(10),
            min_rate: 1,
            window: Duration::from_secs(3),
        };
        let fast = futures::stream::iter(
            (0..5).map(|_| Ok::<_, std::io::Error>(Bytes::from_static(b"abc"))),
        );
        let all: Vec<_> = paced(fast, pace).collect().await;
        assert_eq!(all.len(), 5);
        assert!(all.iter().all(Result::is_ok));
        let silent = futures::stream::pending::<Result<Bytes, std::io::Error>>();
        let started = Instant::now();
        let mut s = Box::pin(paced(silent, pace));
        assert!(matches!(
            s.next().await,
            Some(Err(BodyError::TooSlow { .. }))
        ));
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        // Without a minimum rate only the idle timeout ends it.
        let started = Instant::now();
        let silent = futures::stream::pending::<Result<Bytes, std::io::Error>>();
        let mut s = Box::pin(paced(
            silent,
            Pace {
                min_rate: 0,
                ..pace
            },
        ));
        assert!(matches!(s.next().await, Some(Err(BodyError::Stalled(_)))));
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }
}
