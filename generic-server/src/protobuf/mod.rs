//! Protobuf (`application/vnd.kubernetes.protobuf`) for built-in types.
//!
//! The wire form is the 4 bytes `k8s\0` followed by a `runtime.Unknown` message:
//! `{1: typeMeta {1: apiVersion, 2: kind}, 2: raw (the object's own message),
//! 3: contentEncoding, 4: contentType}`. The server works on objects in their
//! JSON form, so this module converts between that envelope and the JSON form,
//! for every built-in message at once, driven by one field table:
//!
//! - `schema.txt` lists every message of the k8s-pb crate (prost code generated
//!   from upstream's generated.proto files) with its fields' tags, proto types,
//!   cardinality and JSON names, and which apiVersion each k8s-pb module serves.
//!   `gen.rs` generates it from the k8s-pb and k8s-openapi sources in the local
//!   Cargo registry; a test fails when it is stale (regenerate with
//!   `REGENERATE_PROTOBUF_SCHEMA=1 cargo test -p generic-server protobuf`).
//!   Checking the table in keeps the build free of a build script and of any
//!   dependency on where Cargo keeps sources.
//! - `convert.rs` walks the table: messages become objects, maps objects,
//!   repeated fields arrays, bytes base64, int64 numbers; the well-known messages
//!   have their JSON forms (Time and MicroTime as RFC 3339 strings, Duration,
//!   Quantity as its string, IntOrString as a number or string, RawExtension and
//!   FieldsV1 as embedded JSON, Verbs and ExtraValue as arrays, the
//!   apiextensions JSONSchemaProps unions).
//! - Decoding follows what Go's JSON encoding of the decoded struct would give:
//!   see `convert::ZERO_MEANS_UNSET` for how zero values of non-pointer Go
//!   fields (always present on the wire) are treated.

// The public functions return the crate's `StatusError` by value, as every
// handler does.

mod convert;
#[cfg(test)]
mod gen;
mod schema;
#[cfg(test)]
mod tests;
pub(crate) mod wire;

use serde_json::{Map, Value};

use crate::status::StatusError;

/// The media type of protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// The media type of a protobuf watch stream (see [`encode_watch_event`]).
pub const WATCH_CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";

/// The 4 bytes every protobuf body starts with.
pub const MAGIC: &[u8] = b"k8s\0";

/// Whether objects of this apiVersion and kind have a protobuf form.
pub fn supports(api_version: &str, kind: &str) -> bool {
    schema::schema().kind(api_version, kind).is_some()
}

/// Decodes a protobuf request body into the object's JSON form, with
/// `apiVersion` and `kind` set from the envelope. Malformed input is a 400.
pub fn decode(body: &[u8]) -> Result<Value, StatusError> {
    decode_as(body, "", "")
}

/// As [`decode`], but an envelope without apiVersion or kind takes the given
/// defaults (upstream fills them in from the type the endpoint expects).
pub fn decode_as(body: &[u8], default_api_version: &str, default_kind: &str) -> Result<Value, StatusError> {
    let s = schema::schema();
    let (api_version, kind, raw) =
        parse_envelope(body).map_err(|e| StatusError::bad_request(format!("unable to decode protobuf body: {e}")))?;
    let api_version = if api_version.is_empty() { default_api_version.to_string() } else { api_version };
    let kind = if kind.is_empty() { default_kind.to_string() } else { kind };
    if kind.is_empty() {
        return Err(StatusError::bad_request("Object 'Kind' is missing in protobuf body"));
    }
    let idx = s.kind(&api_version, &kind).ok_or_else(|| {
        StatusError::bad_request(format!("no kind {kind:?} is registered for version {api_version:?} in protobuf"))
    })?;
    object_from_raw(s, idx, &api_version, &kind, raw, 0)
        .map_err(|e| StatusError::bad_request(format!("unable to decode protobuf body: {e}")))
}

/// Encodes an object's JSON form (with `apiVersion` and `kind`, including
/// `XList` kinds and `Status`) as a protobuf body. An error means this kind has
/// no protobuf form or the object does not fit it; the caller answers in JSON.
pub fn encode(obj: &Value) -> Result<Vec<u8>, StatusError> {
    let s = schema::schema();
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let idx = s.kind(api_version, kind).ok_or_else(|| not_protobuf(api_version, kind))?;
    let raw = convert::encode_message(s, idx, obj, 0)
        .map_err(|e| StatusError::internal(format!("unable to encode {kind} as protobuf: {e}")))?
        .unwrap_or_default();
    Ok(envelope(api_version, kind, &raw))
}

/// A list's protobuf body (`head` is the list without its items: apiVersion,
/// kind, metadata) around its items' own bodies as [`encode`] wrote them: a
/// list's message is its ListMeta then each item's message, so cached items
/// are copied, not encoded again.
pub fn encode_list<'a>(head: &Value, items: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<u8>, StatusError> {
    let s = schema::schema();
    let api_version = head.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let kind = head.get("kind").and_then(Value::as_str).unwrap_or_default();
    let idx = s.kind(api_version, kind).ok_or_else(|| not_protobuf(api_version, kind))?;
    let items_tag = s.messages[idx].fields.iter().find(|f| f.json == "items").map(|f| f.tag);
    let items_tag = items_tag.ok_or_else(|| StatusError::internal(format!("{kind} has no items")))?;
    let mut raw = convert::encode_message(s, idx, head, 0)
        .map_err(|e| StatusError::internal(format!("unable to encode {kind} as protobuf: {e}")))?
        .unwrap_or_default();
    for item in items {
        let (_, _, item) = parse_envelope(item).map_err(StatusError::internal)?;
        wire::put_len(&mut raw, items_tag, item);
    }
    Ok(envelope(api_version, kind, &raw))
}

fn not_protobuf(api_version: &str, kind: &str) -> StatusError {
    StatusError::new(
        406,
        crate::status::Reason::NotAcceptable,
        format!("object {api_version}/{kind} does not implement the protobuf marshalling interface"),
    )
}

/// One frame of a protobuf watch stream: a 4-byte big-endian length, then a
/// `meta/v1 WatchEvent {1: type, 2: object (RawExtension {1: raw})}` without an
/// envelope, whose raw bytes are the object's full protobuf body (`k8s\0` and
/// envelope included), as client-go's watch decoder expects.
pub fn encode_watch_event(event_type: &str, obj: &Value) -> Result<Vec<u8>, StatusError> {
    watch_frame(event_type, &encode(obj)?)
}

/// [`encode_watch_event`] of an object already encoded (`inner`, as
/// [`encode`] writes it): a cached encoding shared by many watchers.
pub fn watch_frame(event_type: &str, inner: &[u8]) -> Result<Vec<u8>, StatusError> {
    let mut raw_ext = vec![];
    wire::put_len(&mut raw_ext, 1, inner);
    let mut event = vec![];
    wire::put_len(&mut event, 1, event_type.as_bytes());
    wire::put_len(&mut event, 2, &raw_ext);
    let len = u32::try_from(event.len()).map_err(|_| StatusError::internal("watch event too large"))?;
    let mut frame = Vec::with_capacity(4 + event.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&event);
    Ok(frame)
}

fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut type_meta = vec![];
    wire::put_len(&mut type_meta, 1, api_version.as_bytes());
    wire::put_len(&mut type_meta, 2, kind.as_bytes());
    let mut out = Vec::with_capacity(raw.len() + type_meta.len() + 24);
    out.extend_from_slice(MAGIC);
    wire::put_len(&mut out, 1, &type_meta);
    wire::put_len(&mut out, 2, raw);
    // contentEncoding and contentType: empty, written as Go writes them.
    wire::put_len(&mut out, 3, &[]);
    wire::put_len(&mut out, 4, &[]);
    out
}

/// Splits a `k8s\0` body into apiVersion, kind and the object's bytes.
fn parse_envelope(body: &[u8]) -> Result<(String, String, &[u8]), String> {
    if body.is_empty() {
        return Err("empty data".into());
    }
    let Some(data) = body.strip_prefix(MAGIC) else {
        return Err("provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]".into());
    };
    if data.is_empty() {
        return Err("empty body".into());
    }
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    let mut content_encoding = String::new();
    let mut r = wire::Reader::new(data);
    let text =
        |b: &[u8]| std::str::from_utf8(b).map(str::to_string).map_err(|_| "invalid UTF-8 in envelope".to_string());
    while !r.is_empty() {
        match r.field()? {
            (1, wire::WireValue::Len(tm)) => {
                let mut tr = wire::Reader::new(tm);
                while !tr.is_empty() {
                    match tr.field()? {
                        (1, wire::WireValue::Len(b)) => api_version = text(b)?,
                        (2, wire::WireValue::Len(b)) => kind = text(b)?,
                        (1 | 2, _) => return Err("invalid typeMeta".into()),
                        _ => {}
                    }
                }
            }
            (2, wire::WireValue::Len(b)) => raw = b,
            (3, wire::WireValue::Len(b)) => content_encoding = text(b)?,
            (4, wire::WireValue::Len(_)) => {}
            (1..=4, _) => return Err("invalid envelope field".into()),
            _ => {}
        }
    }
    if !content_encoding.is_empty() {
        return Err(format!("unsupported content encoding {content_encoding:?}"));
    }
    Ok((api_version, kind, raw))
}

fn object_from_raw(
    s: &schema::Schema,
    idx: usize,
    api_version: &str,
    kind: &str,
    raw: &[u8],
    depth: u32,
) -> Result<Value, String> {
    let body = convert::decode_message(s, idx, raw, depth)?;
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::String(api_version.to_string()));
    out.insert("kind".into(), Value::String(kind.to_string()));
    match body {
        Some(Value::Object(m)) => out.extend(m.into_iter().filter(|(k, _)| k != "apiVersion" && k != "kind")),
        Some(_) => return Err(format!("{kind} is not an object")),
        None => {}
    }
    Ok(Value::Object(out))
}

/// A nested `k8s\0` body (inside a RawExtension).
fn decode_envelope(s: &schema::Schema, body: &[u8], depth: u32) -> Result<Value, String> {
    let (api_version, kind, raw) = parse_envelope(body)?;
    let idx = s.kind(&api_version, &kind).ok_or_else(|| format!("unknown kind {api_version}/{kind}"))?;
    object_from_raw(s, idx, &api_version, &kind, raw, depth)
}
