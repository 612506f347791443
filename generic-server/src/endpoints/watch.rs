//! The watch endpoint: a long-running response streaming one JSON event a line
//! over chunked HTTP/1.1 or an HTTP/2 stream, until timeoutSeconds or the client
//! goes away.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use super::output::{negotiate_objects, table};
use super::Params;
use crate::body::{self, BoxError};
use crate::handler::{Request, Response};
use crate::negotiation::Output;
use crate::registry::store::{ListOptions, ObjectEventStream, WatchStart};
use crate::registry::{CachedObject, Store, WatchEventType};
use crate::request_info::RequestInfo;
use crate::status::StatusError;

/// Upstream's --min-request-timeout: a watch with no timeoutSeconds ends after
/// a while so that clients rebalance; they resume from their last version.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

pub async fn serve(
    store: &Arc<Store>,
    req: &Request,
    info: &RequestInfo,
    params: &Params<'_>,
) -> Result<Response, StatusError> {
    let mut opts: ListOptions = params.selector_options()?;
    match params.get("resourceVersionMatch") {
        None | Some("NotOlderThan") => {}
        Some(m) => {
            return Err(StatusError::bad_request(format!("resourceVersionMatch {m:?} is not supported for watch")))
        }
    }
    if !info.name.is_empty() {
        opts.field_selector.0.push(("metadata.name".into(), true, info.name.to_string()));
    }
    let send_initial = match params.get("sendInitialEvents") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => return Err(StatusError::bad_request(format!("invalid sendInitialEvents value: {other:?}"))),
    };
    let start = WatchStart::parse(params.get("resourceVersion"), send_initial)?;
    let timeout = match params.get("timeoutSeconds") {
        Some(t) => Duration::from_secs(
            t.parse::<u64>().map_err(|_| StatusError::bad_request(format!("invalid timeoutSeconds {t:?}")))?,
        ),
        None => DEFAULT_TIMEOUT,
    };
    let bookmarks = params.get("allowWatchBookmarks") == Some("true");
    let output = match negotiate_objects(req, store)? {
        // Protobuf streams only for a kind with a protobuf form, decided before
        // the first event; otherwise JSON, as for a client that offered both.
        Output::Protobuf if !crate::protobuf::supports(&store.info.api_version(), &store.info.kind) => Output::Json,
        o => o,
    };
    let ns = if store.info.namespaced { info.namespace.as_str() } else { "" };
    let events = store.watch(ns, &opts, start).await?;

    // The response body pulls events itself rather than a task of its own
    // pushing them through a channel: one task wakes per watcher and change,
    // not two, and that is what a write queues behind during a large
    // fan-out. Hyper drops the body when the client goes away, and the
    // watch with it.
    let watching = Watching {
        events,
        deadline: Box::pin(tokio::time::sleep(timeout)),
        bookmarks: bookmarks
            .then(|| tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY)),
        sent: crate::metrics::global().watch_events(&store.info.group, &store.info.version, &store.info.kind),
        store: store.clone(),
        form: output.clone(),
        include_object: params.get("includeObject").unwrap_or("Metadata").to_string(),
        first_row: true,
        ended: false,
    };
    let stream = futures::stream::unfold(watching, |mut w| async move {
        let frame = w.next_frame().await?;
        Some((Ok::<_, BoxError>(frame), w))
    });
    let content_type = match &output {
        Output::Table(v) => format!("application/json;as=Table;v={v};g=meta.k8s.io"),
        Output::Protobuf => "application/vnd.kubernetes.protobuf;stream=watch".to_string(),
        _ => "application/json".to_string(),
    };
    http::Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(body::stream(stream))
        .map_err(StatusError::internal)
}

/// One watch's state between the frames it sends.
struct Watching {
    events: ObjectEventStream,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// Ticks when a BOOKMARK is due, for a client that allows them.
    bookmarks: Option<tokio::time::Interval>,
    sent: prometheus::IntCounter,
    store: Arc<Store>,
    form: Output,
    include_object: String,
    first_row: bool,
    /// An ERROR event was the last frame.
    ended: bool,
}

impl Watching {
    /// The next frame to send; None when the watch is over (its events
    /// ended, its timeout passed, or an ERROR event was sent).
    async fn next_frame(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        loop {
            let event = tokio::select! {
                e = self.events.next() => e?,
                _ = Self::tick(&mut self.bookmarks) => match self.store.current_bookmark().await {
                    Ok(b) => b,
                    Err(_) => continue,
                },
                _ = &mut self.deadline => return None,
            };
            if event.event_type == WatchEventType::Bookmark && self.bookmarks.is_none() {
                continue;
            }
            // Objects and their JSON and protobuf encodings are shared by
            // every watcher of the Store; only a Table or a
            // PartialObjectMetadata is made per watcher.
            let control = event.event_type.is_control();
            let framed = match &self.form {
                Output::Table(v) if !control => {
                    let value = event.object.value();
                    let rows = std::iter::once(&*value);
                    let t = table(&self.store, v, rows, Default::default(), &self.include_object, self.first_row);
                    self.first_row = false;
                    CachedObject::new(t, false).watch_frame(event.event_type, false)
                }
                Output::PartialObjectMetadata(v) if !control => {
                    let partial = super::output::partial(v, &event.object.value());
                    CachedObject::new(partial, false).watch_frame(event.event_type, false)
                }
                _ => event.frame(self.form == Output::Protobuf),
            };
            return match framed {
                Ok(f) => {
                    self.sent.inc();
                    Some(f)
                }
                // An event without a protobuf form ends the watch with an
                // ERROR event saying so, as upstream's encoder failing does;
                // the client lists again (in a form it can read).
                Err(e) => {
                    self.ended = true;
                    let status = StatusError::internal(e.message).to_status();
                    crate::protobuf::encode_watch_event(WatchEventType::Error.as_str(), &status).ok().map(Bytes::from)
                }
            };
        }
    }

    async fn tick(ticker: &mut Option<tokio::time::Interval>) {
        match ticker {
            Some(t) => {
                t.tick().await;
            }
            None => std::future::pending().await,
        }
    }
}
