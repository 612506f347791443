//! The JSON wire form upstream's serializer writes, so that a response is the
//! same bytes a kube-apiserver would send: Go's encoding/json escaping (`<`,
//! `>`, `&`, U+2028 and U+2029 as `\u` escapes) and the newline its Encoder
//! ends every value with; typed objects led by `kind`, `apiVersion` and
//! `metadata` (in ObjectMeta's or ListMeta's field order), as every Go type
//! declares them; unstructured objects (custom resources) with every key
//! sorted, as Go writes a map.

use std::io;

use serde::Serialize;
use serde_json::{Map, Value};

/// Go's encoding/json string escaping on top of serde_json's compact output,
/// which already escapes quotes, backslashes and control characters as Go does.
struct GoFormatter;

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        // Bytes, not chars: all but U+2028 and U+2029 are ASCII, and those
        // two are the only characters starting E2 80 A8 and E2 80 A9. Found
        // with memchr: every stored and served object's strings pass here,
        // and most hold none of them.
        let bytes = fragment.as_bytes();
        let mut html = memchr::memchr3_iter(b'<', b'>', b'&', bytes).peekable();
        let mut wide = memchr::memchr_iter(0xE2, bytes).peekable();
        let mut start = 0;
        // The two searches each pass over the string once, merged in order.
        loop {
            let i = match (html.peek(), wide.peek()) {
                (Some(&h), Some(&w)) if w < h => wide.next(),
                (Some(_), _) => html.next(),
                (None, _) => wide.next(),
            };
            let Some(i) = i else { break };
            let (escape, len): (&[u8], usize) = match (bytes[i], bytes.get(i + 1..i + 3)) {
                (b'<', _) => (b"\\u003c", 1),
                (b'>', _) => (b"\\u003e", 1),
                (b'&', _) => (b"\\u0026", 1),
                (0xE2, Some([0x80, 0xA8])) => (b"\\u2028", 3),
                (0xE2, Some([0x80, 0xA9])) => (b"\\u2029", 3),
                _ => continue,
            };
            writer.write_all(&bytes[start..i])?;
            writer.write_all(escape)?;
            start = i + len;
        }
        writer.write_all(&bytes[start..])
    }
}

/// A response body: `value` as Go's json.Encoder writes it, newline included.
pub fn json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    // Serializing a Value into memory cannot fail.
    let _ = value.serialize(&mut ser);
    out.push(b'\n');
    out
}

/// ListMeta's fields in its Go struct's order.
const LIST_META: &[&str] = &["selfLink", "resourceVersion", "continue", "remainingItemCount"];

/// `m` with the keys of `order` first, in that order, then the rest as they were.
fn lead_with(mut m: Map<String, Value>, order: &[&str]) -> Map<String, Value> {
    let mut out = Map::with_capacity(m.len());
    for key in order {
        if let Some(v) = m.shift_remove(*key) {
            out.insert((*key).into(), v);
        }
    }
    out.extend(m);
    out
}

/// A typed object as its Go struct is written: `kind`, `apiVersion`, then
/// `metadata` (its fields in ObjectMeta's order, or ListMeta's for a list),
/// then the rest in the order they already have.
pub fn typed(value: Value) -> Value {
    let Value::Object(m) = value else { return value };
    let mut m = lead_with(m, &["kind", "apiVersion", "metadata"]);
    let is_list = m.get("items").is_some_and(Value::is_array);
    if let Some(Value::Object(meta)) = m.get_mut("metadata") {
        *meta = lead_with(std::mem::take(meta), if is_list { LIST_META } else { crate::meta::OBJECT_META_FIELDS });
    }
    Value::Object(m)
}

/// A list of typed objects as upstream writes it: the list led by `kind` and
/// `apiVersion`, its items without them (only the list says what they are).
pub fn typed_list(value: Value) -> Value {
    let mut list = typed(value);
    if let Some(items) = list.get_mut("items").and_then(Value::as_array_mut) {
        for item in items {
            if let Value::Object(mut m) = typed(std::mem::take(item)) {
                m.shift_remove("kind");
                m.shift_remove("apiVersion");
                *item = Value::Object(m);
            }
        }
    }
    list
}

/// One object in its writer's key order: sorted for an unstructured one (a
/// custom resource), its Go struct's order for a typed one.
pub fn object(value: Value, unstructured: bool) -> Value {
    if unstructured {
        sorted(value)
    } else {
        typed(value)
    }
}

/// An unstructured object (or anything Go holds as a map) as Go writes it:
/// every key, at every depth, sorted.
pub fn sorted(value: Value) -> Value {
    match value {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// One object's JSON body in its writer's key order, as [`json`] of
/// [`object`] writes it, from a borrowed value: the order is followed while
/// writing, nothing is copied. `version`, when given, is written as the
/// object's resourceVersion whether or not it has one.
pub fn object_json(value: &Value, unstructured: bool, version: Option<&str>) -> Vec<u8> {
    if !unstructured && value.get("items").is_some_and(Value::is_array) {
        // A list's metadata is ListMeta, in its own order.
        let mut list = value.clone();
        if let Some(v) = version {
            crate::meta::set_meta(&mut list, "resourceVersion", Value::String(v.into()));
        }
        return json(&object(list, false));
    }
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    // Serializing a Value into memory cannot fail.
    let _ = Ordered { value, unstructured, version, top: true }.serialize(&mut ser);
    out.push(b'\n');
    out
}

/// A value written in wire order: at the top, a typed object's leading
/// fields and its metadata's, or an unstructured one's keys sorted at every
/// depth.
struct Ordered<'a> {
    value: &'a Value,
    unstructured: bool,
    /// The resourceVersion to write into the metadata (top level only).
    version: Option<&'a str>,
    top: bool,
}

impl Ordered<'_> {
    fn below<'v>(&self, value: &'v Value) -> Ordered<'v> {
        Ordered { value, unstructured: self.unstructured, version: None, top: false }
    }
}

impl Serialize for Ordered<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        let m = match self.value {
            Value::Object(m) if self.top || self.unstructured => m,
            Value::Array(a) if self.unstructured => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(&self.below(v))?;
                }
                return seq.end();
            }
            other => return other.serialize(s),
        };
        let keys =
            ordered_keys(m, self.unstructured, self.top.then_some(["kind", "apiVersion", "metadata"].as_slice()));
        let mut map = s.serialize_map(Some(keys.len()))?;
        for k in keys {
            let v = &m[k];
            match (k, v) {
                ("metadata", Value::Object(meta)) if self.top => {
                    map.serialize_entry(k, &Meta { meta, unstructured: self.unstructured, version: self.version })?
                }
                _ if self.unstructured => map.serialize_entry(k, &self.below(v))?,
                _ => map.serialize_entry(k, v)?,
            }
        }
        map.end()
    }
}

/// An object's metadata in wire order, with `version` as its resourceVersion.
struct Meta<'a> {
    meta: &'a Map<String, Value>,
    unstructured: bool,
    version: Option<&'a str>,
}

impl Serialize for Meta<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        const VERSION: &str = "resourceVersion";
        let mut keys = ordered_keys(self.meta, self.unstructured, Some(crate::meta::OBJECT_META_FIELDS));
        if self.version.is_some() && !self.meta.contains_key(VERSION) {
            let at = if self.unstructured {
                keys.partition_point(|k| *k < VERSION)
            } else {
                let rank = |k: &str| crate::meta::OBJECT_META_FIELDS.iter().position(|f| *f == k);
                let mine = rank(VERSION);
                keys.iter().position(|k| rank(k).is_none_or(|r| Some(r) > mine)).unwrap_or(keys.len())
            };
            keys.insert(at, VERSION);
        }
        let mut map = s.serialize_map(Some(keys.len()))?;
        for k in keys {
            match (k, self.version) {
                (VERSION, Some(v)) => map.serialize_entry(k, v)?,
                _ => {
                    let v = &self.meta[k];
                    let o = Ordered { value: v, unstructured: self.unstructured, version: None, top: false };
                    map.serialize_entry(k, &o)?
                }
            }
        }
        map.end()
    }
}

/// `m`'s keys in wire order: sorted when unstructured, else `lead` first (in
/// its order) and the rest as they are.
fn ordered_keys<'m>(m: &'m Map<String, Value>, unstructured: bool, lead: Option<&[&str]>) -> Vec<&'m str> {
    let mut keys: Vec<&str> = Vec::with_capacity(m.len());
    if unstructured {
        keys.extend(m.keys().map(String::as_str));
        keys.sort_unstable();
        return keys;
    }
    let lead = lead.unwrap_or(&[]);
    keys.extend(lead.iter().filter_map(|k| m.get_key_value(*k)).map(|(k, _)| k.as_str()));
    keys.extend(m.keys().map(String::as_str).filter(|k| !lead.contains(k)));
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn object_json_writes_what_object_then_json_write() {
        let typed = json!({"data": {"b": "1", "a": "<&>"}, "metadata": {"labels": {"z": "1", "a": "2"},
            "managedFields": [], "uid": "u", "name": "x", "namespace": "n"}, "apiVersion": "v1", "kind": "ConfigMap"});
        let custom = json!({"spec": {"z": [{"b": 1, "a": 2}], "a": null}, "kind": "Widget", "apiVersion": "x.io/v1",
            "metadata": {"uid": "u", "name": "x", "resourceVersion": "3", "annotations": {"b": "", "a": ""}}});
        for (v, unstructured) in [(&typed, false), (&custom, true), (&json!({"metadata": {}}), false)] {
            assert_eq!(object_json(v, unstructured, None), json(&object(v.clone(), unstructured)));
            let mut stamped = v.clone();
            crate::meta::set_meta(&mut stamped, "resourceVersion", json!("42"));
            assert_eq!(object_json(v, unstructured, Some("42")), json(&object(stamped, unstructured)), "{v}");
        }
    }

    #[test]
    fn escapes_as_go_and_ends_with_a_newline() {
        let v = json!({"a": "<b> & \u{2028}\u{2029} é \n\t\u{1}\u{8}\u{c}\u{7f}"});
        let text = String::from_utf8(json(&v)).unwrap();
        assert_eq!(text, "{\"a\":\"\\u003cb\\u003e \\u0026 \\u2028\\u2029 é \\n\\t\\u0001\\b\\f\u{7f}\"}\n");
        // Other characters that start E2 (the euro sign) are kept, before and after the escapes.
        let v = json!({"a": "€<€\u{2028}&€\u{2029}"});
        let text = String::from_utf8(json(&v)).unwrap();
        assert_eq!(text, "{\"a\":\"€\\u003c€\\u2028\\u0026€\\u2029\"}\n");
    }

    #[test]
    fn typed_objects_lead_with_kind_then_api_version() {
        let v = typed(json!({"apiVersion": "v1", "data": {}, "kind": "ConfigMap",
            "metadata": {"resourceVersion": "5", "managedFields": [], "uid": "u", "name": "x"}}));
        assert_eq!(
            String::from_utf8(json(&v)).unwrap(),
            "{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"x\",\"uid\":\"u\",\"resourceVersion\":\"5\",\"managedFields\":[]},\"data\":{}}\n"
        );
        let list = typed_list(
            json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {"continue": "c", "resourceVersion": "1"},
            "items": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}]}),
        );
        assert_eq!(String::from_utf8(json(&list)).unwrap(), "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\"1\",\"continue\":\"c\"},\"items\":[{\"metadata\":{\"name\":\"x\"}}]}\n");
    }

    #[test]
    fn unstructured_objects_sort_every_key() {
        let v = sorted(json!({"kind": "W", "apiVersion": "x/v1", "spec": {"b": [{"z": 1, "a": 2}], "a": 1}}));
        assert_eq!(
            String::from_utf8(json(&v)).unwrap(),
            "{\"apiVersion\":\"x/v1\",\"kind\":\"W\",\"spec\":{\"a\":1,\"b\":[{\"a\":2,\"z\":1}]}}\n"
        );
    }
}
