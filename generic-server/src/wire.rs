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
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let escape = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(escape.as_bytes())?;
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escapes_as_go_and_ends_with_a_newline() {
        let v = json!({"a": "<b> & \u{2028}\u{2029} é \n\t\u{1}\u{8}\u{c}\u{7f}"});
        let text = String::from_utf8(json(&v)).unwrap();
        assert_eq!(text, "{\"a\":\"\\u003cb\\u003e \\u0026 \\u2028\\u2029 é \\n\\t\\u0001\\b\\f\u{7f}\"}\n");
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
