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

    /// Whether a request's response has yet to end.
    fn busy(&self) -> bool {
        self.phase().in_flight > 0
    }

    fn read_some(&self) {
        // An HTTP/2 connection's deadline does not depend on its reads.
        if self.http2 {
            return;
        }
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
        // The watchdog is not woken: the end of a request only moves the
        // deadline later, and [`expired`] looks again before it could pass.
    }
}

/// Resolves once the connection has passed its deadline with nothing in flight.
///
/// Only an HTTP/1 request's first byte makes the deadline earlier, and only
/// that wakes this; while requests are in flight it looks again every
/// shortest limit, since the last one to end sets a deadline at least that
/// far off. Requests that begin and end cost it nothing.
pub async fn expired(activity: &Activity, limits: &ServingLimits) {
    let recheck = limits.header_timeout.min(limits.idle_timeout);
    loop {
        match activity.deadline(limits) {
            None => {
                tokio::select! {
                    _ = tokio::time::sleep(recheck) => {}
                    _ = activity.changed.notified() => {}
                }
            }
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

/// [`expired`] as a task of its own, resolving when it does and aborted when
/// dropped. A connection's task is polled several times per request; a
/// `select!` over the connection and `expired` would poll `expired`'s timer
/// and notice each time, where a task of its own runs only when they fire,
/// and the connection's polls only look at a flag.
pub struct Watchdog {
    alarm: Arc<Alarm>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Alarm {
    rung: std::sync::atomic::AtomicBool,
    waker: futures::task::AtomicWaker,
}

impl Watchdog {
    pub fn start(activity: Arc<Activity>, limits: Arc<ServingLimits>) -> Watchdog {
        let alarm = Arc::new(Alarm::default());
        let ring = alarm.clone();
        let task = tokio::spawn(async move {
            expired(&activity, &limits).await;
            ring.rung.store(true, std::sync::atomic::Ordering::Release);
            ring.waker.wake();
        });
        Watchdog { alarm, task }
    }

    fn rung(&self) -> bool {
        self.alarm.rung.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl std::future::Future for Watchdog {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.rung() {
            return Poll::Ready(());
        }
        self.alarm.waker.register(cx.waker());
        // Rung between the look and the registration: its wake found no waker.
        match self.rung() {
            true => Poll::Ready(()),
            false => Poll::Pending,
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Bytes a connection holds back from TLS before it writes them anyway.
const COALESCE_LIMIT: usize = 64 * 1024;

/// A connection's stream whose reads tell its [`Activity`] when a request
/// head begins, and whose writes are coalesced: while a response is still
/// being written, a flush first yields once, so that the frames other tasks
/// queue meanwhile (the same change going to a hundred watchers multiplexed
/// on one HTTP/2 connection, a watch's next events) leave in one TLS write
/// rather than one system call and record each. With nothing in flight
/// nothing more can come, and the flush is not delayed: a client sending one
/// request at a time would pay a second poll of the connection for each.
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
    held: bytes::BytesMut,
    /// The last flush yielded; the next one writes.
    yielded: bool,
}

impl<S> Watched<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Watched { inner, activity, held: bytes::BytesMut::new(), yielded: false }
    }
}

impl<S: AsyncWrite + Unpin> Watched<S> {
    /// Writes what is held back to the stream.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        use bytes::Buf;
        while !self.held.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.held) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.held.advance(n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
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
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.poll_write_vectored(cx, &[std::io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if this.held.len() + len > COALESCE_LIMIT {
            std::task::ready!(this.poll_drain(cx))?;
            // Large writes (a big list over HTTP/1.1) go straight through.
            if len >= COALESCE_LIMIT {
                return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
            }
        }
        for b in bufs {
            this.held.extend_from_slice(b);
        }
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.held.is_empty() && !this.yielded && this.activity.busy() {
            // Woken now, polled again after the tasks already queued.
            this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.yielded = false;
        std::task::ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records each write it is given.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl AsyncWrite for Writes {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
            self.0.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn writes_are_coalesced_until_a_flush_has_yielded() {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let activity = Activity::new(true);
        let mut w = Watched::new(Writes::default(), activity.clone());
        let mut pin = Pin::new(&mut w);
        let answering = activity.begin();
        assert!(matches!(pin.as_mut().poll_write(&mut cx, b"frame one "), Poll::Ready(Ok(10))));
        // While a response is being written, the first flush yields: nothing reaches the stream yet.
        assert!(pin.as_mut().poll_flush(&mut cx).is_pending());
        assert!(pin.inner.0.is_empty());
        // What other tasks queued meanwhile goes in the same write.
        let two = [std::io::IoSlice::new(b"frame "), std::io::IoSlice::new(b"two")];
        assert!(matches!(pin.as_mut().poll_write_vectored(&mut cx, &two), Poll::Ready(Ok(9))));
        assert!(matches!(pin.as_mut().poll_flush(&mut cx), Poll::Ready(Ok(()))));
        assert_eq!(pin.inner.0, vec![b"frame one frame two".to_vec()]);
        // Nothing held: a flush does not yield.
        assert!(matches!(pin.as_mut().poll_flush(&mut cx), Poll::Ready(Ok(()))));
        // Past the limit, what is held goes first and a large write goes
        // straight through; shutting down writes what is held.
        let big = vec![7u8; COALESCE_LIMIT];
        assert!(matches!(pin.as_mut().poll_write(&mut cx, b"small"), Poll::Ready(Ok(5))));
        assert!(matches!(pin.as_mut().poll_write(&mut cx, &big), Poll::Ready(Ok(n)) if n == COALESCE_LIMIT));
        assert!(matches!(pin.as_mut().poll_write(&mut cx, b"tail"), Poll::Ready(Ok(4))));
        assert!(pin.inner.0.len() == 3 && pin.inner.0[1] == b"small" && pin.inner.0[2] == big);
        assert!(matches!(pin.as_mut().poll_shutdown(&mut cx), Poll::Ready(Ok(()))));
        assert_eq!(pin.inner.0.last().map(Vec::as_slice), Some(&b"tail"[..]));
        // With nothing in flight, nothing more can come: the flush writes at once.
        drop(answering);
        assert!(matches!(pin.as_mut().poll_write(&mut cx, b"last"), Poll::Ready(Ok(4))));
        assert!(matches!(pin.as_mut().poll_flush(&mut cx), Poll::Ready(Ok(()))));
        assert_eq!(pin.inner.0.last().map(Vec::as_slice), Some(&b"last"[..]));
    }

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
