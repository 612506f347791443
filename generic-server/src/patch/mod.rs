//! Patch application: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and
//! Kubernetes strategic merge patch.
//!
//! Errors follow upstream's patch handler: a body that cannot be read as the
//! patch type is 400 BadRequest; a JSON patch whose operations fail (a `test`
//! that does not match, a path that does not exist) is 422 Invalid with
//! upstream's generic message. Strategic merge patch maps its errors as
//! upstream does (bad directive formats 400, lists of lists 422); the errors
//! upstream leaves unclassified (it answers them with a bare 500) are 400 here
//! with upstream's message, since they are all caused by the patch.
//!
//! Strategic merge patch reads the patch strategy, merge key and field types
//! from the one facts table in [`crate::openapi::facts`].

// The signatures return the crate's StatusError by value, as every handler does.

mod smp;

use serde_json::{json, Value};

use crate::status::StatusError;

pub use smp::strategic_merge_patch;

/// Upstream's limit on the number of operations in one JSON patch.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10000;

/// 422 Invalid with upstream's generic message for a patch that could not be
/// applied (upstream builds it with NewGenericServerResponse, which drops the
/// underlying error text).
pub(crate) fn unprocessable() -> StatusError {
    let mut e = StatusError::new(422, "Invalid", "the server rejected our request due to an error in our request");
    e.details = Some(Box::new(json!({})));
    e
}

/// Applies an RFC 6902 JSON patch to `doc`.
pub fn json_patch(doc: &Value, patch: &[u8]) -> Result<Value, StatusError> {
    let raw: Value = serde_json::from_slice(patch).map_err(|e| StatusError::bad_request(e.to_string()))?;
    if let Value::Array(ops) = &raw {
        if ops.len() > MAX_JSON_PATCH_OPERATIONS {
            return Err(StatusError::new(
                413,
                "RequestEntityTooLarge",
                format!(
                    "Request entity too large: The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got: {}",
                    ops.len()
                ),
            ));
        }
    }
    let ops: json_patch::Patch = serde_json::from_value(raw).map_err(|e| StatusError::bad_request(e.to_string()))?;
    let mut out = doc.clone();
    json_patch::patch(&mut out, &ops).map_err(|_| unprocessable())?;
    Ok(out)
}

/// Applies an RFC 7386 JSON merge patch to `doc`. The patch must be a JSON
/// object (an object's patch can only be an object).
pub fn merge_patch(doc: &Value, patch: &[u8]) -> Result<Value, StatusError> {
    let p: Value = serde_json::from_slice(patch).map_err(|_| StatusError::bad_request("Invalid JSON Patch"))?;
    if !p.is_object() {
        return Err(StatusError::bad_request("Invalid JSON Patch"));
    }
    let mut out = doc.clone();
    json_patch::merge(&mut out, &p);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_patch_applies_and_fails_as_upstream() {
        let doc = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "data": {"k": "v"}});
        let out = json_patch(
            &doc,
            br#"[{"op":"add","path":"/data/n","value":"m"},{"op":"remove","path":"/metadata/labels/x"}]"#,
        )
        .expect("applies");
        assert_eq!(out["data"]["n"], "m");
        assert_eq!(out["metadata"]["labels"], json!({}));

        let e = json_patch(&doc, b"{not json").expect_err("malformed");
        assert_eq!((e.code, e.reason), (400, "BadRequest"));
        let e = json_patch(&doc, br#"{"op":"add"}"#).expect_err("not a list");
        assert_eq!(e.code, 400);
        let e = json_patch(&doc, br#"[{"op":"frob","path":"/a"}]"#).expect_err("bad op");
        assert_eq!(e.code, 400);
        let e = json_patch(&doc, br#"[{"op":"test","path":"/data/k","value":"other"}]"#).expect_err("test fails");
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        let e = json_patch(&doc, br#"[{"op":"remove","path":"/nope/x"}]"#).expect_err("missing path");
        assert_eq!(e.code, 422);
    }

    #[test]
    fn merge_patch_merges_and_deletes() {
        let doc = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"list": [1, 2]}});
        let out =
            merge_patch(&doc, br#"{"metadata":{"labels":{"a":null,"c":"3"}},"spec":{"list":[3]}}"#).expect("applies");
        assert_eq!(out, json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"list": [3]}}));
        for bad in [&b"{"[..], b"[1]", b"null", b"3", b""] {
            let e = merge_patch(&doc, bad).expect_err("malformed");
            assert_eq!((e.code, e.reason), (400, "BadRequest"));
        }
    }
}
