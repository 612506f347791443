//! How long a connection may take to say what it wants, as upstream's
//! net/http server bounds it (kube-apiserver's ReadHeaderTimeout 32 s,
//! IdleTimeout 90 s, MaxHeaderBytes 1 MiB; the request timeout bounds a body).
//!
//! hyper's own header timer runs from the moment it waits for a request head,
//! so it would close an idle keep-alive connection after the header timeout;
//! Go gives an idle connection the idle timeout and starts the header timeout
//! only at the next request's first byte. So the deadlines are kept here: the
//! connection's reads ([`Watched`]) note that first byte, the service notes
//! when requests start and when their responses end ([`InFlight`]), and
//! [`expired`] resolves when the connection has overstayed.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The serving limits of upstream's kube-apiserver (its http.Server).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServingLimits {
    /// From a request's first byte (a new connection's first request: from the
    /// handshake) until its head is read (upstream's ReadHeaderTimeout).
    pub header_timeout: Duration,
    /// How long a keep-alive connection may wait for its next request, and an
    /// HTTP/2 connection may go without a stream (upstream's IdleTimeout).
    pub idle_timeout: Duration,
    /// The request line and headers of HTTP/1.1, the header list of HTTP/2
    /// (upstream's MaxHeaderBytes).
    pub max_header_bytes: usize,
    /// How long reading a request body may take, counted from the head's
    /// arrival: upstream reads it inside the request timeout. Zero is no limit.
    pub body_timeout: Duration,
}

impl Default for ServingLimits {
    /// Upstream's values (k8s.io/apiserver's SecureServingInfo.Serve and the
    /// default --request-timeout).
    fn default() -> Self {
        ServingLimits {
            header_timeout: Duration::from_secs(32),
            idle_timeout: Duration::from_secs(90),
            max_header_bytes: 1 << 20,
            body_timeout: Duration::from_secs(60),
        }
    }
}

impl ServingLimits {
    /// The longest HTTP/1 request line and headers: Go reads a head of up to
    /// MaxHeaderBytes plus 4096 bytes of slack.
    pub fn http1_max_head(&self) -> usize {
        (self.max_header_bytes + 4096).max(8192)
    }

    /// The HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE Go's server advertises for
    /// MaxHeaderBytes: ten fields' worth of the spec's 32-byte overhead more.
    pub fn http2_max_header_list(&self) -> u32 {
        u32::try_from(self.max_header_bytes + 10 * 32).unwrap_or(u32::MAX)
    }
}

/// What a connection is doing, as far as its deadline goes.
#[derive(Debug)]
struct Phase {
    /// Requests whose responses have not ended.
    in_flight: usize,
    /// When the connection last had nothing in flight (or was accepted).
    since: Instant,
    /// The first byte read since then: a request head has begun.
    first_byte: Option<Instant>,
    /// No request has been read yet.
    fresh: bool,
}

/// The state a connection, its service and its watchdog share.
#[derive(Debug)]
pub struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
    http2: bool,
}

impl Activity {
    pub fn new(http2: bool) -> Arc<Self> {
        Arc::new(Activity {
            phase: Mutex::new(Phase { in_flight: 0, since: Instant::now(), first_byte: None, fresh: true }),
            changed: Notify::new(),
            http2,
        })
    }

    pub fn is_http2(&self) -> bool {
        self.http2
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        // The phase is a few plain fields; one left by a panicking holder is still whole.
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes that a request has begun; the returned guard ends it when dropped
    /// (with the response body, when hyper has sent or abandoned it).
    pub fn begin(self: &Arc<Self>) -> InFlight {
        let mut p = self.phase();
        p.in_flight += 1;
        p.fresh = false;
        InFlight(self.clone())
    }

    fn read_some(&self) {
        let mut p = self.phase();
        if p.in_flight == 0 && p.first_byte.is_none() {
            p.first_byte = Some(Instant::now());
            drop(p);
            self.changed.notify_one();
        }
    }

    /// When the connection must be closed if nothing changes; none while a
    /// request is in flight (the request timeout governs it then).
    fn deadline(&self, limits: &ServingLimits) -> Option<Instant> {
        let p = self.phase();
        if p.in_flight > 0 {
            return None;
        }
        Some(match (self.http2, p.fresh, p.first_byte) {
            // HTTP/2 frames (pings, settings) are no request; only streams count.
            (true, _, _) => p.since + limits.idle_timeout,
            (false, true, _) => p.since + limits.header_timeout,
            (false, false, Some(first)) => first + limits.header_timeout,
            (false, false, None) => p.since + limits.idle_timeout,
        })
    }
}

/// A request in flight on a connection; dropping it ends the request.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut p = self.0.phase();
        p.in_flight = p.in_flight.saturating_sub(1);
        if p.in_flight == 0 {
            p.since = Instant::now();
            p.first_byte = None;
        }
        drop(p);
        self.0.changed.notify_one();
    }
}

/// Resolves once the connection has passed its deadline with nothing in flight.
pub async fn expired(activity: &Activity, limits: &ServingLimits) {
    loop {
        match activity.deadline(limits) {
            None => activity.changed.notified().await,
            Some(deadline) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {
                        if activity.deadline(limits).is_some_and(|d| d <= Instant::now()) {
                            return;
                        }
                    }
                    _ = activity.changed.notified() => {}
                }
            }
        }
    }
}

/// A connection's stream whose reads tell its [`Activity`] when a request
/// head begins.
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Watched { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read_some();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
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
    fn defaults_are_upstreams() {
        let l = ServingLimits::default();
        assert_eq!(l.header_timeout, Duration::from_secs(32));
        assert_eq!(l.idle_timeout, Duration::from_secs(90));
        assert_eq!(l.max_header_bytes, 1 << 20);
        assert_eq!(l.body_timeout, Duration::from_secs(60));
        assert_eq!(l.http1_max_head(), (1 << 20) + 4096);
        assert_eq!(l.http2_max_header_list(), (1 << 20) + 320);
    }

    #[test]
    fn http1_deadlines_follow_the_phase() {
        let limits = ServingLimits::default();
        let a = Activity::new(false);
        let start = a.phase().since;
        // A new connection has the header timeout for its first request, bytes or not.
        assert_eq!(a.deadline(&limits), Some(start + limits.header_timeout));
        a.read_some();
        assert_eq!(a.deadline(&limits), Some(start + limits.header_timeout));
        let req = a.begin();
        assert_eq!(a.deadline(&limits), None);
        drop(req);
        // Between requests: the idle timeout, until the next head's first byte.
        let idle_from = a.phase().since;
        assert!(idle_from >= start);
        assert_eq!(a.deadline(&limits), Some(idle_from + limits.idle_timeout));
        a.read_some();
        let first = a.phase().first_byte.expect("noted");
        assert_eq!(a.deadline(&limits), Some(first + limits.header_timeout));
        // Only the first byte starts the header clock.
        a.read_some();
        assert_eq!(a.phase().first_byte, Some(first));
        // Bytes read while a request is in flight (its body) are no new head.
        let req = a.begin();
        a.read_some();
        drop(req);
        assert_eq!(a.phase().first_byte, None);
    }

    #[test]
    fn http2_counts_streams_only() {
        let limits = ServingLimits::default();
        let a = Activity::new(true);
        let start = a.phase().since;
        a.read_some();
        assert_eq!(a.deadline(&limits), Some(start + limits.idle_timeout));
        let s1 = a.begin();
        let s2 = a.begin();
        drop(s1);
        assert_eq!(a.deadline(&limits), None, "a stream is still open");
        drop(s2);
        let since = a.phase().since;
        assert_eq!(a.deadline(&limits), Some(since + limits.idle_timeout));
    }

    #[tokio::test]
    async fn expired_waits_out_requests() {
        let limits = ServingLimits { idle_timeout: Duration::from_millis(200), ..ServingLimits::default() };
        let a = Activity::new(true);
        let req = a.begin();
        let waiting = {
            let a = a.clone();
            let limits = limits.clone();
            tokio::spawn(async move { expired(&a, &limits).await })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!waiting.is_finished(), "a request in flight keeps the connection");
        drop(req);
        let ended = Instant::now();
        waiting.await.expect("watchdog");
        assert!(Instant::now() >= ended + limits.idle_timeout);
    }
}
