//! An object as the read path hands it out (upstream's cachingObject): one
//! stored version, in one Store's served version with its resourceVersion
//! stamped, behind an `Arc` that every reader and watcher of that version
//! shares.
//!
//! What it keeps is its JSON, and nothing else unless asked: a watch cache
//! of a hundred thousand objects must stay within twice their stored bytes,
//! and a decoded tree costs several times its JSON. When the stored bytes
//! already are the object's JSON but for the resourceVersion (the Store
//! writes its objects in the wire form), the JSON is those same bytes with
//! the stamp spliced in, so the cache's copy is the only one. GETs, lists
//! and watch events are written from it. A decoded value is made for whoever
//! asks (a Table, an informer) and not kept; the one the Store decoded the
//! object from goes to the reader that caused it. The label and field sets
//! a selector reads and the protobuf encoding are computed on first use and
//! kept.
//!
//! A write watched by a thousand clients is decoded, converted and encoded
//! once; its watch frames are shared through [`EventFrames`], which live
//! with the change in the watch cache's window rather than with the object.
//!
//! The Store keeps one of these in the watch cache's slot of each stored
//! version ([`crate::storage::cacher::CachedValue::slot_get_or_try_init`]); values read from
//! storage that the cache does not hold get a fresh one, used once.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use once_cell::race::OnceBox;
use serde_json::{Map, Value};

use crate::status::StatusError;
use crate::wire;

pub struct CachedObject {
    json: Json,
    /// Custom resources are written with sorted keys, built-ins in their Go
    /// struct's order ([`wire::object`]).
    unstructured: bool,
    /// Where the JSON goes on after kind and apiVersion (its comma), for a
    /// typed object that starts with them: a list's items leave them out.
    after_type: Option<std::num::NonZeroU32>,
    /// What only some readers ask for, allocated when one first does.
    /// A pointer's width when empty (a `OnceLock` would take two).
    derived: OnceBox<Derived>,
}

#[derive(Default)]
struct Derived {
    labels: OnceLock<Map<String, Value>>,
    fields: OnceLock<Vec<(&'static str, String)>>,
    protobuf: OnceLock<Result<Bytes, StatusError>>,
    /// The decoded object, kept for the server's own readers of a few small
    /// resources ([`CachedObject::shared_value`]).
    value: OnceLock<Arc<Value>>,
}

/// The object's JSON, without its trailing newline.
enum Json {
    Encoded(Bytes),
    /// The stored bytes with the resourceVersion member inserted at `site`,
    /// kept as the number and written out when used: every cached object
    /// has one.
    Stamped {
        stored: Bytes,
        site: StampSite,
        revision: u64,
    },
}

/// The longest stamp: the member, a comma and a u64's 20 digits.
const STAMP_MAX: usize = 42;

impl StampSite {
    /// The member as it goes in at this site.
    fn write(self, revision: u64, buf: &mut [u8; STAMP_MAX]) -> &[u8] {
        const MEMBER: &[u8] = b"\"resourceVersion\":\"";
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(revision).as_bytes();
        let (open, close): (&[u8], &[u8]) = if self.leading_comma { (b",", b"\"") } else { (b"", b"\",") };
        let mut len = 0;
        // The buffer holds the longest stamp; every GET writes one, and
        // `write!` would cost more than the copy of the object it goes in.
        for part in [open, MEMBER, digits, close] {
            buf[len..len + part.len()].copy_from_slice(part);
            len += part.len();
        }
        &buf[..len]
    }

    /// The revision `run` stamps inserted at `at`, if it is exactly one
    /// member as [`Self::write`] writes it.
    fn parse(at: u32, run: &[u8]) -> Option<(StampSite, u64)> {
        let (leading_comma, member) = match run.strip_prefix(b",") {
            Some(m) => (true, m),
            None => (false, run.strip_suffix(b",")?),
        };
        let digits = member.strip_prefix(b"\"resourceVersion\":\"")?.strip_suffix(b"\"")?;
        let revision = std::str::from_utf8(digits).ok()?.parse().ok()?;
        let site = StampSite { at, leading_comma };
        (site.write(revision, &mut [0; STAMP_MAX]) == run).then_some((site, revision))
    }
}

impl Json {
    /// The JSON in three runs; `buf` holds the stamp written out.
    fn parts<'a>(&'a self, buf: &'a mut [u8; STAMP_MAX]) -> [&'a [u8]; 3] {
        match self {
            Json::Encoded(b) => [b, &[], &[]],
            Json::Stamped { stored, site, revision } => {
                let at = site.at as usize;
                [&stored[..at], site.write(*revision, buf), &stored[at..]]
            }
        }
    }

    fn len(&self) -> usize {
        self.parts(&mut [0; STAMP_MAX]).iter().map(|p| p.len()).sum()
    }

    /// Appends the JSON from byte `from` on.
    fn write_from(&self, out: &mut Vec<u8>, mut from: usize) {
        for part in self.parts(&mut [0; STAMP_MAX]) {
            let skip = from.min(part.len());
            out.extend_from_slice(&part[skip..]);
            from -= skip;
        }
    }
}

/// Where an object's resourceVersion member goes in its stored encoding.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StampSite {
    at: u32,
    /// The member follows another (`,"resourceVersion":".."`) rather than
    /// opening the metadata (`"resourceVersion":"..",`).
    leading_comma: bool,
}

/// A resourceVersion no client sends: where it lands in an encoding is
/// where the real one goes.
fn placeholder() -> &'static str {
    static PLACEHOLDER: OnceLock<String> = OnceLock::new();
    PLACEHOLDER.get_or_init(|| format!("placeholder-{}", uuid::Uuid::new_v4().simple()))
}

/// `object` (of a version that is stored as served) in the wire form,
/// without its resourceVersion, and where that goes: the Store writes these
/// bytes and answers from them with [`CachedObject::written`]. The object is
/// encoded once with a placeholder version that is then cut out.
pub fn encode_for_storage(object: &Value, unstructured: bool) -> (Vec<u8>, Option<StampSite>) {
    static MEMBER: OnceLock<memchr::memmem::Finder<'static>> = OnceLock::new();
    let member = MEMBER.get_or_init(|| {
        let text = format!("\"resourceVersion\":\"{}\"", placeholder());
        memchr::memmem::Finder::new(text.as_bytes()).into_owned()
    });
    let len = member.needle().len();
    let mut bytes = wire::object_json(object, unstructured, Some(placeholder()));
    bytes.pop();
    let found = member.find(&bytes);
    let cut = found.and_then(|i| match (i.checked_sub(1).map(|b| bytes[b]), bytes.get(i + len)) {
        (Some(b','), _) => Some((i - 1, i + len, true)),
        (Some(b'{'), Some(b',')) => Some((i, i + len + 1, false)),
        _ => None,
    });
    match cut.and_then(|(from, to, lead)| Some((from, to, u32::try_from(from).ok()?, lead))) {
        Some((from, to, at, leading_comma)) => {
            bytes.drain(from..to);
            (bytes, Some(StampSite { at, leading_comma }))
        }
        // The member alone in its metadata: the encoding without it.
        None => {
            let mut object = object.clone();
            crate::meta::remove_meta(&mut object, "resourceVersion");
            let mut bytes = wire::json(&wire::object(object, unstructured));
            bytes.pop();
            (bytes, None)
        }
    }
}

/// Where `json` is `stored` with a resourceVersion member inserted, and
/// the revision.
fn splice(stored: &[u8], json: &[u8]) -> Option<(StampSite, u64)> {
    let extra = json.len().checked_sub(stored.len())?;
    let mut at = stored.iter().zip(json).take_while(|(a, b)| a == b).count();
    if json[at + extra..] != stored[at..] {
        return None;
    }
    // The longest common prefix may have taken the member's first bytes
    // (the quote after a comma): the same insertion, earlier.
    loop {
        if let Some(found) = StampSite::parse(u32::try_from(at).ok()?, &json[at..at + extra]) {
            return Some(found);
        }
        if at == 0 || extra == 0 || json[at - 1] != json[at + extra - 1] {
            return None;
        }
        at -= 1;
    }
}

/// The `type` of a watch event, upstream's watch.EventType.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEventType {
    Added,
    Modified,
    Deleted,
    Bookmark,
    Error,
}

impl WatchEventType {
    pub fn as_str(self) -> &'static str {
        match self {
            WatchEventType::Added => "ADDED",
            WatchEventType::Modified => "MODIFIED",
            WatchEventType::Deleted => "DELETED",
            WatchEventType::Bookmark => "BOOKMARK",
            WatchEventType::Error => "ERROR",
        }
    }

    /// Whether the event says something about the stream rather than an
    /// object: its object is made for one watcher.
    pub fn is_control(self) -> bool {
        matches!(self, WatchEventType::Bookmark | WatchEventType::Error)
    }
}

impl CachedObject {
    /// An object made for its reader (a Table, a bookmark, a Status).
    pub fn new(object: Value, unstructured: bool) -> Arc<Self> {
        Self::encoded(object, unstructured, None).0
    }

    /// A stored value decoded into `object` (its resourceVersion stamped),
    /// with the decoded value back for the caller's use: the object does
    /// not keep it.
    pub fn from_stored(object: Value, unstructured: bool, stored: &Bytes) -> (Arc<Self>, Arc<Value>) {
        Self::encoded(object, unstructured, Some(stored))
    }

    /// An object just written as `stored` (from [`encode_for_storage`]) at
    /// `revision`: its JSON is the stored bytes with the resourceVersion put
    /// where the encoding left it out, so nothing is encoded again.
    pub fn written(object: &Value, unstructured: bool, stored: &Bytes, site: StampSite, revision: u64) -> Arc<Self> {
        let json = Json::Stamped { stored: stored.clone(), site, revision };
        let after_type = (!unstructured).then(|| type_end(object, &json)).flatten();
        Arc::new(CachedObject { json, unstructured, after_type, derived: OnceBox::new() })
    }

    fn encoded(object: Value, unstructured: bool, stored: Option<&Bytes>) -> (Arc<Self>, Arc<Value>) {
        let mut encoded = wire::object_json(&object, unstructured, None);
        encoded.pop();
        let json = match stored.and_then(|s| Some((s, splice(s, &encoded)?))) {
            Some((stored, (site, revision))) => Json::Stamped { stored: stored.clone(), site, revision },
            None => Json::Encoded(Bytes::from(encoded)),
        };
        let after_type = (!unstructured).then(|| type_end(&object, &json)).flatten();
        let value = Arc::new(object);
        let cached = Arc::new(CachedObject { json, unstructured, after_type, derived: OnceBox::new() });
        (cached, value)
    }

    /// The object itself, decoded from its JSON.
    pub fn value(&self) -> Arc<Value> {
        let mut json = Vec::with_capacity(self.json.len());
        self.json.write_from(&mut json, 0);
        // The server's own encoding of a JSON value always parses.
        Arc::new(serde_json::from_slice(&json).unwrap_or(Value::Null))
    }

    /// The object decoded once and kept with it, for what the server itself
    /// reads on every request of some kind (the namespace every namespaced
    /// create is admitted against): `decoded` when the caller has it at hand.
    /// Only for resources with few objects, as the decoded tree costs
    /// several times its JSON.
    pub fn shared_value(&self, decoded: Option<Arc<Value>>) -> Arc<Value> {
        self.derived().value.get_or_init(|| decoded.unwrap_or_else(|| self.value())).clone()
    }

    /// The object, for a caller that must own it.
    pub fn into_value(self: Arc<Self>) -> Value {
        Arc::unwrap_or_clone(self.value())
    }

    fn derived(&self) -> &Derived {
        // Racing readers may each make one; the first stays.
        self.derived.get_or_init(Box::default)
    }

    /// The labels a label selector reads, from `decoded` (the object's
    /// value, when the caller has it at hand) or the JSON, once.
    pub fn labels(&self, decoded: Option<&Value>) -> &Map<String, Value> {
        self.derived().labels.get_or_init(|| match decoded {
            Some(v) => crate::meta::labels(v),
            None => crate::meta::labels(&self.value()),
        })
    }

    /// The field set a field selector reads; `of` computes it (the Store's
    /// strategy knows its fields) from `decoded` or the JSON, once.
    pub fn fields(
        &self,
        decoded: Option<&Value>,
        of: impl FnOnce(&Value) -> Vec<(&'static str, String)>,
    ) -> &[(&'static str, String)] {
        self.derived().fields.get_or_init(|| match decoded {
            Some(v) => of(v),
            None => of(&self.value()),
        })
    }

    /// The object as a JSON body, as upstream writes it, newline included.
    pub fn json(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.json.len() + 1);
        self.json.write_from(&mut out, 0);
        out.push(b'\n');
        Bytes::from(out)
    }

    /// The length of [`Self::json`] without its newline.
    pub fn json_len(&self) -> usize {
        self.json.len()
    }

    /// Appends the object as an item of its list's JSON: a built-in's items
    /// leave out kind and apiVersion (only the list says what they are), a
    /// custom resource's keep them. Both are cut from the object's JSON, so
    /// a list keeps no second encoding of its items.
    pub fn write_item(&self, out: &mut Vec<u8>) {
        if self.unstructured {
            return self.json.write_from(out, 0);
        }
        match self.after_type {
            Some(comma) => {
                out.push(b'{');
                self.json.write_from(out, comma.get() as usize + 1);
            }
            // No kind or apiVersion to leave out: the object as it is.
            None => {
                let mut item = wire::typed(Value::clone(&self.value()));
                if let Some(m) = item.as_object_mut() {
                    m.shift_remove("kind");
                    m.shift_remove("apiVersion");
                }
                let bytes = wire::json(&item);
                out.extend_from_slice(&bytes[..bytes.len() - 1]);
            }
        }
    }

    /// The object as a protobuf body (`k8s\0` envelope included); an error
    /// when its kind has no protobuf form.
    pub fn protobuf(&self) -> Result<&Bytes, &StatusError> {
        self.derived().protobuf.get_or_init(|| crate::protobuf::encode(&self.value()).map(Bytes::from)).as_ref()
    }

    /// This object as one event of a watch stream: JSON (`{"type":...,
    /// "object":...}` and a newline) or a protobuf frame; an error when it
    /// has no protobuf form.
    pub fn watch_frame(&self, event_type: WatchEventType, protobuf: bool) -> Result<Bytes, StatusError> {
        let event_type = event_type.as_str();
        if protobuf {
            let pb = self.protobuf().map_err(Clone::clone)?;
            return crate::protobuf::watch_frame(event_type, pb).map(Bytes::from);
        }
        let mut frame = Vec::with_capacity(self.json.len() + event_type.len() + 24);
        frame.extend_from_slice(b"{\"type\":\"");
        frame.extend_from_slice(event_type.as_bytes());
        frame.extend_from_slice(b"\",\"object\":");
        self.json.write_from(&mut frame, 0);
        frame.extend_from_slice(b"}\n");
        Ok(Bytes::from(frame))
    }
}

/// Where a typed object's JSON goes on after `{"kind":..,"apiVersion":..`
/// (the offset of the comma), if it starts so.
fn type_end(object: &Value, json: &Json) -> Option<std::num::NonZeroU32> {
    let type_meta = serde_json::json!({"kind": object.get("kind")?, "apiVersion": object.get("apiVersion")?});
    // `{"kind":..,"apiVersion":..}` and a newline; the object goes on with a comma.
    let type_meta = wire::json(&type_meta);
    let lead = &type_meta[..type_meta.len() - 2];
    let mut start = Vec::with_capacity(lead.len() + 1);
    for part in json.parts(&mut [0; STAMP_MAX]) {
        let want = lead.len() + 1 - start.len();
        start.extend_from_slice(&part[..want.min(part.len())]);
    }
    let typed = start.len() == lead.len() + 1 && start.starts_with(lead) && start[lead.len()] == b',';
    typed.then(|| u32::try_from(lead.len()).ok().and_then(std::num::NonZeroU32::new)).flatten()
}

/// The watch frames of one change in one Store's version, shared by every
/// watcher of the Store it is sent to. They are kept in the change's slot
/// in the watch cache ([`crate::storage::cacher::CachedEvent::slot`]), so
/// they go when the change leaves the window, while the object stays. A
/// change is sent as ADDED, MODIFIED or DELETED, in JSON or protobuf.
#[derive(Default)]
pub struct EventFrames([OnceLock<Result<Bytes, StatusError>>; 6]);

impl EventFrames {
    /// `object`'s frame as `event_type`, made by the first watcher that asks.
    pub fn frame(
        &self,
        object: &CachedObject,
        event_type: WatchEventType,
        protobuf: bool,
    ) -> Result<Bytes, StatusError> {
        let slot = match event_type {
            WatchEventType::Added => 0,
            WatchEventType::Modified => 1,
            WatchEventType::Deleted => 2,
            // Made for one watcher: nothing to share.
            WatchEventType::Bookmark | WatchEventType::Error => return object.watch_frame(event_type, protobuf),
        };
        self.0[slot + if protobuf { 3 } else { 0 }].get_or_init(|| object.watch_frame(event_type, protobuf)).clone()
    }
}

impl std::fmt::Debug for CachedObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.value().fmt(f)
    }
}

impl PartialEq for CachedObject {
    fn eq(&self, other: &Self) -> bool {
        self.json.parts(&mut [0; STAMP_MAX]).concat() == other.json.parts(&mut [0; STAMP_MAX]).concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodings_match_the_value_path() {
        let cm = json!({"data": {"a": "<b>"}, "metadata": {"resourceVersion": "5", "name": "x"}, "apiVersion": "v1", "kind": "ConfigMap"});
        let c = CachedObject::new(cm.clone(), false);
        assert_eq!(c.json().as_ref(), wire::json(&wire::typed(cm.clone())).as_slice());
        assert_eq!(c.json_len() + 1, c.json().len());
        let mut item = Vec::new();
        c.write_item(&mut item);
        let item = String::from_utf8(item).unwrap();
        assert_eq!(item, r#"{"metadata":{"name":"x","resourceVersion":"5"},"data":{"a":"\u003cb\u003e"}}"#);
        assert_eq!(c.protobuf().unwrap().as_ref(), crate::protobuf::encode(&cm).unwrap().as_slice());
        assert_eq!(*c.value(), cm, "decoded again from its JSON when nothing holds it");
        let frame = c.watch_frame(WatchEventType::Modified, false).unwrap();
        assert_eq!(frame.as_ref(), wire::json(&json!({"type": "MODIFIED", "object": wire::typed(cm.clone())})));
        let pb = c.watch_frame(WatchEventType::Deleted, true).unwrap();
        assert_eq!(pb.as_ref(), crate::protobuf::encode_watch_event("DELETED", &cm).unwrap().as_slice());
        let frames = EventFrames::default();
        let shared = frames.frame(&c, WatchEventType::Modified, false).unwrap();
        assert_eq!(shared, frame);
        assert_eq!(
            shared.as_ptr(),
            frames.frame(&c, WatchEventType::Modified, false).unwrap().as_ptr(),
            "one frame for every watcher"
        );

        let cr = json!({"spec": {"b": 1, "a": 2}, "kind": "W", "apiVersion": "x.io/v1", "metadata": {"name": "w"}});
        let c = CachedObject::new(cr.clone(), true);
        assert_eq!(c.json().as_ref(), wire::json(&wire::sorted(cr)).as_slice());
        let mut item = Vec::new();
        c.write_item(&mut item);
        assert_eq!(item, c.json().strip_suffix(b"\n").unwrap());
        // Without its type (never the case in storage), a typed item is written whole.
        let bare = CachedObject::new(json!({"metadata": {"name": "n"}}), false);
        let mut item = Vec::new();
        bare.write_item(&mut item);
        assert_eq!(item, br#"{"metadata":{"name":"n"}}"#);
        assert!(c.protobuf().is_err(), "a custom resource has no protobuf form");
    }

    /// A stamp is kept as its number only when writing it out gives back
    /// exactly the run it was read from.
    #[test]
    fn stamps_round_trip() {
        let site = |leading_comma| StampSite { at: 3, leading_comma };
        for (run, stamp) in [
            (&br#","resourceVersion":"42""#[..], Some((site(true), 42))),
            (br#""resourceVersion":"18446744073709551615","#, Some((site(false), u64::MAX))),
            (br#","resourceVersion":"042""#, None),
            (br#","resourceVersion":"4","#, None),
            (br#""resourceVersion":"x","#, None),
            (br#","generation":4"#, None),
        ] {
            assert_eq!(StampSite::parse(3, run), stamp, "{}", String::from_utf8_lossy(run));
            if let Some((s, revision)) = stamp {
                assert_eq!(s.write(revision, &mut [0; STAMP_MAX]), run);
            }
        }
    }

    /// A write's answer is the bytes it stored with the version put in, the
    /// same as the object encoded with that version, whichever member the
    /// version follows or leads.
    #[test]
    fn written_objects_are_their_stored_bytes_stamped() {
        let typed = json!({"kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"name": "x", "namespace": "ns", "uid": "u", "resourceVersion": "7"}, "data": {"a": "<b>"}});
        let custom = json!({"kind": "W", "apiVersion": "x.io/v1", "spec": {"b": 1, "a": 2},
            "metadata": {"name": "x", "annotations": {"resourceVersion": "not this"}, "uid": "u"}});
        let leading = json!({"kind": "W", "apiVersion": "x.io/v1", "metadata": {"uid": "u", "selfLink": "s"}});
        for (object, unstructured) in [(&typed, false), (&custom, true), (&leading, true)] {
            let (stored, site) = encode_for_storage(object, unstructured);
            let mut bare = object.clone();
            crate::meta::remove_meta(&mut bare, "resourceVersion");
            assert_eq!(stored, wire::object_json(&bare, unstructured, None)[..stored.len()], "{object}");
            let site = site.expect("a place for the version");
            let c = CachedObject::written(object, unstructured, &Bytes::from(stored), site, 42);
            let mut stamped = object.clone();
            crate::meta::set_meta(&mut stamped, "resourceVersion", json!("42"));
            assert_eq!(c.json().as_ref(), wire::object_json(&stamped, unstructured, None).as_slice(), "{object}");
        }
    }

    /// Stored bytes in the wire form are the object's JSON with the
    /// resourceVersion spliced in: the object keeps no copy of its own.
    #[test]
    fn stored_wire_form_is_served_as_stored() {
        let cm = json!({"kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"name": "x", "namespace": "ns", "uid": "u", "creationTimestamp": "2026-12-02T00:00:00Z"},
            "data": {"a": "<b>"}});
        let mut stored = wire::json(&wire::typed(cm.clone()));
        stored.pop();
        let stored = Bytes::from(stored);
        let mut decoded = cm.clone();
        decoded["metadata"]["resourceVersion"] = json!("42");
        let (c, held) = CachedObject::from_stored(decoded.clone(), false, &stored);
        assert!(
            matches!(&c.json, Json::Stamped { stored: s, .. } if s.as_ptr() == stored.as_ptr()),
            "the stored bytes themselves"
        );
        assert_eq!(c.json().as_ref(), wire::json(&wire::typed(decoded.clone())).as_slice());
        let mut item = Vec::new();
        c.write_item(&mut item);
        assert_eq!(
            String::from_utf8(item).unwrap(),
            r#"{"metadata":{"name":"x","namespace":"ns","uid":"u","resourceVersion":"42","creationTimestamp":"2026-12-02T00:00:00Z"},"data":{"a":"\u003cb\u003e"}}"#
        );
        assert_eq!(*held, decoded);
        assert_eq!(*c.value(), decoded, "decoded again from the JSON");

        // Stored in another key order (written before the wire form): served from its own encoding.
        let reordered = Bytes::from(
            serde_json::to_vec(&json!({"data": {"a": "<b>"}, "kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"name": "x", "namespace": "ns", "uid": "u", "creationTimestamp": "2026-12-02T00:00:00Z"}}))
            .unwrap(),
        );
        let (c, _) = CachedObject::from_stored(decoded.clone(), false, &reordered);
        assert!(matches!(&c.json, Json::Encoded(_)));
        assert_eq!(c.json().as_ref(), wire::json(&wire::typed(decoded)).as_slice());
    }

    #[test]
    fn splices() {
        assert_eq!(
            splice(br#"{"a":1,"c":3}"#, br#"{"a":1,"resourceVersion":"7","c":3}"#),
            Some((StampSite { at: 7, leading_comma: false }, 7))
        );
        assert_eq!(
            splice(br#"{"a":1}"#, br#"{"a":1,"resourceVersion":"7"}"#),
            Some((StampSite { at: 6, leading_comma: true }, 7))
        );
        assert_eq!(splice(br#"{"a":1,"c":3}"#, br#"{"a":1,"b":2,"c":3}"#), None, "not a resourceVersion");
        assert_eq!(splice(b"{}", b"{}"), None, "nothing inserted");
        assert_eq!(splice(b"{\"a\":1}", b"{\"b\":1}"), None, "not an insertion");
        assert_eq!(splice(b"{\"a\":1,\"b\":2}", b"{\"a\":1}"), None, "shorter");
    }

    mod through_a_store {
        use std::sync::atomic::{AtomicUsize, Ordering};

        use futures::StreamExt;
        use k8s_openapi::api::core::v1::ConfigMap;

        use super::*;
        use crate::registry::store::{ListOptions, WatchStart, WriteOptions};
        use crate::registry::{DefaultStrategy, Registration, Store, VersionConverter};
        use crate::storage::cacher::Cacher;
        use crate::storage::embedded::EmbeddedStorage;
        use crate::storage::{Freshness, Storage};

        /// The identity conversion, counting the objects it converts for readers.
        #[derive(Default)]
        struct Counting(AtomicUsize);

        #[async_trait::async_trait]
        impl VersionConverter for Counting {
            async fn to_stored(&self, object: Value) -> Result<Value, StatusError> {
                Ok(object)
            }
            async fn to_served(&self, objects: Vec<Value>) -> Result<Vec<Value>, StatusError> {
                self.0.fetch_add(objects.len(), Ordering::SeqCst);
                Ok(objects)
            }
        }

        fn rv(v: &Value) -> String {
            crate::meta::resource_version(v).to_string()
        }

        #[tokio::test]
        async fn one_decode_per_version_shared_by_every_reader_and_watcher() {
            let dir = tempfile::tempdir().unwrap();
            let storage: Arc<dyn Storage> = Arc::new(EmbeddedStorage::open(&dir.path().join("db")).unwrap());
            let conversions = Arc::new(Counting::default());
            let reg = Registration::of::<ConfigMap>(DefaultStrategy).stored_through(conversions.clone());
            let cache = Cacher::new(storage.clone(), "/registry/configmaps/");
            let store = Arc::new(Store::new(reg, storage, crate::registry::AdmissionChain::empty()).with_cache(cache));
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"x": "1"}}, "data": {"k": "1"}});
            let created = store.create("default", cm, &WriteOptions::default()).await.unwrap().object;
            let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}});
            let other = store.create("default", other, &WriteOptions::default()).await.unwrap().object;
            let after: u64 = rv(&other).parse().unwrap();
            let selected = ListOptions {
                label_selector: crate::selectors::LabelSelector::parse("x=1").unwrap(),
                ..Default::default()
            };
            let mut watchers = Vec::new();
            for opts in [ListOptions::default(), ListOptions::default(), selected] {
                watchers.push(store.watch("default", &opts, WatchStart::After(after)).await.unwrap());
            }
            let mut changed = created.clone();
            changed["data"]["k"] = json!("2");
            let updated = store.update("default", "a", changed, None, &WriteOptions::default()).await.unwrap().object;
            assert_ne!(rv(&updated), rv(&created));
            // Watch streams are lazy: every decode from here on is a reader's.
            let before = conversions.0.load(Ordering::SeqCst);
            let (mut seen, mut frames) = (Vec::new(), Vec::new());
            for w in &mut watchers {
                let e = w.next().await.unwrap();
                assert_eq!(e.event_type, WatchEventType::Modified);
                assert_eq!(rv(&e.object.value()), rv(&updated), "the event carries the object's own resourceVersion");
                frames.push(e.frame(false).unwrap());
                seen.push(e.object);
            }
            assert!(seen.iter().all(|o| Arc::ptr_eq(o, &seen[0])), "every watcher holds the one decoded object");
            // The selector read the previous version too: decoded once, for it.
            assert_eq!(conversions.0.load(Ordering::SeqCst) - before, 2, "one conversion per stored version");
            assert!(frames.iter().all(|f| f.as_ptr() == frames[0].as_ptr()), "and the event's one frame");

            // Reads share it: from the cache, and from storage at the same version.
            let before = conversions.0.load(Ordering::SeqCst);
            for freshness in [Freshness::Any, Freshness::Consistent] {
                let got = store.get_object("default", "a", freshness).await.unwrap();
                assert!(Arc::ptr_eq(&got, &seen[0]), "{freshness:?}");
                let list =
                    store.list_objects("default", &ListOptions { freshness, ..Default::default() }).await.unwrap();
                assert_eq!(list.items.len(), 2);
                assert!(Arc::ptr_eq(&list.items[0], &seen[0]), "{freshness:?}");
                assert_eq!(rv(&list.items[1].value()), rv(&other), "each item keeps its own resourceVersion");
            }
            assert_eq!(conversions.0.load(Ordering::SeqCst) - before, 1, "only b was not decoded yet");
        }
    }
}
