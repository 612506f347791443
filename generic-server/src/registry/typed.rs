//! Decoding through a typed struct (a k8s-openapi type), which is how built-in
//! resources drop the fields they do not have and how fieldValidation=Strict
//! learns which fields those were.

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use super::Decoded;
use crate::status::StatusError;

/// Decodes `object` as `T` and back, reporting the fields `T` dropped.
pub fn decode_as<T: DeserializeOwned + Serialize>(object: Value) -> Result<Decoded, StatusError> {
    let typed: T = serde_json::from_value(object.clone())
        .map_err(|e| StatusError::bad_request(format!("error decoding request body: {e}")))?;
    let canonical = serde_json::to_value(&typed).map_err(StatusError::internal)?;
    let mut unknown = Vec::new();
    collect_unknown(&object, &canonical, "", &mut unknown);
    Ok(Decoded { object: canonical, unknown_fields: unknown })
}

/// Paths present in `input` but not in `kept`. Nulls do not count: a struct
/// drops them without the field being unknown.
pub fn collect_unknown(input: &Value, kept: &Value, path: &str, out: &mut Vec<String>) {
    match (input, kept) {
        (Value::Object(i), Value::Object(k)) => {
            for (key, v) in i {
                let p = format!("{path}.{key}");
                match k.get(key) {
                    Some(kv) => collect_unknown(v, kv, &p, out),
                    None if v.is_null() => {}
                    // A struct also omits empty values it treats as unset; only a
                    // field it never read is unknown, which we tell by a non-empty
                    // value having vanished.
                    None if is_empty(v) => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (n, (iv, kv)) in i.iter().zip(k.iter()).enumerate() {
                collect_unknown(iv, kv, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_dropped_and_named() {
        let d = decode_as::<ConfigMap>(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "bogus": 1},
            "data": {"k": "v"}, "extra": {"x": 1}
        }))
        .unwrap();
        assert_eq!(d.unknown_fields, vec![".metadata.bogus", ".extra"]);
        assert!(d.object.get("extra").is_none());
        assert_eq!(d.object["data"]["k"], "v");
    }

    #[test]
    fn type_errors_are_bad_requests() {
        let e = decode_as::<ConfigMap>(json!({"data": {"k": 1}})).err().unwrap();
        assert_eq!(e.code, 400);
    }
}
