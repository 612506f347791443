//! The response body type shared by all handlers: either a buffered payload or a
//! stream (watch, proxied responses).

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `data` in full.
pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).map_err(|never| match never {}).boxed_unsync()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

/// A body fed by a stream of chunks; each chunk is flushed as it comes.
pub fn stream<S>(s: S) -> Body
where
    S: futures::Stream<Item = Result<Bytes, BoxError>> + Send + 'static,
{
    use futures::StreamExt;
    StreamBody::new(s.map(|r| r.map(http_body::Frame::data))).boxed_unsync()
}

/// `resp` with `guard` kept alive until its body has been sent in full or
/// dropped: what must last exactly as long as an answer's stream (a
/// connection's in-flight count, a watch's metrics, its audit event).
pub fn hold_until_sent<G: Send + Unpin + 'static>(resp: http::Response<Body>, guard: G) -> http::Response<Body> {
    let (parts, body) = resp.into_parts();
    http::Response::from_parts(parts, Held { body, _guard: guard }.boxed_unsync())
}

/// A body and what it keeps alive. Its size is its body's, so that hyper
/// still sends a full answer's Content-Length, as Go does for a short one.
struct Held<G> {
    body: Body,
    _guard: G,
}

impl<G: Unpin> http_body::Body for Held<G> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_body_keeps_its_size_and_its_guard_until_dropped() {
        let guard = std::sync::Arc::new(());
        let resp = hold_until_sent(http::Response::new(full("four")), guard.clone());
        assert_eq!(http_body::Body::size_hint(resp.body()).exact(), Some(4));
        assert_eq!(std::sync::Arc::strong_count(&guard), 2);
        let bytes = resp.into_body().collect().await.map(|c| c.to_bytes()).ok();
        assert_eq!(bytes.as_deref(), Some(&b"four"[..]));
        assert_eq!(std::sync::Arc::strong_count(&guard), 1, "dropped with the body");
    }
}
