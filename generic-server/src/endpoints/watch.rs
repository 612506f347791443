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
use crate::registry::store::{ListOptions, WatchStart};
use crate::registry::Store;
use crate::request_info::RequestInfo;
use crate::status::StatusError;
use crate::wire;

/// Upstream's --min-request-timeout: a watch with no timeoutSeconds ends after
/// a while so that clients rebalance; they resume from their last version.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

pub async fn serve(
    store: &Arc<Store>,
    req: &Request,
    info: &RequestInfo,
    params: &Params,
) -> Result<Response, StatusError> {
    let mut opts: ListOptions = params.selector_options()?;
    match params.get("resourceVersionMatch") {
        None | Some("NotOlderThan") => {}
        Some(m) => {
            return Err(StatusError::bad_request(format!("resourceVersionMatch {m:?} is not supported for watch")))
        }
    }
    if !info.name.is_empty() {
        opts.field_selector.0.push(("metadata.name".into(), true, info.name.clone()));
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
    let include_object = params.get("includeObject").unwrap_or("Metadata").to_string();
    let ns = if store.info.namespaced { info.namespace.as_str() } else { "" };
    let mut events = store.watch(ns, &opts, start).await?;

    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, BoxError>>(64);
    let sent = crate::metrics::global().watch_events(&store.info.group, &store.info.version, &store.info.kind);
    let store = store.clone();
    let form = output.clone();
    tokio::spawn(async move {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
        let mut first_row = true;
        loop {
            let event = tokio::select! {
                e = events.next() => match e {
                    Some(e) => e,
                    None => break,
                },
                _ = ticker.tick(), if bookmarks => match store.current_bookmark().await {
                    Ok(b) => b,
                    Err(_) => continue,
                },
                _ = &mut deadline => break,
                _ = tx.closed() => break,
            };
            if event.event_type == "BOOKMARK" && !bookmarks {
                continue;
            }
            // Objects and their JSON and protobuf encodings are shared by
            // every watcher of the Store; only a Table or a
            // PartialObjectMetadata is made per watcher.
            let control = matches!(event.event_type, "ERROR" | "BOOKMARK");
            let frame = match &form {
                Output::Table(v) if !control => {
                    let t = table(
                        &store,
                        v,
                        std::slice::from_ref(&*event.object),
                        Default::default(),
                        &include_object,
                        first_row,
                    );
                    first_row = false;
                    json_frame(event.event_type, &wire::json(&t))
                }
                Output::PartialObjectMetadata(v) if !control => {
                    json_frame(event.event_type, &wire::json(&super::output::partial(v, &event.object)))
                }
                Output::Protobuf => {
                    let framed = match event.object.protobuf() {
                        Ok(pb) => crate::protobuf::watch_frame(event.event_type, pb),
                        Err(e) => Err(e.clone()),
                    };
                    match framed {
                        Ok(f) => Bytes::from(f),
                        // An event without a protobuf form ends the watch with an
                        // ERROR event saying so, as upstream's encoder failing does;
                        // the client lists again (in a form it can read).
                        Err(e) => {
                            let status = StatusError::internal(e.message).to_status();
                            if let Ok(f) = crate::protobuf::encode_watch_event("ERROR", &status) {
                                let _ = tx.send(Ok(Bytes::from(f))).await;
                            }
                            break;
                        }
                    }
                }
                _ => json_frame(event.event_type, event.object.json()),
            };
            if tx.send(Ok(frame)).await.is_err() {
                break;
            }
            sent.inc();
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let content_type = match &output {
        Output::Table(v) => format!("application/json;as=Table;v={v};g=meta.k8s.io"),
        Output::Protobuf => "application/vnd.kubernetes.protobuf;stream=watch".to_string(),
        _ => "application/json".to_string(),
    };
    http::Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CACHE_CONTROL, "no-cache, private")
        .body(body::stream(stream))
        .map_err(StatusError::internal)
}

/// One JSON watch event, `{"type":...,"object":...}` and a newline, around
/// an object's encoding (which ends in a newline) without re-encoding it:
/// the bytes Go's encoder writes for the event.
fn json_frame(event_type: &str, object: &[u8]) -> Bytes {
    let object = object.strip_suffix(b"\n").unwrap_or(object);
    let mut frame = Vec::with_capacity(object.len() + event_type.len() + 24);
    frame.extend_from_slice(b"{\"type\":\"");
    frame.extend_from_slice(event_type.as_bytes());
    frame.extend_from_slice(b"\",\"object\":");
    frame.extend_from_slice(object);
    frame.extend_from_slice(b"}\n");
    Bytes::from(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_frames_are_what_encoding_the_event_writes() {
        let obj = json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "a&b"}});
        let framed = json_frame("MODIFIED", &wire::json(&obj));
        assert_eq!(framed.as_ref(), wire::json(&json!({"type": "MODIFIED", "object": obj})).as_slice());
    }
}
