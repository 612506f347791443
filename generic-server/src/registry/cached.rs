//! An object as the read path hands it out (upstream's cachingObject): decoded
//! once from a stored version, in one Store's served version with its
//! resourceVersion stamped, behind an `Arc` that every reader and watcher of
//! that version shares. What readers need beyond the value (its labels and
//! field set for selectors, its JSON and protobuf encodings) is computed on
//! first use and kept, so a write watched by a thousand clients is decoded,
//! converted and encoded once per form rather than once per watcher.
//!
//! The Store keeps one of these in the watch cache's slot of each stored
//! version ([`crate::storage::cacher::CachedValue::slot`]); values read from
//! storage that the cache does not hold get a fresh one, used once.

use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::status::StatusError;
use crate::wire;

pub struct CachedObject {
    object: Value,
    /// Custom resources are written with sorted keys, built-ins in their Go
    /// struct's order ([`wire::object`]).
    unstructured: bool,
    labels: OnceLock<Map<String, Value>>,
    fields: OnceLock<Vec<(&'static str, String)>>,
    json: OnceLock<Bytes>,
    /// Where the JSON goes on after kind and apiVersion (its comma), for a
    /// typed object that starts with them.
    after_type: OnceLock<Option<usize>>,
    protobuf: OnceLock<Result<Bytes, StatusError>>,
    /// Whole watch event frames, JSON then protobuf, per event type
    /// ([`EVENT_TYPES`]): most watchers of an event get the same frame.
    frames: [OnceLock<Result<Bytes, StatusError>>; 2 * EVENT_TYPES.len()],
}

/// The event types a shared object is sent in; BOOKMARK and ERROR objects
/// are made for one watcher and framed uncached.
const EVENT_TYPES: [&str; 3] = ["ADDED", "MODIFIED", "DELETED"];

impl CachedObject {
    pub fn new(object: Value, unstructured: bool) -> Arc<Self> {
        Arc::new(CachedObject {
            object,
            unstructured,
            labels: OnceLock::new(),
            fields: OnceLock::new(),
            json: OnceLock::new(),
            after_type: OnceLock::new(),
            protobuf: OnceLock::new(),
            frames: Default::default(),
        })
    }

    /// The object itself, for a caller that must own it (a clone unless
    /// nothing else holds it).
    pub fn into_value(self: Arc<Self>) -> Value {
        match Arc::try_unwrap(self) {
            Ok(c) => c.object,
            Err(shared) => shared.object.clone(),
        }
    }

    /// The labels a label selector reads.
    pub fn labels(&self) -> &Map<String, Value> {
        self.labels.get_or_init(|| crate::meta::labels(&self.object))
    }

    /// The field set a field selector reads; `of` computes it (the Store's
    /// strategy knows its fields), once.
    pub fn fields(&self, of: impl FnOnce(&Value) -> Vec<(&'static str, String)>) -> &[(&'static str, String)] {
        self.fields.get_or_init(|| of(&self.object))
    }

    /// The object as a JSON body, as upstream writes it, newline included.
    pub fn json(&self) -> &Bytes {
        self.json.get_or_init(|| Bytes::from(wire::json(&wire::object(self.object.clone(), self.unstructured))))
    }

    /// Appends the object as an item of its list's JSON: a built-in's items
    /// leave out kind and apiVersion (only the list says what they are), a
    /// custom resource's keep them. Both are cut from [`Self::json`], which
    /// a typed object starts with `{"kind":..,"apiVersion":..,`, so a list
    /// keeps no second encoding of its items.
    pub fn write_item(&self, out: &mut Vec<u8>) {
        let json = self.json();
        let json = json.strip_suffix(b"\n").unwrap_or(json);
        if self.unstructured {
            out.extend_from_slice(json);
            return;
        }
        let after_type = self.after_type.get_or_init(|| {
            let type_meta =
                serde_json::json!({"kind": self.object.get("kind"), "apiVersion": self.object.get("apiVersion")});
            // `{"kind":..,"apiVersion":..}` and a newline; the object goes on with a comma.
            let type_meta = wire::json(&type_meta);
            let lead = &type_meta[..type_meta.len() - 2];
            (json.starts_with(lead) && json.get(lead.len()) == Some(&b',')).then_some(lead.len())
        });
        match after_type {
            Some(comma) => {
                out.push(b'{');
                out.extend_from_slice(&json[comma + 1..]);
            }
            // No kind or apiVersion to leave out: the object as it is.
            None => {
                let mut item = wire::typed(self.object.clone());
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
        self.protobuf.get_or_init(|| crate::protobuf::encode(&self.object).map(Bytes::from)).as_ref()
    }
}

impl CachedObject {
    /// This object as one event of a watch stream: JSON (`{"type":...,
    /// "object":...}` and a newline) or a protobuf frame; an error when it
    /// has no protobuf form.
    pub fn watch_frame(&self, event_type: &str, protobuf: bool) -> Result<Bytes, StatusError> {
        let frame = || {
            if !protobuf {
                return Ok(json_frame(event_type, self.json()));
            }
            let pb = self.protobuf().map_err(Clone::clone)?;
            crate::protobuf::watch_frame(event_type, pb).map(Bytes::from)
        };
        match EVENT_TYPES.iter().position(|t| *t == event_type) {
            Some(i) => self.frames[i + if protobuf { EVENT_TYPES.len() } else { 0 }].get_or_init(frame).clone(),
            None => frame(),
        }
    }
}

/// One JSON watch event around an object's encoding (which ends in a
/// newline) without re-encoding it: the bytes Go's encoder writes for the
/// event.
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

impl Deref for CachedObject {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.object
    }
}

impl std::fmt::Debug for CachedObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.object.fmt(f)
    }
}

impl PartialEq for CachedObject {
    fn eq(&self, other: &Self) -> bool {
        self.object == other.object
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
        let mut item = Vec::new();
        c.write_item(&mut item);
        let item = String::from_utf8(item).unwrap();
        assert_eq!(item, r#"{"metadata":{"name":"x","resourceVersion":"5"},"data":{"a":"\u003cb\u003e"}}"#);
        assert_eq!(c.protobuf().unwrap().as_ref(), crate::protobuf::encode(&cm).unwrap().as_slice());
        // Computed once: later calls hand out the same bytes.
        assert_eq!(c.json().as_ptr(), c.json().as_ptr());
        let frame = c.watch_frame("MODIFIED", false).unwrap();
        assert_eq!(frame.as_ref(), wire::json(&json!({"type": "MODIFIED", "object": wire::typed(cm.clone())})));
        assert_eq!(frame.as_ptr(), c.watch_frame("MODIFIED", false).unwrap().as_ptr(), "one frame for every watcher");
        let pb = c.watch_frame("DELETED", true).unwrap();
        assert_eq!(pb.as_ref(), crate::protobuf::encode_watch_event("DELETED", &cm).unwrap().as_slice());

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
            let mut seen = Vec::new();
            for w in &mut watchers {
                let e = w.next().await.unwrap();
                assert_eq!(e.event_type, "MODIFIED");
                assert_eq!(rv(&e.object), rv(&updated), "the event carries the object's own resourceVersion");
                seen.push(e.object);
            }
            assert!(seen.iter().all(|o| Arc::ptr_eq(o, &seen[0])), "every watcher holds the one decoded object");
            // The selector read the previous version too: decoded once, for it.
            assert_eq!(conversions.0.load(Ordering::SeqCst) - before, 2, "one conversion per stored version");
            let json = seen[0].json().clone();
            assert!(seen.iter().all(|o| o.json().as_ptr() == json.as_ptr()), "and its one encoding");

            // Reads share it: from the cache, and from storage at the same version.
            let before = conversions.0.load(Ordering::SeqCst);
            for freshness in [Freshness::Any, Freshness::Consistent] {
                let got = store.get_object("default", "a", freshness).await.unwrap();
                assert!(Arc::ptr_eq(&got, &seen[0]), "{freshness:?}");
                let list =
                    store.list_objects("default", &ListOptions { freshness, ..Default::default() }).await.unwrap();
                assert_eq!(list.items.len(), 2);
                assert!(Arc::ptr_eq(&list.items[0], &seen[0]), "{freshness:?}");
                assert_eq!(rv(&list.items[1]), rv(&other), "each item keeps its own resourceVersion");
            }
            assert_eq!(conversions.0.load(Ordering::SeqCst) - before, 1, "only b was not decoded yet");
        }
    }
}
