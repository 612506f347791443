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
