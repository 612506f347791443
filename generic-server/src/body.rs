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
pub fn hold_until_sent<G: Send + 'static>(resp: http::Response<Body>, guard: G) -> http::Response<Body> {
    let (parts, body) = resp.into_parts();
    let body = body.map_frame(move |f| {
        let _ = &guard;
        f
    });
    http::Response::from_parts(parts, body.boxed_unsync())
}
