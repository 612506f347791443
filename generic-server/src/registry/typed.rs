//! Decoding through a typed struct (a k8s-openapi type), which is how built-in
//! resources drop the fields they do not have and how fieldValidation=Strict
//! learns which fields those were.

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use super::Decoded;
use crate::status::StatusError;

/// Decodes `object` as `T` and back, reporting the fields `T` dropped.
pub fn decode_as<T: DeserializeOwned + Serialize>(object: Value) -> Result<Decoded, StatusError> {
    let typed =
        T::deserialize(&object).map_err(|e| StatusError::bad_request(format!("error decoding request body: {e}")))?;
    let mut canonical = serde_json::to_value(&typed).map_err(StatusError::internal)?;
    drop_materialized(&object, &mut canonical);
    let mut unknown = Vec::new();
    collect_unknown(&object, &canonical, "", &mut unknown);
    Ok(Decoded { object: canonical, unknown_fields: unknown })
}

/// Removes the empty objects the typed struct made up for required fields the
/// client left out: upstream's internal types hold those as nil pointers, so
/// validation must see them absent (`spec.selector: Required value`), not as
/// an empty value.
fn drop_materialized(input: &Value, canonical: &mut Value) {
    match (input, canonical) {
        (Value::Object(i), Value::Object(c)) => {
            c.retain(|k, v| i.contains_key(k) || !v.as_object().is_some_and(|m| m.is_empty()));
            for (k, v) in c.iter_mut() {
                if let Some(iv) = i.get(k) {
                    drop_materialized(iv, v);
                }
            }
        }
        (Value::Array(i), Value::Array(c)) => {
            for (iv, cv) in i.iter().zip(c.iter_mut()) {
                drop_materialized(iv, cv);
            }
        }
        _ => {}
    }
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
    fn required_objects_left_out_stay_absent() {
        use k8s_openapi::api::apps::v1::Deployment;
        let d = decode_as::<Deployment>(json!({"metadata": {"name": "d"}, "spec": {"template": {}}})).unwrap();
        assert_eq!(d.object["spec"], json!({"template": {}}), "selector was not sent: {}", d.object);
    }

    #[test]
    fn type_errors_are_bad_requests() {
        let e = decode_as::<ConfigMap>(json!({"data": {"k": 1}})).err().unwrap();
        assert_eq!(e.code, 400);
    }
}
